"""Command-line interface.  Each module below registers its commands on ``main``."""

from __future__ import annotations

from edge_gateway.cli import (
    analyze,  # noqa: F401
    caregiver,  # noqa: F401  (patients, thresholds, alerts, export, report)
    cloud,  # noqa: F401  (cloud ingest|status; psycopg imported inside, [cloud] extra)
    core,  # noqa: F401  (registers run, status, config, db)
    decode,  # noqa: F401
    demo,  # noqa: F401
    devices,  # noqa: F401  (devices scan|add|pair|assign|list|remove)
    sync,  # noqa: F401  (sync status|now)
)
from edge_gateway.cli.base import add_common_options, main

# `edge-gateway status --db X` as well as `edge-gateway --db X status`.
add_common_options(main)

__all__ = ["main"]
