"""Batched writes: one transaction per second (or per N frames), not one fsync per reading.

A Raspberry Pi's SD card wears with every fsync.  Frames wait in memory for at most
``max_delay_s`` (or until ``max_frames`` are waiting) and are then committed together.  The
daemon flushes on shutdown, so a clean stop loses nothing; a power cut can lose at most the
last ``max_delay_s`` of streamed data (stored records on meters and CGMs are re-fetched by
backfill, and are never deleted from a device before they are committed here).

A batch that cannot be committed (full disk, the cap with nothing left to evict, a read-only
or damaged file) is never dropped: it stays in memory and is retried with backoff while the
writer goes on taking frames, up to :attr:`BatchWriter.max_pending_bytes` (estimated).  Past
that, frames of continuous streams are refused (counted in ``refused_stream_frames``) rather
than ever dropping something taken; stored records (a meter's, a cuff's) are still taken: the
backfill's "last record held" is read from committed rows, so a restart fetches them again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edge_gateway.backoff import Backoff
from edge_gateway.errors import StoreError
from edge_gateway.reading import Reading
from edge_gateway.store.db import FrameRecord, Store

#: Frames (with their readings) held in memory while commits fail, in estimated bytes: about
#: an hour of six streaming devices, well inside the daemon's 256 MB memory budget.
MAX_PENDING_BYTES = 4 * 1024 * 1024
#: Rough cost of one held frame and of one held reading (Python objects included).
_FRAME_COST = 400
_READING_COST = 600


def held_bytes(frame: FrameRecord, readings: Sequence[Reading]) -> int:
    """Estimated memory a frame and its readings take while held."""
    return _FRAME_COST + len(frame.payload) + _READING_COST * len(readings)


@dataclass
class WriterStats:
    frames: int = 0
    readings_new: int = 0
    commits: int = 0
    rejected: int = 0
    last_commit_monotonic: float | None = None
    #: Commit attempts that failed (each kept its batch).
    failures: int = 0
    #: Stream frames not taken because the held data reached the cap.
    refused_stream_frames: int = 0
    #: Since when commits have been failing (None: the last one succeeded).
    held_since_monotonic: float | None = None
    last_error: str | None = None


@dataclass
class BatchWriter:
    store: Store
    max_frames: int = 200
    max_delay_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    stats: WriterStats = field(default_factory=WriterStats)
    max_pending_bytes: int = MAX_PENDING_BYTES
    #: Called after each commit with the committed readings (alerts, DSP triggers).
    on_commit: Callable[[list[Reading]], None] | None = None
    #: Called when a commit fails after the last succeeded, or fails differently (the daemon
    #: logs it and raises the storage alert).
    on_fault: Callable[[Exception], None] | None = None
    #: Called when a commit succeeds after failures (the daemon resolves the alert).
    on_recovered: Callable[[float], None] | None = None
    retry: Backoff = field(default_factory=lambda: Backoff(1.0, 60.0, jitter=False))
    _pending: list[tuple[FrameRecord, Sequence[Reading]]] = field(default_factory=list)
    _pending_bytes: int = 0
    _oldest: float | None = None
    _retry_at: float | None = None
    _last_fault: type | None = None

    def admit(self, *, stream: bool) -> bool:
        """Whether a new frame may be taken now (a refused one is counted).

        While commits work, or under the cap, everything is; while they fail and the held data
        is above the cap, a continuous stream's frames are refused (the next value comes a
        second later); stored records always are (bounded by the device's memory, and never
        to be lost).
        """
        if not stream or not self.holding or self._pending_bytes < self.max_pending_bytes:
            return True
        self.stats.refused_stream_frames += 1
        return False

    def submit(self, frame: FrameRecord, readings: Sequence[Reading] = ()) -> None:
        """Queue a frame with what it decoded to (empty, with ``frame.error``, if rejected)."""
        if self._oldest is None:
            self._oldest = self.clock()
        self._pending.append((frame, readings))
        self._pending_bytes += held_bytes(frame, readings)
        if frame.error:
            self.stats.rejected += 1
        if len(self._pending) >= self.max_frames:
            self.flush()

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        """Estimated bytes of the frames and readings waiting (held while commits fail)."""
        return self._pending_bytes

    @property
    def holding(self) -> bool:
        """True while commits fail and the batch is held for a retry."""
        return self.stats.held_since_monotonic is not None

    def due(self) -> bool:
        if self._oldest is None:
            return False
        now = self.clock()
        if self._retry_at is not None and now < self._retry_at:
            return False
        return now - self._oldest >= self.max_delay_s

    def flush(self, *, force: bool = False) -> int:
        """Commit everything waiting in one transaction; return new readings stored.

        Never raises for a failed commit: the batch stays, the failure is counted and
        reported through ``on_fault``, and the next try waits out the backoff (``force``:
        try now, as on shutdown).
        """
        if not self._pending:
            return 0
        now = self.clock()
        if not force and self._retry_at is not None and now < self._retry_at:
            return 0
        batch = list(self._pending)
        try:
            frames, new = self.store.write_batch(batch)
        except Exception as err:
            done = err.committed if isinstance(err, StoreError) else (0, 0)
            if done[0]:
                # Written in parts and a later part failed: what is stored leaves the batch.
                self._committed(batch[:done[0]], *done)
                if self.on_commit is not None:
                    self.on_commit([r for _, rs in batch[:done[0]] for r in rs])
            self._failed(err, now)
            return 0
        self._committed(batch, frames, new)
        held_since = self.stats.held_since_monotonic
        self._retry_at = None
        self.retry.reset()
        self.stats.held_since_monotonic = None
        self.stats.last_error = None
        self._last_fault = None
        if held_since is not None and self.on_recovered is not None:
            self.on_recovered(now - held_since)
        if self.on_commit is not None:
            self.on_commit([r for _, rs in batch for r in rs])
        return new

    def _committed(self, batch: list[tuple[FrameRecord, Sequence[Reading]]], frames: int,
                   new: int) -> None:
        """``batch`` (the head of the pending frames) is stored: count it, drop it."""
        # Frames submitted while on_commit runs land after the committed ones.
        del self._pending[:len(batch)]
        self._pending_bytes = sum(held_bytes(f, rs) for f, rs in self._pending)
        self._oldest = self.clock() if self._pending else None
        self.stats.frames += frames
        self.stats.readings_new += new
        self.stats.commits += 1
        self.stats.last_commit_monotonic = self.clock()

    def _failed(self, err: Exception, now: float) -> None:
        self.stats.failures += 1
        self._retry_at = now + self.retry.next()
        first = self.stats.held_since_monotonic is None
        if first:
            self.stats.held_since_monotonic = now
        # Reported again only for another kind of fault (the free bytes in a message vary).
        changed = type(err) is not self._last_fault
        self._last_fault = type(err)
        self.stats.last_error = str(err) or type(err).__name__
        if (first or changed) and self.on_fault is not None:
            self.on_fault(err)
