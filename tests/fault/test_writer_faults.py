"""The writer never dies (issue 12): a batch that cannot be written is held and retried.

Broke: one failed batch killed the writer, and every reading after it was lost.  Now the batch
stays in memory and is retried with backoff, the daemon raises the storage alert and keeps
running; past the held-data cap stream frames are refused (counted) and stored records are
still taken, so nothing taken is ever dropped.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tmpfs import fill, small_tmpfs

from edge_gateway.config import Config, StorageSection
from edge_gateway.drivers.pipeline import FramePipeline, is_stream
from edge_gateway.drivers.profiles.heart_rate import HeartRateMeasurement
from edge_gateway.runtime.daemon import Component, Daemon
from edge_gateway.runtime.status import gateway_status
from edge_gateway.store import BatchWriter, FrameRecord, Store

HR = HeartRateMeasurement.from_bytes(bytes.fromhex("10480004")).to_bytes()
#: A Glucose Measurement record (sequence 7): a stored record, fetched by RACP backfill.
GLUCOSE = bytes.fromhex("0207006c07010f0c1e00000000")


def locked(db: Path) -> sqlite3.Connection:
    """Another connection holding the write lock: every commit of ours fails (busy)."""
    blocker = sqlite3.connect(db, timeout=0, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


def test_a_failing_commit_is_held_and_retried_with_backoff(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db")
    store.conn.execute("PRAGMA busy_timeout = 0")
    clock = [0.0]
    faults: list[Exception] = []
    recovered: list[float] = []
    w = BatchWriter(store, max_frames=1000, clock=lambda: clock[0], on_fault=faults.append,
                    on_recovered=recovered.append)
    blocker = locked(tmp_path / "g.db")
    t0 = datetime.now(UTC)
    for i in range(10):
        w.submit(FrameRecord("strap-1", "2a37", t0 + timedelta(seconds=i), HR))
    clock[0] = 1.0
    assert w.due() and w.flush() == 0
    assert w.holding and w.pending == 10 and len(faults) == 1
    # The next try waits out the pause (1 s, then 2 s, ...): not due before it.
    clock[0] = 1.5
    assert not w.due() and w.flush() == 0 and w.stats.failures == 1
    clock[0] = 2.1
    assert w.due() and w.flush() == 0 and w.stats.failures == 2
    assert len(faults) == 1  # the same fault is reported once
    clock[0] = 3.0
    assert not w.due()
    blocker.execute("ROLLBACK")
    clock[0] = 4.2
    assert w.due()
    w.flush()
    assert not w.holding and w.pending == 0 and w.stats.frames == 10
    assert recovered == [pytest.approx(3.2)]


def test_past_the_held_cap_streams_are_refused_and_records_still_taken(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db")
    store.conn.execute("PRAGMA busy_timeout = 0")
    w = BatchWriter(store, max_frames=50, max_pending_bytes=64 * 1024)
    pipeline = FramePipeline(store, w)
    assert is_stream("2a37") and not is_stream("2a18")
    blocker = locked(tmp_path / "g.db")
    t0 = datetime.now(UTC)
    sent = 0
    while w.stats.refused_stream_frames < 20:
        pipeline.on_frame("strap-1", "2a37", t0 + timedelta(milliseconds=sent), HR)
        sent += 1
    held = w.pending
    assert w.pending_bytes >= 64 * 1024 and held == sent - 20
    pipeline.on_frame("meter-1", "2a18", t0, GLUCOSE)  # a stored record: taken
    assert w.pending == held + 1
    blocker.execute("ROLLBACK")
    w.flush(force=True)
    assert w.pending == 0 and not w.holding
    frames = store.conn.execute("SELECT count(*) FROM raw_frames").fetchone()[0]
    assert frames == held + 1  # everything taken was stored; only refusals are missing
    # Taking again once the held data is written.
    pipeline.on_frame("strap-1", "2a37", t0 + timedelta(seconds=99), HR)
    assert w.pending == 1 and w.stats.refused_stream_frames == 20


def test_the_daemon_keeps_running_and_alerts_on_a_full_disk(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with small_tmpfs(tmp_path, "4m") as mnt:
        cfg = Config(storage=StorageSection(db_path=str(mnt / "g.db"), batch_max_delay_s=0.2))
        sent = [0]

        async def feeder(d: Daemon) -> None:
            assert d.pipeline is not None and d.writer is not None
            d.writer.max_pending_bytes = 256 * 1024  # a small cap: refusals show up soon

            pipeline = d.pipeline

            async def feed(frames: int) -> None:
                for _ in range(frames // 20):
                    for _ in range(20):
                        pipeline.on_frame("strap-1", "2a37", datetime.now(UTC), HR)
                        sent[0] += 1
                    await asyncio.sleep(0.01)

            await feed(200)
            filler = fill(mnt)
            # The WAL reuses its file until a checkpoint cannot grow the database: feed until
            # a commit fails.
            for _ in range(2000):
                if d.writer.holding:
                    break
                await feed(20)
            assert d.writer.holding
            await feed(400)  # still running, holding what it takes
            assert d.writer.holding and d.writer.pending >= 100
            for _ in range(200):
                if d.writer.stats.refused_stream_frames:
                    break
                await feed(20)
            assert d.writer.stats.refused_stream_frames > 0
            filler.unlink()
            for _ in range(600):
                if not (d.writer.holding or d.writer.pending):
                    break
                await asyncio.sleep(0.1)
            d.stop()

        caplog.set_level(logging.INFO)
        daemon = Daemon(cfg, components=[Component("feeder", feeder)])
        assert asyncio.run(asyncio.wait_for(daemon.run(), 120)) == 0
        assert daemon.writer is not None and daemon.writer.stats.failures >= 1
        text = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
        assert "storage.failing" in text and "disk holding the database is full" in text
        assert "alert.raised" in text and "storage_fault" in text
        assert "storage.recovered" in text
        refused = daemon.writer.stats.refused_stream_frames
        store = Store.open(mnt / "g.db")
        stored = store.conn.execute("SELECT count(*) FROM raw_frames").fetchone()[0]
        assert stored == sent[0] - refused  # all taken were stored; refusals are counted
        assert gateway_status(store)["storage"]["refused_stream_frames"] == refused
        store.close()


def test_the_last_record_held_moves_only_with_the_commit(tmp_path: Path) -> None:
    """A meter's records held by a failing writer are not "held" for backfill: a restart
    asks the meter again from the last committed record."""
    from edge_gateway.drivers.fleet import StoreLedger
    from edge_gateway.drivers.profiles.base import DateTime
    from edge_gateway.drivers.profiles.glucose import GlucoseMeasurement
    from edge_gateway.drivers.profiles.ieee11073 import SFloat

    def record(seq: int) -> bytes:
        return GlucoseMeasurement(seq, DateTime.of(datetime(2026, 11, 1, 8, seq)),
                                  concentration=SFloat(100 + seq, -5), type=1,
                                  sample_location=1).to_bytes()

    db = tmp_path / "g.db"
    store = Store.open(db)
    store.upsert_device("meter-1", profile="glucose", name="Meter")
    store.conn.execute("PRAGMA busy_timeout = 0")
    w = BatchWriter(store, max_frames=1000)
    pipeline = FramePipeline(store, w)
    ledger = StoreLedger(store)
    t0 = datetime.now(UTC)
    for seq in range(1, 6):
        pipeline.on_frame("meter-1", "2a18", t0, record(seq))
    w.flush(force=True)
    mark = ledger.last_record("meter-1", "2a18")
    assert mark is not None and mark.key == 5
    blocker = locked(db)
    for seq in range(6, 11):
        pipeline.on_frame("meter-1", "2a18", t0, record(seq))
    assert w.flush(force=True) == 0 and w.holding and w.pending == 5
    blocker.execute("ROLLBACK")
    blocker.close()
    held = ledger.last_record("meter-1", "2a18")
    assert held is not None and held.key == 5  # not 10: those are only in memory
    # The daemon stops without writing them (still failing): the next start's ledger.
    store.conn.close()
    again = StoreLedger(Store.open(db)).last_record("meter-1", "2a18")
    assert again is not None and again.key == 5
