"""The `faults` scenario (every fault knob) through real bleak and the fleet into SQLite."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ble_sim import Rig
from hardware_sim.bluez import VirtualBlueZ
from hardware_sim.scenario import build_scenario, load_scenario

from edge_gateway.config import BleSection
from edge_gateway.drivers import ble
from edge_gateway.drivers.fleet import BleFleet
from edge_gateway.store import Store


def run_faults(virtual_bluez: Callable[..., VirtualBlueZ], db: Path,
               seconds: float) -> tuple[Store, BleFleet, dict[str, int]]:
    sim = build_scenario(load_scenario("faults"), start=datetime.now(UTC))
    rig = Rig(db, max_delay_s=0.2, max_frames=500)
    rig.add_scenario(sim)
    store = rig.store
    fleet: BleFleet | None = None

    async def main() -> None:
        nonlocal fleet
        async with virtual_bluez(sim.peripherals, bonded=True) as bluez:
            await ble.scan(0.3)
            fleet = rig.fleet(BleSection(max_connections=4, backoff_initial_s=0.2,
                                         backoff_max_s=2.0),
                              clock_trusted=lambda: True, idle_disconnect_s=2.0, revisit_s=3.0)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(fleet.run(rig.sleep, poll_s=0.2), name="ble")
                t_end = time.monotonic() + seconds
                while time.monotonic() < t_end:
                    await asyncio.sleep(0.2)
                    assert bluez.max_connected <= 4
                rig.stopping.set()
            assert bluez.connected_now == 0
        rig.writer.flush()

    asyncio.run(main())
    assert fleet is not None
    counts = dict(store.conn.execute(
        "SELECT device_id, count(*) FROM readings GROUP BY device_id").fetchall())
    return store, fleet, counts


def check(store: Store, fleet: BleFleet, counts: dict[str, int],
          caplog: pytest.LogCaptureFixture) -> None:
    # Every device delivered despite refusals, link losses and damaged frames.
    assert set(counts) == set(fleet.sessions), counts
    assert all(n > 0 for n in counts.values())
    rejected = store.conn.execute(
        "SELECT count(*) FROM raw_frames WHERE status = 'rejected'").fetchone()[0]
    assert rejected > 0
    # No session crashed on a bug: every failure was a device error, logged as such.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR
                and "session failed" in r.getMessage()]
    scale = fleet.sessions["FA:17:00:00:00:06"]
    assert scale.stats.connects >= 1 and scale.stats.failures >= 1
    strap = fleet.sessions["FA:17:00:00:00:01"]
    assert strap.stats.link_losses >= 1 and strap.stats.connects >= 2


def test_fault_scenario_short(virtual_bluez: Callable[..., VirtualBlueZ], tmp_path: Path,
                              caplog: pytest.LogCaptureFixture) -> None:
    store, fleet, counts = run_faults(virtual_bluez, tmp_path / "g.db", 12.0)
    check(store, fleet, counts, caplog)
    store.close()


@pytest.mark.soak
def test_fault_scenario_soak(virtual_bluez: Callable[..., VirtualBlueZ], tmp_path: Path,
                             caplog: pytest.LogCaptureFixture) -> None:
    store, fleet, counts = run_faults(virtual_bluez, tmp_path / "g.db", 180.0)
    check(store, fleet, counts, caplog)
    # Readings are unique per natural key: re-fetches after each reconnect added no duplicate.
    dupes = store.conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM readings GROUP BY device_id, characteristic, kind,"
        " reset_epoch, record_key HAVING count(*) > 1)").fetchone()[0]
    assert dupes == 0
    store.close()
