"""The storage cap (issue 12): at the smallest cap the store evicts and goes on storing.

Broke: with ``storage.max_bytes = 1000000`` SQLite rolled the transaction back on SQLITE_FULL,
the store's own ROLLBACK then failed ("cannot rollback - no transaction is active") and hid
the "full" error, so eviction never ran: 0 readings stored, even with old, synced, evictable
readings in the database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_gateway.errors import StorageFull
from edge_gateway.reading import Reading
from edge_gateway.store import BatchWriter, FrameRecord, Store

CAP = 1_000_000  # the smallest storage.max_bytes allowed


def hr_frame(i: int, at: datetime, payload: bytes = bytes(60)
             ) -> tuple[FrameRecord, list[Reading]]:
    return (FrameRecord("strap-1", "2a37", at, payload),
            [Reading("strap-1", "2a37", "heart_rate", 60.0 + i % 40, "/min", at, at,
                     f"rx:{i}"),
             Reading("strap-1", "2a37", "rr_interval", 0.8, "s", at, at, f"rx:{i}:rr")])


def fill_to_cap(store: Store, start: datetime, step: timedelta) -> int:
    """Write batches straight through the cap (no eviction: it is what is tested)."""
    i = 0
    while True:
        batch = [hr_frame(i + k, start + step * (i + k)) for k in range(100)]
        try:
            store._write_batch(batch)
        except StorageFull:
            return i
        i += 100


def test_writing_at_the_cap_evicts_old_synced_readings_and_succeeds(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db", cap_bytes=CAP)
    old = datetime.now(UTC) - timedelta(days=400)  # past retention, nothing unsent
    n_old = fill_to_cap(store, old, timedelta(seconds=1))
    assert n_old > 1000
    now = datetime.now(UTC)
    frames, new = store.write_batch([hr_frame(10**6 + k, now) for k in range(100)])
    assert (frames, new) == (100, 200)
    assert store.counter("evicted.readings") > 0 and store.counter("evicted.raw_frames") > 0
    assert store.used_bytes() <= CAP
    # Oldest went first; the new batch is there.
    assert store.conn.execute("SELECT count(*) FROM readings WHERE record_key LIKE 'rx:1000%'"
                              ).fetchone()[0] >= 200


def test_the_cap_is_reported_as_the_cap_not_a_rollback_error(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db", cap_bytes=CAP)
    now = datetime.now(UTC)
    with pytest.raises(StorageFull) as info:  # the transaction itself, before any eviction
        for i in range(0, 100_000, 100):
            store._write_batch([hr_frame(i + k, now) for k in range(100)])
    text = str(info.value)
    assert "storage cap of 1000000 bytes" in text and "rollback" not in text
    assert not store.conn.in_transaction
    store.add_readings([hr_frame(0, datetime.now(UTC))[1][0]])  # the store is usable after


def test_a_demo_like_stream_keeps_storing_at_the_smallest_cap(tmp_path: Path) -> None:
    """Fresh readings only (nothing past retention): at the cap raw frames and then the
    oldest readings go, counted; every batch is committed and the newest data is kept."""
    store = Store.open(tmp_path / "g.db", cap_bytes=CAP)
    writer = BatchWriter(store, max_frames=50)
    start = datetime.now(UTC) - timedelta(hours=3)
    total = 30_000  # about 7 MB of frames and readings through a 1 MB database
    for i in range(total):
        at = start + timedelta(milliseconds=300 * i)
        frame, readings = hr_frame(i, at)
        writer.submit(frame, readings)
    writer.flush(force=True)
    assert writer.pending == 0 and not writer.holding and writer.stats.failures == 0
    assert writer.stats.readings_new == 2 * total
    assert store.counter("evicted.raw_frames_at_cap") > 0
    assert store.counter("evicted.readings_at_cap") > 0
    assert store.evicted() >= store.counter("evicted.readings_at_cap")
    assert store.used_bytes() <= CAP
    newest = store.conn.execute("SELECT max(record_key) FROM readings WHERE record_key"
                                f" = 'rx:{total - 1}'").fetchone()[0]
    assert newest == f"rx:{total - 1}"
    kept = store.conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    assert kept > 1000


def test_a_batch_bigger_than_the_room_is_stored_in_parts_and_never_twice(
        tmp_path: Path) -> None:
    """Nothing evictable (every frame and reading is its device's newest) and room for only
    part of a batch: the part that fits is stored, the rest held, and after room is made
    the rest follows; no frame is written twice."""
    store = Store.open(tmp_path / "g.db", cap_bytes=CAP)
    now = datetime.now(UTC)

    def own_device(i: int, prefix: str = "dev") -> tuple[FrameRecord, list[Reading]]:
        dev = f"{prefix}-{i}"
        return (FrameRecord(dev, "2a37", now, bytes(60)),
                [Reading(dev, "2a37", "heart_rate", 60.0, "/min", now, now, "rx")])

    i = 0
    with pytest.raises(StorageFull):
        while True:
            store._write_batch([own_device(i + k) for k in range(20)])
            i += 20
    before = store.conn.execute("SELECT count(*) FROM raw_frames").fetchone()[0]
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages + 8}")  # room for a few frames
    writer = BatchWriter(store, max_frames=10_000)
    for k in range(200):
        writer.submit(*own_device(k, "new"))
    assert writer.flush() == 0 and writer.holding
    stored = store.conn.execute("SELECT count(*) FROM raw_frames").fetchone()[0] - before
    assert 0 < stored < 200 and writer.pending == 200 - stored
    assert writer.stats.frames == stored
    store.conn.execute(f"PRAGMA max_page_count = {pages + 400}")
    writer.flush(force=True)
    assert not writer.holding and writer.pending == 0 and writer.stats.frames == 200
    after = store.conn.execute("SELECT count(*), count(DISTINCT device_id) FROM raw_frames"
                               " WHERE device_id LIKE 'new-%'").fetchone()
    assert tuple(after) == (200, 200)
