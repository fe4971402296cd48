"""The demo scenario's devices over the virtual BlueZ, driven by real bleak.

Each simulated device is found by its health service, paired where it demands it (the meter
with the passkey it "shows"), and delivers at least one frame that the gateway's registry
decodes — the simulator and the codecs agree end to end, over D-Bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from bleak import BleakClient
from hardware_sim.bluez import VirtualBlueZ
from hardware_sim.peripherals.glucose_meter import GlucoseMeter
from hardware_sim.scenario import build_scenario, load_scenario

from edge_gateway.drivers import ble, registry
from edge_gateway.drivers.profiles.base import full_uuid
from edge_gateway.drivers.profiles.racp import RecordAccessControlPoint as Racp

#: (measurement characteristic, RACP request to send first or None) per health service.
FIRST_FRAME = {
    "180d": ("2a37", None),
    "181f": ("2aa7", Racp(1, 6)),  # last stored record
    "1808": ("2a18", Racp(1, 5)),  # first stored record
    "1810": ("2b36", Racp(1, 6)),  # the demo's BLS 1.1 cuff: last stored record over RACP
    "1822": ("2a5f", None),
    "1809": ("2a1c", None),
}


def test_demo_devices_deliver_decodable_frames_through_bleak(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    sim = build_scenario(load_scenario("demo"), start=datetime.now(UTC))
    meter = sim.peripheral("Glucose meter")
    assert isinstance(meter, GlucoseMeter)

    async def passkey(address: str) -> int:
        assert address == meter.address
        assert meter.passkey is not None
        return meter.passkey

    async def one(address: str, service: str) -> object:
        char, racp = FIRST_FRAME[service]
        got: asyncio.Queue[bytes] = asyncio.Queue()
        async with BleakClient(address, timeout=10) as client:
            await client.start_notify(full_uuid(char), lambda _c, data: got.put_nowait(data))
            if racp is not None:
                await client.start_notify(full_uuid("2a52"), lambda _c, _d: None)
                await client.write_gatt_char(full_uuid("2a52"), racp.to_bytes(), response=True)
            async with asyncio.timeout(10):
                raw = await got.get()
        return registry.decode(char, raw)

    async def main() -> None:
        async with virtual_bluez(sim.peripherals):
            found = await ble.scan(1.0, list(FIRST_FRAME))
            by_address = {f.address: f for f in found}
            assert set(by_address) == {p.address for p in sim.peripherals}
            for p in sim.peripherals:
                if p.requires_pairing:
                    await ble.pair(p.address, passkey if p.passkey else None, within=15)
            for p in sim.peripherals:
                service = next(s for s in by_address[p.address].services if s in FIRST_FRAME)
                decoded = await one(p.address, service)
                assert isinstance(decoded, registry.CODECS[FIRST_FRAME[service][0]]), p.name

    asyncio.run(main())
