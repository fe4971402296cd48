"""SQLite store: schema, migrations, raw frames, readings, summaries, alerts, outbox, settings."""

from .db import FrameRecord, Store
from .writer import BatchWriter

__all__ = ["BatchWriter", "FrameRecord", "Store"]
