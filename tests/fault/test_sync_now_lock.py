"""Issue 12: `sync now` beside a live daemon coordinates with it instead of publishing twice.

One publisher per database: the daemon's sync holds an flock on ``<db>.sync-lock``;
`sync now` then says so and publishes nothing, and a daemon started beside a running
`sync now` waits for it.  A real daemon, a real mosquitto, the real CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from faultcli import cli, stop
from hardware_sim.broker import LocalBroker, free_port, start_broker

from edge_gateway.config import MqttSection, SyncSection
from edge_gateway.reading import Summary
from edge_gateway.store import Store
from edge_gateway.store.outbox import enqueue_summary
from edge_gateway.sync.service import SyncBusy, SyncLock, SyncService


def fill(db: Path, n: int) -> None:
    store = Store.open(db)
    t0 = datetime(2026, 11, 18, tzinfo=UTC)
    with store.transaction():
        for i in range(n):
            t = t0 + timedelta(minutes=5 * i)
            enqueue_summary(store, i + 1, Summary(
                "p1", "hrv", t, t + timedelta(minutes=5), {"mean_hr_bpm": 60 + i},
                0.95, "hrv/1", t + timedelta(minutes=5), "strap-1"))
    store.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    b = start_broker(tmp_path / "broker")
    assert b is not None, "mosquitto is not installed: apt-get install mosquitto"
    try:
        yield b
    finally:
        b.stop()


def held(lock_file: Path) -> bool:
    fd = os.open(lock_file, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def daemon(cfg: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "edge_gateway", "-c", str(cfg), "run"],
                                env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        yield proc
    finally:
        stop(proc)


def status(db: Path, env: dict[str, str]) -> dict[str, int]:
    proc = cli("--db", str(db), "sync", "status", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, int] = json.loads(proc.stdout)
    return out


def test_sync_now_beside_a_syncing_daemon(tmp_path: Path, cli_env: dict[str, str],
                                          broker: LocalBroker) -> None:
    db = tmp_path / "g.db"
    fill(db, 30)
    # The daemon's broker is down (nothing listens on its port): it keeps retrying, holding
    # the sync lock, with all 30 items pending.  Was: `sync now` published them too.
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'[storage]\ndb_path = "{db}"\n[mqtt]\nhost = "127.0.0.1"\n'
                   f"port = {free_port()}\n")
    lock = Path(str(db) + ".sync-lock")
    with daemon(cfg, cli_env, tmp_path / "daemon.log") as proc:
        deadline = time.monotonic() + 30
        while not (lock.exists() and held(lock)):
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
            assert time.monotonic() < deadline, "the daemon never took the sync lock"
            time.sleep(0.1)
        now = cli("--db", str(db), "sync", "now", "--broker", broker.url, "--timeout", "10",
                  env=cli_env)
        assert now.returncode == 0, now.stderr
        assert "the daemon is running and syncing; nothing to do" in now.stdout
        st = status(db, cli_env)
        assert st["pending"] == 30 and st["sent"] == 0
    # The daemon is gone (and with it its lock): `sync now` publishes.
    assert not held(lock)
    now = cli("--db", str(db), "sync", "now", "--broker", broker.url, "--timeout", "30",
              env=cli_env)
    assert now.returncode == 0, now.stderr
    assert "published 30 items; 0 pending" in now.stdout


def test_the_daemon_waits_for_a_running_sync_now(tmp_path: Path,
                                                 broker: LocalBroker) -> None:
    db = tmp_path / "g.db"
    fill(db, 5)
    store = Store.open(db)
    mqtt = MqttSection(host="127.0.0.1", port=broker.port)
    svc = SyncService(store, mqtt, SyncSection(), "gw1", "home")

    async def scenario() -> None:
        with SyncLock(db) as other:  # a `sync now` in progress
            assert other.acquire()
            with pytest.raises(SyncBusy):
                await svc.drain(5)
            stop = asyncio.Event()
            task = asyncio.create_task(svc.run(stop))
            await asyncio.sleep(1.5)
            assert svc.outbox.pending() == 5  # waiting, not publishing
        deadline = time.monotonic() + 20
        while svc.outbox.pending():
            assert time.monotonic() < deadline, "the daemon's sync never resumed"
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(task, 15)

    try:
        asyncio.run(scenario())
    finally:
        store.close()
