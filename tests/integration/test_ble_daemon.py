"""The daemon with the BLE component (`ble_component`): readings in, clean stop with links up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from ble_sim import GlucoseMeter, HeartRateStrap, until
from hardware_sim.bluez import VirtualBlueZ

from edge_gateway.config import load_config
from edge_gateway.drivers import ble
from edge_gateway.drivers.fleet import ble_component
from edge_gateway.runtime.daemon import Component, Daemon
from edge_gateway.store import Store

STRAP, METER = "C2:00:00:00:00:01", "C2:00:00:00:00:02"


def test_daemon_runs_ble_sessions_and_stops_cleanly(
    virtual_bluez: Callable[..., VirtualBlueZ], tmp_path: Path,
) -> None:
    db = tmp_path / "g.db"
    store = Store.open(db)
    store.upsert_device(STRAP, profile="heart_rate", address=STRAP)
    store.upsert_device(METER, profile="glucose", address=METER)
    store.close()
    cfg = load_config(None, db_override=db)
    readings = Store.open(db, readonly=True)

    def count(kind: str) -> int:
        return int(readings.conn.execute(
            "SELECT count(*) FROM readings WHERE kind = ?", (kind,)).fetchone()[0])

    async def main() -> float:
        async with virtual_bluez([HeartRateStrap(STRAP), GlucoseMeter(METER, records=8)]) as bz:
            await ble.scan(0.3)
            daemon = Daemon(cfg, components=[Component("ble", ble_component)])
            task = asyncio.create_task(daemon.run(), name="daemon")
            await until(lambda: count("heart_rate") >= 5 and count("glucose") == 8, within=15)
            # A link may be mid-reconnect on a loaded machine: stop with both links up.
            await until(lambda: bz.connected_now == 2, within=15)
            stopped_at = time.monotonic()
            daemon.stop()
            assert await task == 0
            assert bz.connected_now == 0  # every link closed before run() returned
            return time.monotonic() - stopped_at

    took = asyncio.run(main())
    assert took < 5.0  # the contract: stopped within 5 s of SIGTERM
    row = readings.conn.execute("SELECT connected FROM devices WHERE id = ?", (STRAP,)).fetchone()
    assert row[0] == 0
    readings.close()
