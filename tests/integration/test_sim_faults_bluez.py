"""The fault knobs of scenarios/faults.toml, seen by a real central (bleak over the virtual BlueZ).

Each device misbehaves as its table says: refused connections, a clock years off that the
central can set, corrupt frames among good ones, and slow indications cut by a link loss, after
which the stored backlog resumes without a gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from bleak import BleakClient
from bleak.exc import BleakError
from hardware_sim.bluez import VirtualBlueZ
from hardware_sim.peripherals import BloodPressureCuff
from hardware_sim.scenario import Simulation, build_scenario, load_scenario

from edge_gateway.drivers import ble
from edge_gateway.drivers.profiles.base import full_uuid
from edge_gateway.drivers.profiles.blood_pressure import BloodPressureMeasurement
from edge_gateway.drivers.profiles.heart_rate import HeartRateMeasurement
from edge_gateway.drivers.profiles.support import CurrentTime
from edge_gateway.errors import MalformedPayload


@pytest.fixture
def sim() -> Simulation:
    return build_scenario(load_scenario("faults"), start=datetime.now(UTC))


def test_refusals_then_a_clock_years_off_that_the_central_sets(
    virtual_bluez: Callable[..., VirtualBlueZ], sim: Simulation,
) -> None:
    scale = sim.peripheral("Scale (refuses)")
    meter = sim.peripheral("Glucose meter (reset)")

    async def main() -> None:
        async with virtual_bluez([scale, meter]):
            await ble.scan(0.5)
            refused = 0
            while True:
                try:
                    async with BleakClient(scale.address, timeout=5):
                        break
                except BleakError:
                    refused += 1
                    assert refused <= 3
            assert refused == 3
            await ble.pair(meter.address, None, within=10)
            async with BleakClient(meter.address, timeout=5) as client:
                shown = CurrentTime.from_bytes(await client.read_gatt_char(full_uuid("2a2b")))
                ahead = shown.to_datetime() - datetime.now(UTC).replace(tzinfo=None)  # type: ignore[operator]
                assert abs(ahead + timedelta(days=3 * 365)) < timedelta(seconds=5)
                now = datetime.now(UTC).replace(tzinfo=None)
                await client.write_gatt_char(full_uuid("2a2b"),
                                             CurrentTime.for_write(now).to_bytes(), response=True)
                fixed = CurrentTime.from_bytes(await client.read_gatt_char(full_uuid("2a2b")))
                assert abs(fixed.to_datetime() - now) < timedelta(seconds=2)  # type: ignore[operator]

    asyncio.run(main())


def test_corrupt_frames_among_good_ones_and_a_link_loss(
    virtual_bluez: Callable[..., VirtualBlueZ], sim: Simulation,
) -> None:
    strap = sim.peripheral("HR strap (flaky)")
    strap.faults.link_loss_after = 2.5
    strap.frame_faults.corrupt_every = 2

    async def main() -> tuple[int, int]:
        good = bad = 0
        lost = asyncio.Event()
        async with virtual_bluez([strap]):
            await ble.scan(0.5)

            def frame(_c: object, data: bytearray) -> None:
                nonlocal good, bad
                try:
                    HeartRateMeasurement.from_bytes(bytes(data))
                    good += 1
                except MalformedPayload:
                    bad += 1

            async with BleakClient(strap.address, timeout=5,
                                   disconnected_callback=lambda _c: lost.set()) as client:
                await client.start_notify(full_uuid("2a37"), frame)
                async with asyncio.timeout(10):
                    await lost.wait()
        return good, bad

    good, bad = asyncio.run(main())
    assert good >= 1 and bad >= 1 and abs(good - bad) <= 1


def test_slow_indications_cut_by_link_loss_resume_without_a_gap(
    virtual_bluez: Callable[..., VirtualBlueZ], sim: Simulation,
) -> None:
    cuff = sim.peripheral("BP cuff (slow, clock off)")
    assert isinstance(cuff, BloodPressureCuff)
    cuff.faults.indication_delay = 0.05
    stored = [s.device_time for s in cuff.stored]

    async def main() -> list[list[datetime]]:
        runs: list[list[datetime]] = []
        async with virtual_bluez([cuff]):
            await ble.scan(0.5)
            await ble.pair(cuff.address, None, within=10)
            # Armed after pairing: the knob fires on the next connection only (link_loss_once).
            cuff.faults.link_loss_after = 0.6
            for _ in range(2):
                got: list[datetime] = []
                done = asyncio.Event()

                def frame(_c: object, data: bytearray, got: list[datetime] = got,
                          done: asyncio.Event = done) -> None:
                    m = BloodPressureMeasurement.from_bytes(bytes(data))
                    assert m.timestamp is not None
                    got.append(m.timestamp.to_datetime())  # type: ignore[arg-type]
                    if runs and len(set(runs[0]) | set(got)) == len(stored):
                        done.set()

                async with BleakClient(cuff.address, timeout=5,
                                       disconnected_callback=lambda _c, d=done: d.set()) as client:
                    await client.start_notify(full_uuid("2a35"), frame)
                    async with asyncio.timeout(15):
                        # First link: until it is lost half-way; second: until all arrived.
                        await done.wait()
                runs.append(got)
        return runs

    first, second = asyncio.run(main())
    assert 0 < len(first) < len(stored)
    # Oldest first, and together exactly the stored backlog: nothing skipped.  The one in
    # flight when the link dropped may come twice (the gateway's inserts are idempotent).
    assert first == stored[: len(first)]
    assert sorted(set(first) | set(second)) == stored
    assert len(first) + len(second) - len(stored) <= 1
