"""A gateway killed with links up: BlueZ keeps the link (bluez/bluez#89) but ends the dead
client's notify sessions; the restarted gateway finds the device connected and carries on."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable

from ble_sim import HRM, HeartRateStrap, Sink, ble_session, running, until
from hardware_sim.bluez import VirtualBlueZ

from edge_gateway.backoff import Backoff

ADDR = "C3:00:00:00:00:01"
GATEWAY = """
import asyncio, sys
from edge_gateway.drivers import ble

async def main():
    t = ble.BleTransport(sys.argv[1])
    await t.connect()
    await t.start_notify("2a37", lambda b: None)
    print("SUBSCRIBED", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_restart_after_a_crash_with_the_link_up(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main() -> None:
        strap = HeartRateStrap(ADDR)
        sink = Sink()
        async with virtual_bluez([strap]) as bluez:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", GATEWAY, ADDR, stdout=asyncio.subprocess.PIPE)
            assert proc.stdout is not None
            async with asyncio.timeout(20):
                assert (await proc.stdout.readline()).startswith(b"SUBSCRIBED")
            dev = bluez.device(ADDR)
            assert dev.conn is not None and dev.conn.is_subscribed(HRM)
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
            # The dead client's notify session ends; the link does not.
            await until(lambda: dev.conn is not None and not dev.conn.is_subscribed(HRM))
            assert dev.connected and dev.connect_attempts == 1

            session = ble_session("hr", ADDR, sink, backoff=Backoff())
            async with running(session):
                await until(lambda: len(sink.of(HRM)) >= 5)
            # bleak saw the device connected and did not call Connect again.
            assert dev.connect_attempts == 1
            assert not dev.connected  # our clean stop did disconnect it

    asyncio.run(main())
