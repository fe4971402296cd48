"""The demo's BLS 1.1 cuff through the virtual BlueZ, real bleak and the fleet into SQLite: its
stored Blood Pressure Records (0x2B36) are fetched over the RACP and decoded into the same
readings a live Blood Pressure Measurement gives (characteristic 2a35), none rejected."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ble_sim import Rig, until
from hardware_sim.bluez import VirtualBlueZ
from hardware_sim.peripherals.blood_pressure import BloodPressureCuff
from hardware_sim.scenario import build_scenario, load_scenario

from edge_gateway.config import BleSection
from edge_gateway.drivers import ble


def test_demo_cuff_records_are_backfilled_and_decoded(
    virtual_bluez: Callable[..., VirtualBlueZ], tmp_path: Path,
) -> None:
    sim = build_scenario(load_scenario("demo"), start=datetime.now(UTC))
    (cuff,) = [p for p in sim.peripherals if isinstance(p, BloodPressureCuff)]
    assert cuff.records  # the demo's cuff is a BLS 1.1 one
    stored = len(cuff.stored)
    rig = Rig(tmp_path / "g.db", max_delay_s=0.2, max_frames=500)
    rig.add(cuff.address, "blood_pressure")
    store = rig.store

    def count(sql: str) -> int:
        return int(store.conn.execute(sql).fetchone()[0])

    async def main() -> None:
        async with virtual_bluez([cuff], bonded=True):
            await ble.scan(0.3)
            fleet = rig.fleet(BleSection(max_connections=2), clock_trusted=lambda: True)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(fleet.run(rig.sleep, poll_s=0.2), name="ble")
                await until(lambda: count("SELECT count(*) FROM readings WHERE kind ="
                                          " 'bp_systolic'") >= stored, within=60)
                rig.stopping.set()
        rig.writer.flush()

    asyncio.run(main())
    assert count("SELECT count(*) FROM raw_frames WHERE characteristic = '2b36'") >= stored
    assert count("SELECT count(*) FROM raw_frames WHERE status = 'rejected'") == 0
    rows = store.conn.execute(
        "SELECT DISTINCT characteristic FROM readings WHERE kind LIKE 'bp_%'").fetchall()
    assert rows == [("2a35",)]
    assert count("SELECT count(*) FROM readings WHERE kind = 'bp_systolic'") == stored
    assert count("SELECT count(*) FROM readings WHERE record_key LIKE 'u1:dev:%'") > 0
    store.close()
