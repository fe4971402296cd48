"""GATT objects of the virtual BlueZ: GattService1, GattCharacteristic1, GattDescriptor1.

They are exported under a connected device's path while the link is up, named as BlueZ names
them (``.../dev_XX/service000a/char000b/desc000d``): bleak takes the handle from the last four
hex digits and the device from the prefix, so the names are part of the interface.

Method handlers here are synchronous on purpose: dbus-fast sends the reply of a synchronous
handler before anything queued after it, so a write's ATT response always precedes the
notifications a peripheral sends in answer (as on air), without any sleeps.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from dbus_fast import Message, Variant
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, dbus_method

from .dbus_types import (
    U16,
    Bool,
    Bytes,
    ObjPath,
    ObjPaths,
    Options,
    Str,
    Strs,
    Void,
    read_only_properties,
)
from .peripheral import CCCD_UUID, AttError, Characteristic, Descriptor, Flag

if TYPE_CHECKING:
    from .bluez import Connection

GATT_CHARACTERISTIC = "org.bluez.GattCharacteristic1"
PROPERTIES = "org.freedesktop.DBus.Properties"


def att_to_dbus(err: AttError) -> DBusError:
    """The D-Bus error BlueZ's gatt-client sends for an ATT error (create_gatt_dbus_error)."""
    code = err.code
    if code == AttError.READ_NOT_PERMITTED:
        return DBusError("org.bluez.Error.NotPermitted", "Read not permitted")
    if code == AttError.WRITE_NOT_PERMITTED:
        return DBusError("org.bluez.Error.NotPermitted", "Write not permitted")
    if code in (AttError.INSUFFICIENT_AUTHENTICATION, AttError.INSUFFICIENT_ENCRYPTION):
        return DBusError("org.bluez.Error.NotPermitted", "Not paired")
    if code == AttError.REQUEST_NOT_SUPPORTED:
        return DBusError("org.bluez.Error.NotSupported", "Operation is not supported")
    if code == AttError.INVALID_OFFSET:
        return DBusError("org.bluez.Error.InvalidArguments", "Invalid offset")
    if code == AttError.INVALID_ATTRIBUTE_VALUE_LENGTH:
        return DBusError("org.bluez.Error.InvalidArguments", "Invalid Length")
    return DBusError("org.bluez.Error.Failed", f"Operation failed with ATT error: {code:#04x}")


def not_connected() -> DBusError:
    return DBusError("org.bluez.Error.Failed", "Not connected")


@read_only_properties(
    UUID=(Str, lambda s: s.uuid),
    Device=(ObjPath, lambda s: s.device_path),
    Primary=(Bool, lambda s: s.primary),
    Includes=(ObjPaths, lambda _: []),
    Handle=(U16, lambda s: s.handle),
)
class GattService(ServiceInterface):
    def __init__(self, uuid: str, device_path: str, primary: bool, handle: int) -> None:
        super().__init__("org.bluez.GattService1")
        self.uuid, self.device_path, self.primary, self.handle = uuid, device_path, primary, handle


@read_only_properties(
    UUID=(Str, lambda c: c.char.uuid),
    Service=(ObjPath, lambda c: c.service_path),
    Value=(Bytes, lambda c: c.value),
    Notifying=(Bool, lambda c: c.notifying),
    Flags=(Strs, lambda c: sorted(str(f) for f in c.char.flags)),
    MTU=(U16, lambda c: c.conn.mtu),
    Handle=(U16, lambda c: c.handle),
)
class GattCharacteristic(ServiceInterface):
    def __init__(
        self, conn: Connection, char: Characteristic, path: str, service_path: str, handle: int
    ) -> None:
        super().__init__(GATT_CHARACTERISTIC)
        self.conn = conn
        self.char = char
        self.path = path
        self.service_path = service_path
        self.handle = handle
        self.value = b""
        # BlueZ keeps one notify session per D-Bus client; the CCCD stays on while any is left.
        self.notify_clients: set[str] = set()

    # -- what the peripheral's Link uses -------------------------------------------------------

    def push(self, value: bytes) -> None:
        """A notification or indication: BlueZ turns it into PropertiesChanged on Value.

        The signal is built by hand (not ``emit_properties_changed``): dbus-fast looks the path
        up by scanning every export, which costs more than the rest of a notification.  It is a
        broadcast (no destination) because bleak listens on one connection and calls on another.
        """
        self.value = bytes(value)
        self.conn.send(
            Message.new_signal(
                path=self.path,
                interface=PROPERTIES,
                member="PropertiesChanged",
                signature="sa{sv}as",
                body=[GATT_CHARACTERISTIC, {"Value": Variant("ay", self.value)}, []],
            )
        )

    # -- org.bluez.GattCharacteristic1 -----------------------------------------------------------

    def _check_access(self, plain: Flag, secured: Flag, denied: str) -> None:
        if not self.conn.connected:
            raise not_connected()
        flags = self.char.flags
        if plain not in flags and secured not in flags:
            raise DBusError("org.bluez.Error.NotPermitted", denied)
        if secured in flags and not self.conn.encrypted:
            raise DBusError("org.bluez.Error.NotPermitted", "Not paired")

    @dbus_method()
    def ReadValue(self, options: Options) -> Bytes:
        self._check_access(Flag.READ, Flag.ENCRYPT_READ, "Read not permitted")
        if self.char.on_read is None:
            raise att_to_dbus(AttError(AttError.READ_NOT_PERMITTED))
        try:
            value = bytes(self.char.on_read())
        except AttError as err:
            raise att_to_dbus(err) from err
        offset = int(options["offset"].value) if "offset" in options else 0
        if offset > len(value):
            raise att_to_dbus(AttError(AttError.INVALID_OFFSET))
        # BlueZ quirk: a read updates the cached Value and emits PropertiesChanged, so a client
        # that also has notifications on sees the read result as a notification too (bleak's
        # start_notify docstring warns about it).  Kept, so the gateway is tested against it.
        self.push(value)
        return value[offset:]

    @dbus_method()
    def WriteValue(self, value: Bytes, options: Options) -> Void:
        kind = str(options["type"].value) if "type" in options else ""
        if kind == "command":
            self._check_access(Flag.WRITE_WITHOUT_RESPONSE, Flag.ENCRYPT_WRITE,
                               "Write not permitted")
        else:
            self._check_access(Flag.WRITE, Flag.ENCRYPT_WRITE, "Write not permitted")
        if self.char.on_write is None:
            raise att_to_dbus(AttError(AttError.WRITE_NOT_PERMITTED))
        try:
            follow_up = self.char.on_write(bytes(value))
        except AttError as err:
            raise att_to_dbus(err) from err
        if follow_up is not None and inspect.isawaitable(follow_up):
            self.conn.spawn(follow_up, f"write-{self.char.uuid[4:8]}")

    @dbus_method()
    def StartNotify(self) -> Void:
        if not self.conn.connected:
            raise not_connected()
        if not self.char.flags & {Flag.NOTIFY, Flag.INDICATE}:
            raise DBusError("org.bluez.Error.NotSupported", "Operation is not supported")
        if self.char.secured and not self.conn.encrypted:
            # The CCCD of a secured characteristic needs an encrypted link too.
            raise DBusError("org.bluez.Error.NotPermitted", "Not paired")
        was = self.notifying
        self.notify_clients.add(self.conn.host.current_sender)
        if not was:
            self.emit_properties_changed({"Notifying": True})
            self.conn.peripheral.on_subscribe(self.char.uuid)

    @dbus_method()
    def StopNotify(self) -> Void:
        if self.conn.host.current_sender not in self.notify_clients:
            raise DBusError("org.bluez.Error.Failed", "No notify session started")
        self.client_gone(self.conn.host.current_sender)

    @property
    def notifying(self) -> bool:
        return bool(self.notify_clients)

    def client_gone(self, sender: str) -> None:
        """A client stopped notifications or left the bus: end its notify session."""
        if sender not in self.notify_clients:
            return
        self.notify_clients.discard(sender)
        if not self.notify_clients:
            self.emit_properties_changed({"Notifying": False})
            self.conn.peripheral.on_unsubscribe(self.char.uuid)

    @dbus_method()
    def AcquireNotify(self, options: Options) -> Void:
        # bleak uses StartNotify unless told otherwise; without NotifyAcquired it never asks.
        raise DBusError("org.bluez.Error.NotSupported", "Operation is not supported")


@read_only_properties(
    UUID=(Str, lambda d: d.desc.uuid),
    Characteristic=(ObjPath, lambda d: d.char_path),
    Value=(Bytes, lambda d: d.current()),
    Flags=(Strs, lambda _: ["read"]),
    Handle=(U16, lambda d: d.handle),
)
class GattDescriptor(ServiceInterface):
    def __init__(
        self, owner: GattCharacteristic, desc: Descriptor, char_path: str, handle: int
    ) -> None:
        super().__init__("org.bluez.GattDescriptor1")
        self.owner, self.desc, self.char_path, self.handle = owner, desc, char_path, handle

    def current(self) -> bytes:
        if self.desc.uuid == CCCD_UUID:
            if not self.owner.notifying:
                return b"\x00\x00"
            return b"\x01\x00" if Flag.NOTIFY in self.owner.char.flags else b"\x02\x00"
        return self.desc.value

    @dbus_method()
    def ReadValue(self, options: Options) -> Bytes:
        if not self.owner.conn.connected:
            raise not_connected()
        return self.current()

    @dbus_method()
    def WriteValue(self, value: Bytes, options: Options) -> Void:
        # BlueZ refuses direct CCCD writes: clients must use StartNotify/StopNotify.
        raise DBusError("org.bluez.Error.NotPermitted", "Write not permitted")


