"""The gateway's status as one dict (``edge-gateway status --json``), read from the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from edge_gateway.store import Store, outbox
from edge_gateway.store import alerts as alert_rows
from edge_gateway.store import commands as command_rows
from edge_gateway.store import devices as device_rows
from edge_gateway.store import readings as reading_rows


def gateway_status(store: Store, *, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    since_dt = now - timedelta(hours=24)
    devices = []
    for d in device_rows.status_rows(store):
        devices.append({
            "id": d.id, "name": d.name, "profile": d.profile, "patient": d.patient_id,
            "transport": d.transport, "connected": bool(d.connected),
            "connected_recorded_at": d.connected_changed_at, "last_seen_at": d.last_seen_at,
            "last_reading_at": d.last_reading_at,
            "readings_24h": store.readings_since(d.id, since_dt),
            "readings_total": int(d.readings_total),
            "rejected_frames": reading_rows.rejected_frames(store, d.id),
            "battery_pct": d.battery_pct,
        })
    pending, oldest = outbox.pending_and_oldest(store)
    last_sync = outbox.last_sent_at(store)
    meta_last = store.meta(outbox.META_LAST_SUCCESS)
    if meta_last and (last_sync is None or meta_last > last_sync):
        last_sync = meta_last
    return {
        "gateway_db_id": store.db_id,
        "devices": devices,
        "outbox": {"pending": pending, "oldest_pending_at": oldest},
        "last_sync_at": last_sync,
        "alerts_open": alert_rows.open_count(store),
        # Console commands (docs/mqtt.md): applied, rejected, expired, replayed, and the last.
        "commands": command_rows.stats(store),
        "storage": {
            "db_path": str(store.path),
            "db_bytes": store.file_bytes(),
            "used_bytes": store.used_bytes(),
            "cap_bytes": store.cap_bytes,
            "evicted": store.evicted(),
            # Stream frames the daemon did not take while commits failed and the held data
            # was at its cap (saved when storage works again).
            "refused_stream_frames": store.counter("refused.stream_frames"),
            "keeping_raw_frames": store.keep_raw,
        },
    }
