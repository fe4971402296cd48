"""Discovery and streaming through bleak's real BlueZ backend against the virtual BlueZ."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ble_sim import HRM, HeartRateStrap, Sink, ble_session, running, scanned_session, until
from hardware_sim.bluez import VirtualBlueZ

from edge_gateway.backoff import Backoff
from edge_gateway.drivers import ble
from edge_gateway.drivers.profiles.heart_rate import HeartRateMeasurement
from edge_gateway.drivers.session import DeviceSession


async def streamed(virtual_bluez: Callable[..., VirtualBlueZ], strap: HeartRateStrap,
                   seconds: float, **kw: object) -> tuple[Sink, DeviceSession]:
    """Stream from ``strap`` through bleak for ``seconds``: what arrived, and the session."""
    sink = Sink()
    async with virtual_bluez([strap]), scanned_session(
        "180d", "hr", strap.address, sink, backoff=Backoff(), **kw
    ) as session:
        await asyncio.sleep(seconds)
    return sink, session


def test_scan_filters_by_service(virtual_bluez: Callable[..., VirtualBlueZ]) -> None:
    async def main() -> None:
        strap = HeartRateStrap("C0:00:00:00:00:01", "Polar H10 1234")
        other = HeartRateStrap("C0:00:00:00:00:02", "Thing", service_uuids=["181a"])
        async with virtual_bluez([strap, other]):
            found = await ble.scan(0.5, ["180d"])
            assert [f.address for f in found] == ["C0:00:00:00:00:01"]
            assert found[0].name == "Polar H10 1234"
            assert "180d" in found[0].services
            everything = await ble.scan(0.5)
            assert {f.address for f in everything} == {"C0:00:00:00:00:01", "C0:00:00:00:00:02"}

    asyncio.run(main())


def test_notifications_reach_on_frame(virtual_bluez: Callable[..., VirtualBlueZ]) -> None:
    strap = HeartRateStrap("C0:00:00:00:00:03")
    sink, session = asyncio.run(streamed(virtual_bluez, strap, 1.0, slots=3))
    frames = sink.of(HRM)
    assert len(frames) >= 20
    first = HeartRateMeasurement.from_bytes(frames[0])
    assert first.rr_intervals == (1000, 990)
    assert sink.of("2a38") == [b"\x01"]  # body sensor location, read once per connect
    assert session.state == "stopped"
    assert strap.sent - len(frames) <= 2  # only the ones in flight at stop may be missing


def test_corrupt_frame_is_handed_on_and_session_goes_on(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    strap = HeartRateStrap("C0:00:00:00:00:04")
    strap.corrupt_every = 5
    sink, session = asyncio.run(streamed(virtual_bluez, strap, 0.8))
    frames = sink.of(HRM)
    bad = [f for f in frames if len(f) == 1]
    assert bad and len(frames) > len(bad) * 3  # corrupt ones delivered, stream continued
    assert session.stats.connects == 1


def test_device_forgotten_by_bluez_is_found_again_by_scanning(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main() -> None:
        strap = HeartRateStrap("C0:00:00:00:00:05")
        sink = Sink()
        async with virtual_bluez([strap], temporary_timeout=0.3) as bluez:
            await ble.scan(0.3, ["180d"])
            await until(lambda: not bluez.device(strap.address).exported)
            # BlueZ no longer knows it (TemporaryTimeout): the transport scans for it.
            session = ble_session("hr", strap.address, sink, transport={"find_timeout": 3},
                                  backoff=Backoff())
            async with running(session):
                await until(lambda: len(sink.of(HRM)) >= 3)
        assert session.stats.failures == 0

    asyncio.run(main())


def test_passive_scan_through_an_advertisement_monitor(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main(monitors: bool) -> tuple[list[str], int]:
        straps = [HeartRateStrap("C0:00:00:00:00:06"),
                  HeartRateStrap("C0:00:00:00:00:07", service_uuids=["1808"])]
        async with virtual_bluez(straps, monitors=monitors) as bluez:
            found = await ble.scan(0.5, ["180d"])
            return [f.address for f in found], bluez.adapter.starts

    # With monitors: passive, no StartDiscovery at all; the pattern matched the UUID list.
    assert asyncio.run(main(monitors=True)) == (["C0:00:00:00:00:06"], 0)
    # A BlueZ without them: the same scan falls back to active scanning.
    assert asyncio.run(main(monitors=False)) == (["C0:00:00:00:00:06"], 1)
