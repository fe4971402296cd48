"""The adapter side of the virtual BlueZ: ``org.bluez.Adapter1`` and ``AgentManager1``.

Both key their state by D-Bus sender, as bluetoothd does: each client has its own discovery
session and filter (bleak's scanner and bleak-retry-connector use different connections), and
a passkey request goes to the agent of the client that registered it as default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, dbus_method

from .dbus_types import Bool, ObjPath, Options, Str, Strs, Void, read_only_properties
from .peripheral import Peripheral, uuid128

if TYPE_CHECKING:
    from .bluez import VirtualBlueZ


@read_only_properties(
    Address=(Str, lambda a: a.host.adapter_address),
    AddressType=(Str, lambda _: "public"),
    Name=(Str, lambda _: "hardware-sim"),
    Alias=(Str, lambda _: "hardware-sim"),
    Powered=(Bool, lambda _: True),
    Discoverable=(Bool, lambda _: False),
    Pairable=(Bool, lambda _: True),
    Discovering=(Bool, lambda a: bool(a.sessions)),
    Roles=(Strs, lambda _: ["central", "peripheral"]),
    UUIDs=(Strs, lambda _: []),
)
class Adapter(ServiceInterface):
    """``org.bluez.Adapter1``: discovery sessions are per D-Bus client, as in bluetoothd."""

    def __init__(self, host: VirtualBlueZ) -> None:
        super().__init__("org.bluez.Adapter1")
        self.host = host
        self.filters: dict[str, list[str]] = {}  # sender -> UUID filter ([] = all)
        self.sessions: set[str] = set()
        self.starts = 0  # StartDiscovery calls (active scans)

    @dbus_method()
    def SetDiscoveryFilter(self, properties: Options) -> Void:
        sender = self.host.current_sender
        uuids = properties.get("UUIDs")
        self.filters[sender] = [uuid128(u) for u in uuids.value] if uuids is not None else []

    @dbus_method()
    def StartDiscovery(self) -> Void:
        sender = self.host.current_sender
        if sender in self.sessions:
            raise DBusError("org.bluez.Error.InProgress", "Operation already in progress")
        was = bool(self.sessions)
        self.sessions.add(sender)
        self.starts += 1
        if not was:
            self.emit_properties_changed({"Discovering": True})
        self.host.discovery_changed()

    @dbus_method()
    def StopDiscovery(self) -> Void:
        sender = self.host.current_sender
        if sender not in self.sessions:
            raise DBusError("org.bluez.Error.Failed", "No discovery started")
        self.sessions.discard(sender)
        if not self.sessions:
            self.emit_properties_changed({"Discovering": False})
            self.host.discovery_changed()

    @dbus_method()
    def RemoveDevice(self, device: ObjPath) -> Void:
        self.host.remove_device_object(device)

    @dbus_method()
    def GetDiscoveryFilters(self) -> Strs:
        return ["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable"]

    def wanted(self, peripheral: Peripheral) -> bool:
        for sender in self.sessions:
            uuids = self.filters.get(sender, [])
            if not uuids or set(uuids) & set(peripheral.service_uuids or []):
                return True
        return False


class AgentManager(ServiceInterface):
    """``org.bluez.AgentManager1``: remembers which client's agent answers passkey requests."""

    def __init__(self, host: VirtualBlueZ) -> None:
        super().__init__("org.bluez.AgentManager1")
        self.host = host
        self.agents: dict[str, tuple[str, str]] = {}  # sender -> (path, capability)
        self.default: str | None = None

    @dbus_method()
    def RegisterAgent(self, agent: ObjPath, capability: Str) -> Void:
        sender = self.host.current_sender
        if sender in self.agents:
            raise DBusError("org.bluez.Error.AlreadyExists", "Already Exists")
        self.agents[sender] = (agent, capability)

    @dbus_method()
    def UnregisterAgent(self, agent: ObjPath) -> Void:
        sender = self.host.current_sender
        if self.agents.pop(sender, None) is None:
            raise DBusError("org.bluez.Error.DoesNotExist", "Does Not Exist")
        if self.default == sender:
            self.default = None

    @dbus_method()
    def RequestDefaultAgent(self, agent: ObjPath) -> Void:
        sender = self.host.current_sender
        if sender not in self.agents:
            raise DBusError("org.bluez.Error.DoesNotExist", "Does Not Exist")
        self.default = sender
