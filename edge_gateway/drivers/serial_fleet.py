"""Serial device supervision for the daemon: one session per enabled serial device.

BLE devices are supervised by ``drivers.fleet.BleFleet``; this is its small counterpart for
serial home sensors (``devices add --serial PORT``): sessions start for every enabled serial
device in the store, stop when a caregiver removes or disables one, and restart when its port
or protocol changes — no daemon restart needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from edge_gateway.logfmt import log
from edge_gateway.store import devices as device_rows

if TYPE_CHECKING:
    from edge_gateway.drivers.serial import SerialSession
    from edge_gateway.runtime.daemon import Daemon

LOG = logging.getLogger("edge_gateway.devices")


class SerialFleet:
    def __init__(self, daemon: Daemon) -> None:
        assert daemon.store is not None and daemon.pipeline is not None
        self.d = daemon
        self.store = daemon.store
        self.tasks: dict[str, tuple[asyncio.Task[None], SerialSession, str]] = {}

    def wanted(self) -> dict[str, tuple[str, str]]:
        return device_rows.enabled_serial(self.store)

    def on_state(self, device_id: str, state: str) -> None:
        connected = state in ("connected", "streaming", "open")
        self.store.set_connected(device_id, connected, datetime.now(UTC))
        log(LOG, logging.INFO, "device.state", device=device_id, state=state)

    def reconcile(self) -> None:
        from edge_gateway.drivers.serial import SerialSession

        assert self.d.pipeline is not None
        wanted = self.wanted()
        for dev_id in list(self.tasks):
            task, session, fingerprint = self.tasks[dev_id]
            if dev_id not in wanted or "|".join(wanted[dev_id]) != fingerprint or task.done():
                task.cancel()
                del self.tasks[dev_id]
        for dev_id, (port, details) in wanted.items():
            if dev_id in self.tasks:
                continue
            try:
                opts = json.loads(details)
                session = SerialSession(dev_id, port, self.d.pipeline.on_frame,
                                        protocol=opts.get("protocol", "masimo-rad8"),
                                        on_state=self.on_state)
            except Exception as err:  # a bad device row must not stop the others
                log(LOG, logging.ERROR, "device.session_refused", device=dev_id,
                    reason=str(err))
                continue
            task = asyncio.get_running_loop().create_task(session.run(), name=f"serial:{dev_id}")
            self.tasks[dev_id] = (task, session, f"{port}|{details}")

    async def run(self) -> None:
        try:
            while True:
                self.reconcile()
                if await self.d.sleep(self.d.cfg.daemon.settings_poll_s):
                    break
        finally:
            for task, _, _ in self.tasks.values():
                task.cancel()
            for task, _, _ in self.tasks.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def serial_task(d: Daemon) -> None:
    await SerialFleet(d).run()
