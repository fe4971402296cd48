"""A virtual BlueZ: ``org.bluez`` on a private D-Bus, hosting simulated peripherals.

bleak's real BlueZ backend (and bleak-retry-connector) run against it unchanged.  What they need,
and the BlueZ behaviour copied here because they lean on it:

* ``org.bluez`` owns the ObjectManager at ``/`` (dbus-fast answers GetManagedObjects and sends
  InterfacesAdded/Removed for every export); ``org.bluez.Adapter1`` at ``/org/bluez/hci0`` with
  ``Roles`` containing ``central`` and ``Powered`` true, else bleak reports no adapter;
  ``org.bluez.AgentManager1`` at ``/org/bluez`` for passkey pairing.
* A device object (``/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF``) appears only once discovery has seen
  it, and bleak's scanner only reports devices whose properties change *while it scans*: every
  advertising interval an RSSI change is sent for each advertising device; the first one a few ms
  after StartDiscovery returned, since bleak registers its callback before calling it but a
  signal sent before the reply would race it.  Connected devices stop advertising.
* Connect exports the GATT objects (InterfacesAdded) before ``ServicesResolved`` becomes true;
  bleak's ``get_services`` reads whatever is exported when it sees ServicesResolved.  Disconnect
  (or a link loss) sends ServicesResolved=False, removes the GATT objects, then Connected=False.
* Notifications and indications are PropertiesChanged signals on the characteristic's ``Value``,
  broadcast, because bleak watches on its manager's connection, not the client's.
* ATT errors map to ``org.bluez.Error.*`` as BlueZ's ``create_gatt_dbus_error`` does.
* ``Pair`` connects first when needed, asks the registered agent for a passkey when the device
  shows one (``org.bluez.Agent1.RequestPasskey``), and sets Paired/Bonded.  Until then
  characteristics flagged ``encrypt-*`` fail with ``NotPermitted: Not paired``.

Use it in-process (tests) or as a process: ``python -m hardware_sim.bluez`` (see ``main``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, TypeVar

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from .bluez_adapter import Adapter, AgentManager
from .bluez_gatt import GattCharacteristic, GattDescriptor, GattService
from .bluez_monitor import MonitorManager
from .dbus_types import (
    I16,
    Bool,
    MfrData,
    ObjPath,
    Str,
    Strs,
    SvcData,
    Void,
    read_only_properties,
)
from .peripheral import CCCD_UUID, Descriptor, Flag, Peripheral, uuid128

log = logging.getLogger(__name__)

ROOT = "/org/bluez"
DEVICE = "org.bluez.Device1"
K = TypeVar("K")


def device_path(adapter_path: str, address: str) -> str:
    return f"{adapter_path}/dev_{address.upper().replace(':', '_')}"


def _byte_variants(data: Mapping[K, bytes]) -> dict[K, Variant]:
    """Advertised manufacturer or service data as D-Bus ``a{qv}``/``a{sv}`` values."""
    return {k: Variant("ay", v) for k, v in data.items()}


class Connection:
    """One LE link to a peripheral: its GATT objects, its tasks, and the peripheral's Link."""

    def __init__(self, host: VirtualBlueZ, dev: DeviceObject) -> None:
        self.host = host
        self.dev = dev
        self.peripheral = dev.peripheral
        self.connected = True
        self.resolved = False
        self.mtu = 247
        self.chars: dict[str, GattCharacteristic] = {}
        self.paths: list[str] = []
        self.tasks: set[asyncio.Task[Any]] = set()

    @property
    def encrypted(self) -> bool:
        return self.dev.paired or not self.peripheral.requires_pairing

    def send(self, message: Message) -> None:
        if self.connected:
            self.host.bus.send(message)

    def spawn(self, work: Awaitable[Any], name: str) -> None:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: peripheral task %s failed", self.peripheral.name, name)

        task = asyncio.get_running_loop().create_task(
            guarded(), name=f"{self.peripheral.address}:{name}"
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- the Link given to the peripheral ------------------------------------------------------

    def notify(self, char_uuid: str, value: bytes) -> None:
        gatt = self.chars.get(uuid128(char_uuid))
        if gatt is None:
            raise KeyError(f"{self.peripheral.name} has no characteristic {char_uuid}")
        if self.connected and gatt.notifying:
            self.host.frames_sent += 1
            gatt.push(value)

    async def indicate(self, char_uuid: str, value: bytes) -> None:
        self.notify(char_uuid, value)
        # The confirmation comes back one connection event later; a slow device takes longer.
        await asyncio.sleep(self.peripheral.faults.indication_delay)

    def is_subscribed(self, char_uuid: str) -> bool:
        gatt = self.chars.get(uuid128(char_uuid))
        return gatt is not None and gatt.notifying and self.connected

    def drop(self) -> None:
        # At once: from the peripheral's side the link is gone the moment it drops it.
        if self.connected:
            self.dev.tear_down("link loss")

    # -- GATT database ---------------------------------------------------------------------------

    def export_gatt(self) -> None:
        """Export services, characteristics and descriptors with BlueZ-style handle paths."""
        handle = 0x0009
        bus = self.host.bus
        for svc in self.peripheral.services:
            handle += 1
            spath = f"{self.dev.path}/service{handle:04x}"
            bus.export(spath, GattService(svc.uuid, self.dev.path, svc.primary, handle))
            self.paths.append(spath)
            for ch in svc.characteristics:
                handle += 1  # the declaration; its value handle follows
                cpath = f"{spath}/char{handle:04x}"
                gatt = GattCharacteristic(self, ch, cpath, spath, handle)
                handle += 1
                bus.export(cpath, gatt)
                self.paths.append(cpath)
                self.chars[ch.uuid] = gatt
                descs = list(ch.descriptors)
                if ch.flags & {Flag.NOTIFY, Flag.INDICATE}:
                    descs.insert(0, Descriptor(CCCD_UUID))
                for desc in descs:
                    handle += 1
                    dpath = f"{cpath}/desc{handle:04x}"
                    bus.export(dpath, GattDescriptor(gatt, desc, cpath, handle))
                    self.paths.append(dpath)

    def unexport_gatt(self) -> None:
        # Children first, as BlueZ removes them.
        for path in reversed(self.paths):
            self.host.bus.unexport(path)
        self.paths.clear()


@read_only_properties(
    Address=(Str, lambda d: d.peripheral.address),
    AddressType=(Str, lambda _: "public"),
    Name=(Str, lambda d: d.peripheral.name),
    Alias=(Str, lambda d: d.peripheral.name),
    Adapter=(ObjPath, lambda d: d.host.adapter_path),
    Connected=(Bool, lambda d: d.connected),
    ServicesResolved=(Bool, lambda d: d.services_resolved),
    Paired=(Bool, lambda d: d.paired),
    Bonded=(Bool, lambda d: d.paired),
    Blocked=(Bool, lambda _: False),
    LegacyPairing=(Bool, lambda _: False),
    UUIDs=(Strs, lambda d: list(d.peripheral.service_uuids or [])),
    RSSI=(I16, lambda d: d.rssi),
    ManufacturerData=(MfrData, lambda d: _byte_variants(d.peripheral.manufacturer_data)),
    ServiceData=(SvcData, lambda d: _byte_variants(d.peripheral.service_data)),
)
class DeviceObject(ServiceInterface):
    """``org.bluez.Device1`` for one peripheral; ``Trusted``, its one writable property, is
    declared below with its setter."""

    def __init__(self, host: VirtualBlueZ, peripheral: Peripheral, paired: bool) -> None:
        super().__init__(DEVICE)
        self.host = host
        self.peripheral = peripheral
        self.path = device_path(host.adapter_path, peripheral.address)
        self.paired = paired
        self.trusted = paired
        self.rssi = peripheral.rssi
        self.conn: Connection | None = None
        self.exported = False
        self.connect_attempts = 0
        self.last_seen = 0.0
        self._connecting: asyncio.Lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self.conn is not None and self.conn.connected

    @property
    def connecting(self) -> bool:
        return self._connecting.locked()

    @property
    def services_resolved(self) -> bool:
        return self.conn is not None and self.conn.connected and self.conn.resolved

    # -- connection life cycle -----------------------------------------------------------------

    async def _connect(self) -> None:
        async with self._connecting:
            if self.connected:
                return
            self.connect_attempts += 1
            await asyncio.sleep(self.peripheral.faults.connect_delay)
            if not self.exported:
                raise DBusError("org.freedesktop.DBus.Error.UnknownObject", "Device removed")
            if not self.peripheral.accept_connection():
                # What BlueZ says when the remote ignores or rejects the link (ECONNABORTED).
                raise DBusError("org.bluez.Error.Failed", "Software caused connection abort")
            conn = Connection(self.host, self)
            self.conn = conn
            conn.export_gatt()
            self.emit_properties_changed({"Connected": True})
            self.host.note_connected()
            self.peripheral.on_connect(conn)
            conn.spawn(self._resolve_services(conn), "services-resolved")
            conn.spawn(self.peripheral.run(conn), "run")
            faults = self.peripheral.faults
            if faults.link_loss_after is not None:
                conn.spawn(self._link_loss(conn, faults.link_loss_after), "link-loss")
                if faults.link_loss_once:
                    faults.link_loss_after = None

    async def _resolve_services(self, conn: Connection) -> None:
        # BlueZ reports ServicesResolved after discovery, a moment after the Connect reply.
        await asyncio.sleep(0.005)
        if conn.connected:
            conn.resolved = True
            self.emit_properties_changed({"ServicesResolved": True})

    async def _link_loss(self, conn: Connection, after: float) -> None:
        await asyncio.sleep(after)
        if conn is self.conn and conn.connected:
            log.info("%s: simulated link loss", self.peripheral.name)
            conn.drop()

    def tear_down(self, reason: str) -> None:
        conn = self.conn
        if conn is None or not conn.connected:
            return
        log.debug("%s: disconnected (%s)", self.peripheral.name, reason)
        self.emit_properties_changed({"ServicesResolved": False})
        conn.connected = False
        for task in list(conn.tasks):
            task.cancel()
        conn.unexport_gatt()
        self.emit_properties_changed({"Connected": False})
        self.host.note_disconnected()
        self.conn = None
        self.peripheral.on_disconnect()

    # -- org.bluez.Device1 ---------------------------------------------------------------------

    @dbus_method()
    async def Connect(self) -> Void:
        await self._connect()

    @dbus_method()
    def Disconnect(self) -> Void:
        self.tear_down("local host")

    @dbus_method()
    async def Pair(self) -> Void:
        if self.paired:
            raise DBusError("org.bluez.Error.AlreadyExists", "Already Exists")
        await self._connect()
        if self.peripheral.passkey is not None:
            entered = await self.host.ask_passkey(self.path)
            if entered != self.peripheral.passkey:
                raise DBusError("org.bluez.Error.AuthenticationFailed", "Authentication Failed")
        self.paired = True
        self.emit_properties_changed({"Paired": True, "Bonded": True})

    @dbus_method()
    def CancelPairing(self) -> Void:
        pass

    @dbus_property()
    def Trusted(self) -> Bool:
        return self.trusted

    @Trusted.setter  # type: ignore[no-redef]
    def Trusted(self, value: Bool) -> None:
        self.trusted = value

    def advertise(self) -> None:
        """One advertisement seen: a new RSSI (BlueZ only signals changed properties)."""
        rssi = self.peripheral.rssi + random.randint(-3, 3)
        if rssi == self.rssi:
            rssi += 1
        self.rssi = rssi
        self.emit_properties_changed({"RSSI": rssi})


class VirtualBlueZ:
    """The virtual ``org.bluez`` service.  ``async with VirtualBlueZ(address) as bluez: ...``."""

    def __init__(
        self,
        bus_address: str,
        peripherals: Iterable[Peripheral] = (),
        *,
        adapter: str = "hci0",
        adapter_address: str = "00:1A:7D:DA:71:13",
        advertising_interval: float = 0.1,
        temporary_timeout: float | None = 30.0,
        bonded: bool = False,
        monitors: bool = True,
    ) -> None:
        self.bus_address = bus_address
        self.adapter_path = f"{ROOT}/{adapter}"
        self.adapter_address = adapter_address
        self.advertising_interval = advertising_interval
        self.temporary_timeout = temporary_timeout
        self.bonded = bonded  # the initial peripherals are already paired (a set-up gateway)
        self.monitors = monitors  # False: a BlueZ without advertisement monitors (no passive)
        self.devices: dict[str, DeviceObject] = {}
        self.current_sender = ""
        self.connected_now = 0
        self.max_connected = 0
        self.frames_sent = 0
        self._pending: list[Peripheral] = list(peripherals)
        self._bus: MessageBus | None = None
        self._adapter: Adapter | None = None
        self._agents: AgentManager | None = None
        self._advertiser: asyncio.Task[None] | None = None
        self._janitor: asyncio.Task[None] | None = None
        self._monitors: MonitorManager | None = None

    @property
    def bus(self) -> MessageBus:
        if self._bus is None:
            raise RuntimeError("VirtualBlueZ is not started")
        return self._bus

    async def start(self) -> None:
        bus = MessageBus(bus_address=self.bus_address, bus_type=BusType.SYSTEM)
        await bus.connect()
        self._bus = bus
        # dbus-fast calls handlers without telling them who called; BlueZ keys discovery
        # sessions and agents by sender, so note the sender of each method call first.
        bus.add_message_handler(self._note_sender)
        self._agents = AgentManager(self)
        self._adapter = Adapter(self)
        bus.export(ROOT, self._agents)
        bus.export(self.adapter_path, self._adapter)
        if self.monitors:
            self._monitors = MonitorManager(self)
            bus.export(self.adapter_path, self._monitors)
        for peripheral in self._pending:
            self.add(peripheral, paired=self.bonded)
        self._pending.clear()
        await bus.request_name("org.bluez")
        await bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="AddMatch", signature="s",
            body=["type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'"],
        ))
        if self.temporary_timeout is not None:
            self._janitor = asyncio.get_running_loop().create_task(
                self._forget_unseen(self.temporary_timeout), name="virtual-bluez-janitor"
            )

    async def stop(self) -> None:
        self.stop_advertising()
        if self._janitor is not None:
            self._janitor.cancel()
            self._janitor = None
        for dev in list(self.devices.values()):
            dev.tear_down("adapter stopped")
        if self._bus is not None:
            self._bus.disconnect()
            with contextlib.suppress(Exception):
                await self._bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
            self._bus = None

    async def __aenter__(self) -> VirtualBlueZ:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _note_sender(self, message: Message) -> bool | None:
        if message.message_type == MessageType.METHOD_CALL and message.sender:
            self.current_sender = message.sender
        elif (message.message_type == MessageType.SIGNAL
              and message.member == "NameOwnerChanged" and message.body
              and str(message.body[0]).startswith(":") and message.body[2] == ""):
            self._client_gone(str(message.body[0]))
        return None  # not handled: dispatch continues

    def _client_gone(self, sender: str) -> None:
        """A D-Bus client left (closed its connection, crashed).  Like bluetoothd: its notify
        sessions, discovery session, agent and monitors end, but its *connections stay up*
        (bluez/bluez#89), which a restarted collector finds already connected."""
        for dev in self.devices.values():
            if dev.conn is not None:
                for gatt in dev.conn.chars.values():
                    gatt.client_gone(sender)
        if self._adapter is not None:
            adapter = self._adapter
            if sender in adapter.sessions:
                adapter.sessions.discard(sender)
                if not adapter.sessions:
                    adapter.emit_properties_changed({"Discovering": False})
            adapter.filters.pop(sender, None)
        if self._agents is not None:
            self._agents.agents.pop(sender, None)
            if self._agents.default == sender:
                self._agents.default = None
        if self._monitors is not None:
            for key in [k for k in self._monitors.monitors if k[0] == sender]:
                del self._monitors.monitors[key]
        self.discovery_changed()

    # -- peripherals ---------------------------------------------------------------------------

    def add(self, peripheral: Peripheral, *, paired: bool = False) -> DeviceObject:
        """Host a peripheral.  ``paired``: already bonded, so BlueZ knows it without a scan."""
        if self._bus is None:
            raise RuntimeError("start() the VirtualBlueZ before adding peripherals")
        dev = DeviceObject(self, peripheral, paired)
        if dev.path in self.devices:
            raise ValueError(f"a peripheral with address {peripheral.address} is already hosted")
        self.devices[dev.path] = dev
        if paired:
            self._announce(dev)
        return dev

    @property
    def adapter(self) -> Adapter:
        if self._adapter is None:
            raise RuntimeError("VirtualBlueZ is not started")
        return self._adapter

    def device(self, address: str) -> DeviceObject:
        return self.devices[device_path(self.adapter_path, address)]

    def _announce(self, dev: DeviceObject) -> None:
        dev.last_seen = asyncio.get_running_loop().time()
        if not dev.exported:
            dev.exported = True
            self.bus.export(dev.path, dev)

    async def _forget_unseen(self, after: float) -> None:
        """BlueZ drops a discovered device it has not seen for TemporaryTimeout (30 s) unless it
        is paired or connected; a collector must then scan again before connecting."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, after / 3))
            for dev in list(self.devices.values()):
                if (dev.exported and not dev.paired and not dev.connected and not dev.connecting
                        and loop.time() - dev.last_seen > after):
                    dev.exported = False
                    self.bus.unexport(dev.path)

    def remove_device_object(self, path: str) -> None:
        dev = self.devices.get(path)
        if dev is None or not dev.exported:
            raise DBusError("org.bluez.Error.DoesNotExist", "Does Not Exist")
        dev.tear_down("device removed")
        dev.paired = False
        dev.trusted = False
        dev.exported = False
        self.bus.unexport(path)

    def note_connected(self) -> None:
        self.connected_now += 1
        self.max_connected = max(self.max_connected, self.connected_now)

    def note_disconnected(self) -> None:
        self.connected_now -= 1

    # -- discovery ----------------------------------------------------------------------------

    def discovery_changed(self) -> None:
        """A discovery session or an advertisement monitor came or went."""
        adapter, monitors = self._adapter, self._monitors
        scanning = bool(adapter and adapter.sessions) or bool(
            monitors and any(m.active for m in monitors.monitors.values()))
        if scanning:
            self.start_advertising()
        else:
            self.stop_advertising()

    def _wanted(self, p: Peripheral) -> bool:
        adapter, monitors = self._adapter, self._monitors
        return bool(adapter and adapter.wanted(p)) or bool(monitors and monitors.wanted(p))

    def start_advertising(self) -> None:
        if self._advertiser is None or self._advertiser.done():
            self._advertiser = asyncio.get_running_loop().create_task(
                self._advertise(), name="virtual-bluez-advertiser"
            )

    def stop_advertising(self) -> None:
        if self._advertiser is not None:
            self._advertiser.cancel()
            self._advertiser = None

    async def _advertise(self) -> None:
        # The first advertisement a few ms after StartDiscovery's reply (see module docstring).
        await asyncio.sleep(0.005)
        adapter = self._adapter
        assert adapter is not None
        while True:
            for dev in list(self.devices.values()):
                if dev.connected or not self._wanted(dev.peripheral):
                    continue
                if dev.exported:
                    dev.advertise()
                self._announce(dev)
            await asyncio.sleep(self.advertising_interval)

    # -- pairing ------------------------------------------------------------------------------

    async def ask_passkey(self, device: str) -> int:
        agents = self._agents
        assert agents is not None
        sender = agents.default or next(iter(agents.agents), None)
        if sender is None:
            raise DBusError("org.bluez.Error.AuthenticationFailed", "Authentication Failed")
        path, _capability = agents.agents[sender]
        reply = await self.bus.call(
            Message(
                destination=sender, path=path, interface="org.bluez.Agent1",
                member="RequestPasskey", signature="o", body=[device],
            )
        )
        if reply is None or reply.message_type == MessageType.ERROR:
            error = "" if reply is None else str(reply.error_name)
            if error.endswith("Canceled"):
                raise DBusError("org.bluez.Error.AuthenticationCanceled", "Authentication Canceled")
            raise DBusError("org.bluez.Error.AuthenticationRejected", "Authentication Rejected")
        return int(reply.body[0])
