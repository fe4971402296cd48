"""A patient's synced summaries and alerts as one FHIR R4 Bundle.

The resources come from the hub's own builder (``sync.payload.fhir_resource`` over
``edge_gateway/fhir.py``), so an item exported here is the same resource the hub would have
sent in the ``fhir`` format; items that arrived as FHIR already are kept as they came.
Resource ids are UUIDs derived from the item ids (stable across exports).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from edge_gateway import fhir
from edge_gateway.store.outbox import Item
from edge_gateway.sync import payload

_NS = uuid.UUID("5a1c0e6e-9b7e-4c55-9d0e-6c0a2f4e7d11")


def _rid(text: str) -> str:
    return str(uuid.uuid5(_NS, text))


def patient_bundle(gateway: str, patient: str,
                   items: Sequence[tuple[str, str, str, datetime, Any]]) -> dict[str, Any]:
    """``items``: (item id, kind, format, created_at, data) as the ingest stored them."""
    from edge_gateway.drivers import registry

    kinds = registry.kinds()
    resources: list[dict[str, Any]] = []
    for item_id, kind, fmt, created_at, data in items:
        if fmt == "fhir" and isinstance(data, dict) and "resourceType" in data:
            res = dict(data)
        else:
            it = Item(0, item_id, 0, kind, patient,
                      created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                      json.dumps(data))
            res = payload.fhir_resource(it, kinds)
        res["id"] = _rid(item_id)
        resources.append(res)
    tag = [{"system": "urn:edge-gateway:gateway", "code": gateway}]
    return fhir.bundle(_rid(f"bundle:{gateway}:{patient}:{len(items)}"), resources, tag)
