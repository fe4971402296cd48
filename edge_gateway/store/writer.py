"""Batched writes: one transaction per second (or per N frames), not one fsync per reading.

A Raspberry Pi's SD card wears with every fsync.  Frames wait in memory for at most
``max_delay_s`` (or until ``max_frames`` are waiting) and are then committed together.  The
daemon flushes on shutdown, so a clean stop loses nothing; a power cut can lose at most the
last ``max_delay_s`` of streamed data (stored records on meters and CGMs are re-fetched by
backfill, and are never deleted from a device before they are committed here).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edge_gateway.reading import Reading
from edge_gateway.store.db import FrameRecord, Store


@dataclass
class WriterStats:
    frames: int = 0
    readings_new: int = 0
    commits: int = 0
    rejected: int = 0
    last_commit_monotonic: float | None = None


@dataclass
class BatchWriter:
    store: Store
    max_frames: int = 200
    max_delay_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    stats: WriterStats = field(default_factory=WriterStats)
    #: Called after each commit with the committed readings (alerts, DSP triggers).
    on_commit: Callable[[list[Reading]], None] | None = None
    _pending: list[tuple[FrameRecord, Sequence[Reading]]] = field(default_factory=list)
    _oldest: float | None = None

    def submit(self, frame: FrameRecord, readings: Sequence[Reading] = ()) -> None:
        """Queue a frame with what it decoded to (empty, with ``frame.error``, if rejected)."""
        if self._oldest is None:
            self._oldest = self.clock()
        self._pending.append((frame, readings))
        if frame.error:
            self.stats.rejected += 1
        if len(self._pending) >= self.max_frames:
            self.flush()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def due(self) -> bool:
        return self._oldest is not None and self.clock() - self._oldest >= self.max_delay_s

    def flush(self) -> int:
        """Commit everything waiting in one transaction; return new readings stored."""
        if not self._pending:
            return 0
        batch, self._pending, self._oldest = self._pending, [], None
        try:
            frames, new = self.store.write_batch(batch)
        except BaseException:
            # Keep the batch: nothing is dropped because a commit failed.
            self._pending = batch + self._pending
            self._oldest = self.clock()
            raise
        self.stats.frames += frames
        self.stats.readings_new += new
        self.stats.commits += 1
        self.stats.last_commit_monotonic = self.clock()
        if self.on_commit is not None:
            self.on_commit([r for _, rs in batch for r in rs])
        return new
