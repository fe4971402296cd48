"""SQLite store: the only package that writes SQL.

``db`` opens the database (schema from ``migrations/*.sql`` through ``migrate``), holds the
transactions, raw frames and readings writes, counters, meta, eviction and maintenance;
``writer`` batches frames into one commit a second.  One repository module per table or
concern holds every other query: ``patients``, ``devices``, ``settings``, ``readings``,
``summaries``, ``alerts``, ``outbox``, ``audit``.  Callers group repository writes into one
transaction with ``with store.transaction():``; each write joins the open one.
"""

from edge_gateway.store.db import FrameRecord, Store
from edge_gateway.store.writer import BatchWriter

__all__ = ["BatchWriter", "FrameRecord", "Store"]
