"""SQLite store: schema, migrations, raw frames, readings, summaries, alerts, outbox, settings."""

from edge_gateway.store.db import FrameRecord, Store
from edge_gateway.store.writer import BatchWriter

__all__ = ["BatchWriter", "FrameRecord", "Store"]
