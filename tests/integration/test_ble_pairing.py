"""Pairing with passkey entry through a BlueZ agent, and what a session does before it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from ble_sim import GLM, GlucoseMeter, Sink, ble_session, running, until
from hardware_sim.bluez import VirtualBlueZ

from edge_gateway.drivers import ble
from edge_gateway.errors import DeviceError

ADDR = "F0:00:00:00:00:01"



def test_pairing_with_passkey_unlocks_the_records(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main() -> None:
        meter = GlucoseMeter(ADDR, records=3, secure=True, requires_pairing=True,
                             passkey=123456)
        sink = Sink()
        asked: list[str] = []

        async def wrong(address: str) -> int:
            asked.append(address)
            return 654321

        async def right(address: str) -> int:
            asked.append(address)
            return 123456

        async with virtual_bluez([meter]) as bluez:
            await ble.scan(0.3, ["1808"])
            # Not paired yet: the session says so and waits at the backoff cap.
            states: list[str] = []
            session = ble_session("meter", ADDR, sink, ledger=sink,
                                  on_state=lambda _d, st: states.append(st))
            async with running(session):
                # The state follows the failure once the link is closed: wait for it, not
                # for the counter (stopping in between would skip the state).
                await until(lambda: "needs-pairing" in states)
            assert session.stats.failures >= 1
            assert "pair" in (session.stats.last_error or "").lower()
            assert sink.of(GLM) == []

            with pytest.raises(DeviceError) as err:
                await ble.pair(ADDR, wrong, within=10)
            assert not err.value.retryable and "Authentication Failed" in str(err.value)
            assert not bluez.device(ADDR).paired

            await ble.pair(ADDR, right, within=10)
            assert bluez.device(ADDR).paired and asked == [ADDR, ADDR]

            session = ble_session("meter", ADDR, sink, ledger=sink)
            async with running(session):
                await until(lambda: len(sink.of(GLM)) == 3)
            assert await ble.forget(ADDR)
            assert not bluez.device(ADDR).paired

    asyncio.run(main())
