"""Several devices: six at once, the connection limit, refusals, and shutdown with links up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ble_sim import GLM, HRM, GlucoseMeter, HeartRateStrap, Sink, ble_session, running, until
from hardware_sim.bluez import VirtualBlueZ
from hardware_sim.peripheral import Faults

from edge_gateway.backoff import Backoff
from edge_gateway.drivers import ble
from edge_gateway.drivers.session import DeviceSession


def test_six_devices_at_once_then_shutdown_with_sessions_open(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main() -> None:
        straps = [HeartRateStrap(f"E0:00:00:00:00:{i:02X}", f"strap {i}") for i in range(6)]
        sink = Sink()
        limiter = asyncio.Semaphore(7)
        async with virtual_bluez(straps) as bluez:
            await ble.scan(0.3, ["180d"])
            sessions = [
                DeviceSession(f"hr{i}", ble.BleTransport(s.address), sink, limiter)
                for i, s in enumerate(straps)
            ]
            try:
                async with asyncio.TaskGroup() as tg:
                    for s in sessions:
                        tg.create_task(s.run(), name=f"session-{s.device_id}")
                    await until(lambda: all(len(sink.of(HRM, f"hr{i}")) >= 10 for i in range(6)))
                    assert bluez.connected_now == 6
                    raise KeyboardInterrupt  # what the daemon's shutdown looks like here
            except* KeyboardInterrupt:
                pass
            # Cancellation disconnected every link before the TaskGroup returned.
            assert bluez.connected_now == 0
            assert all(s.state == "stopped" for s in sessions)

    asyncio.run(main())


def test_connection_limit_is_honoured_and_every_device_served(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main() -> None:
        # Meters power off shortly after a transfer, so a slot frees up again.
        meters = [
            GlucoseMeter(f"E1:00:00:00:00:{i:02X}", f"meter {i}", records=5,
                         faults=Faults(link_loss_after=0.3, link_loss_once=False))
            for i in range(5)
        ]
        sink = Sink()
        limiter = asyncio.Semaphore(2)
        async with virtual_bluez(meters) as bluez:
            await ble.scan(0.3, ["1808"])
            sessions = [
                DeviceSession(f"m{i}", ble.BleTransport(m.address), sink, limiter,
                              ledger=sink, backoff=Backoff(0.05, 0.3))
                for i, m in enumerate(meters)
            ]
            async with asyncio.TaskGroup() as tg:
                for s in sessions:
                    tg.create_task(s.run(), name=f"session-{s.device_id}")
                await until(lambda: all(len(sink.of(GLM, f"m{i}")) >= 5 for i in range(5)))
                for s in sessions:
                    s.stop()
            assert bluez.max_connected == 2
        for i in range(5):
            assert [m.key for m in sink.glucose[(f"m{i}", 0)]] == list(range(5))

    asyncio.run(main())


def test_refused_connections_are_retried_with_backoff(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main() -> None:
        strap = HeartRateStrap("E2:00:00:00:00:01", faults=Faults(refuse_connections=3))
        sink = Sink()
        states: list[str] = []
        async with virtual_bluez([strap]) as bluez:
            await ble.scan(0.3, ["180d"])
            session = ble_session("hr", strap.address, sink, transport={"max_attempts": 1},
                                  on_state=lambda _d, st: states.append(st))
            async with running(session):
                await until(lambda: len(sink.of(HRM)) >= 5)
            assert bluez.device(strap.address).connect_attempts == 4
        assert session.stats.failures == 3 and session.stats.connects == 1
        assert states.count("backoff") == 3 and states[-1] == "stopped"
        assert "connection abort" in (session.stats.last_error or "")

    asyncio.run(main())


def test_idle_record_devices_give_their_slot_back(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main() -> None:
        # Meters that never switch off, one slot: the gateway leaves each after its transfer.
        meters = [GlucoseMeter(f"E3:00:00:00:00:{i:02X}", f"meter {i}", records=3)
                  for i in range(3)]
        sink = Sink()
        limiter = asyncio.Semaphore(1)
        async with virtual_bluez(meters) as bluez:
            await ble.scan(0.3, ["1808"])
            sessions = [
                DeviceSession(f"m{i}", ble.BleTransport(m.address), sink, limiter, ledger=sink,
                              idle_disconnect_s=0.3, revisit_s=0.2)
                for i, m in enumerate(meters)
            ]
            async with asyncio.TaskGroup() as tg:
                for s in sessions:
                    tg.create_task(s.run(), name=f"session-{s.device_id}")
                await until(lambda: all(len(sink.of(GLM, f"m{i}")) >= 3 for i in range(3)))
                meters[0].take(140)  # stored while the gateway is away; fetched on revisit
                await until(lambda: len(sink.of(GLM, "m0")) >= 4)
                for s in sessions:
                    s.stop()
            assert bluez.max_connected == 1
        assert [m.key for m in sink.glucose[("m0", 0)]] == [0, 1, 2, 3]

    asyncio.run(main())
