"""Records held by a failing writer are fetched again after a restart (issue 12).

A meter's stored records, taken while every commit fails, are held in memory, never
acknowledged: the backfill's "last record held" is read from committed rows only.  The
gateway stops before storage works again (the held batch is lost with the process); the next
start asks the meter from the last committed record and stores every record.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

from ble_sim import GlucoseMeter, Rig, until
from hardware_sim.bluez import VirtualBlueZ

from edge_gateway.config import BleSection
from edge_gateway.drivers import ble
from edge_gateway.store import Store

METER = "C1:00:00:00:00:12"


def glucose_seqs(store: Store) -> list[int]:
    rows = store.conn.execute(
        "SELECT record_key FROM readings WHERE device_id = ? AND kind = 'glucose'"
        " ORDER BY CAST(substr(record_key, 5) AS INTEGER)", (METER,))
    return [int(k[4:]) for (k,) in rows]


def test_records_held_when_the_gateway_stops_are_fetched_again_at_the_next_start(
    virtual_bluez: Callable[..., VirtualBlueZ], tmp_path: Path,
) -> None:
    db = tmp_path / "g.db"
    meter = GlucoseMeter(METER, records=8)
    section = BleSection(backoff_initial_s=0.1, backoff_max_s=1.0)

    async def run(rig: Rig, until_true: Callable[[], bool]) -> None:
        await ble.scan(0.3)
        fleet = rig.fleet(section, clock_trusted=lambda: False, idle_disconnect_s=None)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(fleet.run(rig.sleep, poll_s=0.1), name="ble")
            await until(until_true)
            rig.stopping.set()

    async def phase_one() -> Rig:
        rig = Rig(db)
        rig.add(METER, "glucose")
        async with virtual_bluez([meter]):
            await run(rig, lambda: glucose_seqs(rig.store) == list(range(8)))
        return rig

    first = asyncio.run(phase_one())
    assert glucose_seqs(first.store) == list(range(8))

    async def phase_two() -> Rig:
        rig = Rig(db)
        rig.store.conn.execute("PRAGMA busy_timeout = 0")
        blocker = sqlite3.connect(db, timeout=0, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # every commit fails from here on
        try:
            for value in (120, 121, 122):
                meter.take(value)
            async with virtual_bluez([meter]):
                await run(rig, lambda: rig.writer.holding and rig.writer.pending >= 3)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # Stopped while holding: the held records die with the process.
        assert rig.writer.holding
        return rig

    second = asyncio.run(phase_two())
    assert glucose_seqs(second.store) == list(range(8))
    second.store.conn.close()

    async def phase_three() -> Rig:
        rig = Rig(db)
        async with virtual_bluez([meter]):
            await run(rig, lambda: glucose_seqs(rig.store) == list(range(11)))
        return rig

    third = asyncio.run(phase_three())
    assert glucose_seqs(third.store) == list(range(11))
