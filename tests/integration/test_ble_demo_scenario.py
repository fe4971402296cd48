"""The demo scenario's six devices through the virtual BlueZ, real bleak and the fleet into
SQLite: every device delivers, the stored histories are backfilled on first connect."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ble_sim import Rig, until
from hardware_sim.bluez import VirtualBlueZ
from hardware_sim.scenario import build_scenario, load_scenario

from edge_gateway.config import BleSection
from edge_gateway.drivers import ble


def test_demo_scenario_devices_all_deliver_into_sqlite(
    virtual_bluez: Callable[..., VirtualBlueZ], tmp_path: Path,
) -> None:
    sim = build_scenario(load_scenario("demo"), start=datetime.now(UTC))
    rig = Rig(tmp_path / "g.db", max_delay_s=0.2, max_frames=500)
    rig.add_scenario(sim)
    store = rig.store

    def readings_by_device() -> dict[str, int]:
        return dict(store.conn.execute(
            "SELECT device_id, count(*) FROM readings GROUP BY device_id").fetchall())

    async def main() -> float:
        async with virtual_bluez(sim.peripherals, bonded=True):
            await ble.scan(0.3)
            fleet = rig.fleet(BleSection(max_connections=7), clock_trusted=lambda: True)
            started = time.monotonic()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(fleet.run(rig.sleep, poll_s=0.2), name="ble")
                # Streams stay connected; store-only devices are left ("idle") once their
                # transfer is done.
                await until(lambda: len(readings_by_device()) == 6
                            and all(s.state in ("streaming", "idle")
                                    for s in fleet.sessions.values()),
                            within=60)
                elapsed = time.monotonic() - started
                rig.stopping.set()
        rig.writer.flush()
        return elapsed

    elapsed = asyncio.run(main())
    counts = readings_by_device()
    assert elapsed < 30, f"backfill too slow: {elapsed:.1f} s"
    assert counts["C0:FF:EE:00:00:02"] >= 3000  # ~13.5 days of 5-minute CGM records
    assert counts["C0:FF:EE:00:00:03"] >= 30  # the meter's two weeks of finger-sticks
    rejected = store.conn.execute("SELECT count(*) FROM raw_frames WHERE status = 'rejected'"
                                  ).fetchone()[0]
    assert rejected == 0
    # Battery level and Device Information reached the devices table.
    for battery, details in store.conn.execute("SELECT battery_pct, details FROM devices"):
        assert battery is not None and 0 <= battery <= 100
        assert details is not None and "model" in json.loads(details)
    store.close()
