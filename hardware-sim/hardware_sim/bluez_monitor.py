"""Passive scanning in the virtual BlueZ: ``org.bluez.AdvertisementMonitorManager1``.

bleak's passive mode registers an ``org.bluez.AdvertisementMonitor1`` object ("or_patterns")
with the adapter; bluetoothd then scans passively and reports devices whose advertising data
match one of the patterns.  bleak exports the monitor *after* RegisterMonitor returns (bluetoothd
discovers it through the client's objects later), so the monitor's properties are read a moment
after the reply, retrying until the object is there.  Reports then reach bleak the way active
scanning's do: Device1 objects and their RSSI changes.

Each peripheral's advertising data are rebuilt from its fields as AD structures (Core Supplement
Part A §1): flags, 16- and 128-bit service UUID lists, complete local name, manufacturer data,
16-bit service data; a pattern ``(start, AD type, content)`` matches an AD structure of that type
whose data at ``start`` begins with ``content``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid as uuidlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dbus_fast import Message, MessageType
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, dbus_method

from .dbus_types import ObjPath, Strs, Void, read_only_properties
from .peripheral import Peripheral, uuid16

if TYPE_CHECKING:
    from .bluez import VirtualBlueZ

log = logging.getLogger(__name__)

MONITOR = "org.bluez.AdvertisementMonitor1"
Pattern = tuple[int, int, bytes]  # (start position, AD type, content)


def ad_structures(p: Peripheral) -> list[tuple[int, bytes]]:
    """The peripheral's advertising data as (AD type, data) structures."""
    out: list[tuple[int, bytes]] = [(0x01, b"\x06")]  # LE General Discoverable, no BR/EDR
    uuids = p.service_uuids or []
    short = [u16 for u in uuids if (u16 := uuid16(u)) is not None]
    long = [u for u in uuids if uuid16(u) is None]
    if short:
        out.append((0x03, b"".join(v.to_bytes(2, "little") for v in short)))
    if long:
        out.append((0x07, b"".join(uuidlib.UUID(u).bytes[::-1] for u in long)))
    if p.name:
        out.append((0x09, p.name.encode()))
    for company, data in p.manufacturer_data.items():
        out.append((0xFF, company.to_bytes(2, "little") + data))
    for svc, data in p.service_data.items():
        if (u16 := uuid16(svc)) is not None:
            out.append((0x16, u16.to_bytes(2, "little") + data))
    return out


def matches(p: Peripheral, patterns: list[Pattern]) -> bool:
    ads = ad_structures(p)
    for start, ad_type, content in patterns:
        for t, data in ads:
            if t == ad_type and data[start:start + len(content)] == content:
                return True
    return False


@dataclass
class Monitor:
    sender: str
    path: str
    patterns: list[Pattern]
    active: bool = False


@read_only_properties(
    SupportedMonitorTypes=(Strs, lambda _: ["or_patterns"]),
    SupportedFeatures=(Strs, lambda _: []),
)
class MonitorManager(ServiceInterface):
    """``org.bluez.AdvertisementMonitorManager1`` on the adapter object."""

    def __init__(self, host: VirtualBlueZ) -> None:
        super().__init__("org.bluez.AdvertisementMonitorManager1")
        self.host = host
        self.monitors: dict[tuple[str, str], Monitor] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def wanted(self, p: Peripheral) -> bool:
        return any(m.active and matches(p, m.patterns) for m in self.monitors.values())

    @dbus_method()
    def RegisterMonitor(self, application: ObjPath) -> Void:
        key = (self.host.current_sender, application)
        if key in self.monitors:
            raise DBusError("org.bluez.Error.AlreadyExists", "Already Exists")
        monitor = Monitor(*key, patterns=[])
        self.monitors[key] = monitor
        task = asyncio.get_running_loop().create_task(self._activate(monitor),
                                                      name=f"monitor-{application}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @dbus_method()
    def UnregisterMonitor(self, application: ObjPath) -> Void:
        if self.monitors.pop((self.host.current_sender, application), None) is None:
            raise DBusError("org.bluez.Error.DoesNotExist", "Does Not Exist")
        self.host.discovery_changed()

    async def _activate(self, monitor: Monitor) -> None:
        for _ in range(50):
            await asyncio.sleep(0.01)
            if (monitor.sender, monitor.path) not in self.monitors:
                return
            reply = await self.host.bus.call(Message(
                destination=monitor.sender, path=monitor.path,
                interface="org.freedesktop.DBus.Properties", member="GetAll",
                signature="s", body=[MONITOR],
            ))
            if reply is None or reply.message_type == MessageType.ERROR:
                continue  # not exported yet
            props = reply.body[0]
            if props.get("Type") is None or props["Type"].value != "or_patterns":
                log.warning("monitor %s: unsupported type", monitor.path)
                return
            monitor.patterns = [(int(s), int(t), bytes(c)) for s, t, c in props["Patterns"].value]
            monitor.active = True
            await self.host.bus.call(Message(
                destination=monitor.sender, path=monitor.path, interface=MONITOR,
                member="Activate"))
            self.host.discovery_changed()
            return
        log.warning("monitor %s of %s never appeared", monitor.path, monitor.sender)
