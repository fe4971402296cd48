"""Into SQLite: BleFleet + FramePipeline + BatchWriter + Store, through real bleak."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from ble_sim import GlucoseMeter, HeartRateStrap, RecordCuff, Rig, until
from hardware_sim.bluez import VirtualBlueZ

from edge_gateway.config import BleSection
from edge_gateway.drivers import ble
from edge_gateway.drivers.fleet import BleFleet
from edge_gateway.errors import DeviceError
from edge_gateway.store import Store

STRAP, METER = "C1:00:00:00:00:01", "C1:00:00:00:00:02"


def count(store: Store, sql: str, *args: object) -> int:
    return int(store.conn.execute(sql, args).fetchone()[0])


def test_frames_into_sqlite_with_rejects_backfill_and_reset(
    virtual_bluez: Callable[..., VirtualBlueZ], tmp_path: Path,
) -> None:
    rig = Rig(tmp_path / "g.db")
    rig.add(STRAP, "heart_rate")
    rig.add(METER, "glucose")
    store = rig.store

    def glucose_seqs(epoch: int) -> list[int]:
        rows = store.conn.execute(
            "SELECT record_key FROM readings WHERE device_id = ? AND kind = 'glucose'"
            " AND reset_epoch = ? ORDER BY CAST(substr(record_key, 5) AS INTEGER)",
            (METER, epoch))
        return [int(k[4:]) for (k,) in rows]

    async def main() -> None:
        strap = HeartRateStrap(STRAP)
        strap.corrupt_every = 10
        meter = GlucoseMeter(METER, records=12)
        async with virtual_bluez([strap, meter]):
            await ble.scan(0.3)
            # idle_disconnect_s=None: the meter stays connected after its transfer, so that
            # the test can drop its link and reboot it mid-stream.
            fleet = rig.fleet(BleSection(backoff_initial_s=0.1, backoff_max_s=1.0),
                              clock_trusted=lambda: False, idle_disconnect_s=None)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(fleet.run(rig.sleep, poll_s=0.1), name="ble")
                await until(lambda: glucose_seqs(0) == list(range(12)))
                await until(lambda: count(store, "SELECT count(*) FROM raw_frames WHERE"
                                          " status = 'rejected'") >= 2)
                # Link loss while the meter takes two more, then a reboot with three new.
                assert meter.link is not None
                meter.link.drop()
                meter.take(111)
                meter.take(112)
                await until(lambda: glucose_seqs(0) == list(range(14)))
                await until(lambda: fleet.sessions[METER].state == "streaming")
                if meter.link is not None:
                    meter.link.drop()
                meter.reboot(3)
                await until(lambda: glucose_seqs(1) == [0, 1, 2])
                # Removing a device stops its session without a restart.
                store.conn.execute("UPDATE devices SET enabled = 0 WHERE id = ?", (STRAP,))
                store.conn.commit()
                await until(lambda: STRAP not in fleet.sessions)
                rig.stopping.set()
        rig.writer.flush()

    asyncio.run(main())
    assert count(store, "SELECT count(*) FROM readings WHERE kind = 'heart_rate'") >= 10
    rejected = store.conn.execute(
        "SELECT characteristic, error FROM raw_frames WHERE status = 'rejected'").fetchall()
    assert rejected and all(c == "2a37" and "truncated" in e for c, e in rejected)
    assert count(store, "SELECT reset_epoch FROM devices WHERE id = ?", METER) == 1
    assert count(store, "SELECT connected FROM devices WHERE id = ?", METER) == 0
    assert count(store, "SELECT count(*) FROM readings WHERE device_id = ? AND kind = 'glucose'",
                 METER) == 14 + 3
    store.close()


def test_bluetoothd_going_away_is_fatal_for_the_fleet(
    virtual_bluez: Callable[..., VirtualBlueZ], tmp_path: Path,
) -> None:
    rig = Rig(tmp_path / "g.db")
    rig.add(STRAP, "heart_rate")

    async def sleep(seconds: float) -> bool:  # never stops: the fleet must fail by itself
        await asyncio.sleep(seconds)
        return False

    async def main() -> None:
        strap = HeartRateStrap(STRAP)
        async with virtual_bluez([strap]) as bluez:
            await ble.scan(0.3)
            fleet = BleFleet(rig.store, rig.pipeline.on_frame, BleSection(),
                             clock_trusted=lambda: False)
            run = asyncio.create_task(fleet.run(sleep, poll_s=0.1), name="ble")
            await until(lambda: STRAP in fleet.sessions
                        and fleet.sessions[STRAP].state == "streaming")
            bluez.bus.disconnect()  # bluetoothd crashes: no signals, its name just goes away
            async with asyncio.timeout(10):
                with pytest.raises(DeviceError, match="bluetoothd stopped"):
                    await run

    asyncio.run(main())
    rig.store.close()


def test_restarted_gateway_asks_only_for_new_bp_records(
    virtual_bluez: Callable[..., VirtualBlueZ], tmp_path: Path,
) -> None:
    cuff_addr = "C1:00:00:00:00:03"
    rig = Rig(tmp_path / "g.db", flush_always=True)
    rig.add(cuff_addr, "blood_pressure")
    store = rig.store

    def records() -> int:
        return count(store, "SELECT count(*) FROM raw_frames WHERE characteristic = '2b36'")

    async def one_run(cuff: RecordCuff, want: int) -> None:
        rig.stopping.clear()
        fleet = rig.fleet(BleSection(), clock_trusted=lambda: False, on_settings=lambda: None)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(fleet.run(rig.sleep, poll_s=0.1, watch_bluez=False), name="ble")
            # "idle": the cuff (store-only) was left once its transfer was done.
            await until(lambda: records() == want
                        and fleet.sessions[cuff_addr].state in ("streaming", "idle"))
            rig.stopping.set()
        rig.writer.flush()

    async def main() -> None:
        cuff = RecordCuff(cuff_addr, records=6)
        async with virtual_bluez([cuff]):
            await ble.scan(0.3)
            await one_run(cuff, 6)
            cuff.take()
            await one_run(cuff, 7)  # a new fleet (as after a restart): only record 6 is new

    asyncio.run(main())
    seqs = [bytes(p)[1] for (p,) in store.conn.execute(
        "SELECT payload FROM raw_frames WHERE characteristic = '2b36' ORDER BY id")]
    assert seqs == list(range(7))
    store.close()
