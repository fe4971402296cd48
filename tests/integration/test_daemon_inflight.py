"""SIGTERM with readings in flight: every frame handed to the pipeline ends up committed."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

from edge_gateway.config import Config, StorageSection
from edge_gateway.drivers.profiles.heart_rate import HeartRateMeasurement
from edge_gateway.runtime.daemon import Component, Daemon
from edge_gateway.store import Store


def test_sigterm_commits_every_received_reading(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    cfg = Config(storage=StorageSection(db_path=str(db), batch_max_frames=10_000,
                                        batch_max_delay_s=1.0))
    sent = {"frames": 0, "bad": 0}
    payload = HeartRateMeasurement.from_bytes(bytes.fromhex("10480004")).to_bytes()

    async def feeder(d: Daemon) -> None:
        assert d.pipeline is not None
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not d.stop_event.is_set():
            for _ in range(50):
                d.pipeline.on_frame("strap-1", "2a37", datetime.now(UTC), payload)
                sent["frames"] += 1
            d.pipeline.on_frame("strap-1", "2a37", datetime.now(UTC), b"\x10")  # truncated
            sent["bad"] += 1
            if loop.time() - start > 0.7 and not d.stop_event.is_set():
                # Mid-batch (the writer holds up to 1 s of frames in memory): stop now.
                os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(0.01)

    daemon = Daemon(cfg, components=[Component("feeder", feeder)])
    assert asyncio.run(daemon.run()) == 0
    assert daemon.writer is not None and daemon.writer.stats.commits >= 1
    store = Store.open(db)
    ok, rejected = store.conn.execute(
        "SELECT sum(status = 'ok'), sum(status = 'rejected') FROM raw_frames").fetchone()
    assert ok == sent["frames"] and rejected == sent["bad"]
    # Each good frame gave one heart rate and one RR interval.
    n = store.conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    assert n == 2 * sent["frames"]
    err = store.conn.execute(
        "SELECT error FROM raw_frames WHERE status = 'rejected' LIMIT 1").fetchone()[0]
    assert "2a37" in err and "truncated" in err
    # The WAL was checkpointed on the way out.
    wal = Path(str(db) + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def test_a_failing_job_is_restarted_and_a_critical_one_stops_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    cfg = Config(storage=StorageSection(db_path=str(db)))
    runs = {"flaky": 0}
    payload = bytes.fromhex("10480004")

    async def flaky(d: Daemon) -> None:
        runs["flaky"] += 1
        if runs["flaky"] == 1:
            raise RuntimeError("a bug in a non-critical job")

    async def radio(d: Daemon) -> None:
        assert d.pipeline is not None
        d.pipeline.on_frame("strap-1", "2a37", datetime.now(UTC), payload)
        await asyncio.sleep(1.5)  # the flaky job gets restarted after 1 s meanwhile
        raise RuntimeError("the adapter went away")

    daemon = Daemon(cfg, components=[Component("flaky", flaky),
                                     Component("radio", radio, critical=True)])
    assert asyncio.run(daemon.run()) == 1
    assert runs["flaky"] == 2
    # What was received before the failure is committed.
    store = Store.open(db)
    assert store.conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 2
