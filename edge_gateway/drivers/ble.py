"""Bluetooth LE through bleak (BlueZ backend): scanning, pairing, and the :class:`Transport`.

This is the only module of the gateway that imports bleak.  Connections go through
bleak-retry-connector's ``establish_connection``, which knows BlueZ's failure modes (a
connection that BlueZ thinks is still up, a stale service cache, "le-connection-abort-by-local"
after RF interference) and retries the ones worth retrying; the session above it adds the
long-term full-jitter backoff.

BlueZ notes that shaped this module:

* bleak finds a device to connect only if BlueZ knows it: after a scan, or because it is bonded.
  ``get_device`` (retry-connector) asks BlueZ's object tree first and only scans when that fails.
* With ``StartNotify`` a *read* of a characteristic that has notifications on comes back as a
  notification too; sessions never read a characteristic they subscribed to.
* ``BleakClient.mtu_size`` warns (a ``UserWarning``) unless the MTU was acquired; never touch it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bleak import BleakClient, BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern, OrPatternLike
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakError, BleakGATTProtocolError
from bleak_retry_connector import BleakClientWithServiceCache, establish_connection, get_device
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from edge_gateway.drivers.profiles.base import full_uuid, short_uuid
from edge_gateway.drivers.transport import GattError, NotifyCallback
from edge_gateway.errors import DeviceError

log = logging.getLogger(__name__)

PasskeyCallback = Callable[[str], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Found:
    """One device seen by a scan (the last advertisement wins)."""

    address: str
    name: str | None
    rssi: int
    service_uuids: tuple[str, ...]
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_data: dict[str, bytes] = field(default_factory=dict)

    @property
    def services(self) -> tuple[str, ...]:
        """Service UUIDs in the short form (``"180d"``) where they are SIG UUIDs."""
        return tuple(short_uuid(u) for u in self.service_uuids)


async def scan(
    duration: float = 5.0, service_uuids: Sequence[str] = (), *, adapter: str = "hci0",
    passive: bool = True,
) -> list[Found]:
    """Scan for ``duration`` seconds; only devices advertising one of ``service_uuids`` if given.

    With service UUIDs and ``passive``, scan passively (no scan requests: less radio time, and
    devices are not woken for a scan response) through a BlueZ advertisement monitor matching
    the UUIDs in the advertising data; BlueZ without monitor support (older than 5.56, or
    without --experimental) falls back to active scanning.  Passive results may lack names
    that a device only puts in its scan response.
    """
    uuids = [full_uuid(u) for u in service_uuids]
    seen: dict[str, tuple[BLEDevice, AdvertisementData]] | None = None
    try:
        if uuids and passive:
            args: BlueZScannerArgs = {"adapter": adapter, "or_patterns": _patterns(uuids)}
            try:
                seen = await BleakScanner.discover(
                    timeout=duration, return_adv=True, scanning_mode="passive", bluez=args)
            except BleakError as err:
                if "passive" not in str(err):
                    raise
                log.info("passive scanning unavailable (%s); scanning actively", err)
        if seen is None and uuids:
            seen = await BleakScanner.discover(
                timeout=duration, return_adv=True, service_uuids=uuids, bluez={"adapter": adapter}
            )
        elif seen is None:
            seen = await BleakScanner.discover(
                timeout=duration, return_adv=True, bluez={"adapter": adapter}
            )
    except (BleakError, OSError) as err:
        raise DeviceError(adapter, f"scan failed: {err}", retryable=True,
                          hint="is bluetoothd running and the adapter powered?") from err
    wanted = set(uuids)
    found = [_found(dev, adv) for dev, adv in seen.values()
             if not wanted or wanted & {u.lower() for u in adv.service_uuids}]
    return sorted(found, key=lambda f: (-f.rssi, f.address))


async def find(address: str, within: float = 10.0, *, adapter: str = "hci0") -> Found | None:
    """Scan until ``address`` advertises (at most ``within`` seconds); None if it does not."""
    address = address.upper()
    seen: asyncio.Future[Found] = asyncio.get_running_loop().create_future()

    def on_advertisement(dev: BLEDevice, adv: AdvertisementData) -> None:
        if dev.address.upper() == address and not seen.done():
            seen.set_result(_found(dev, adv))

    try:
        async with BleakScanner(on_advertisement, bluez={"adapter": adapter}):
            async with asyncio.timeout(within):
                return await seen
    except TimeoutError:
        return None
    except (BleakError, OSError) as err:
        raise DeviceError(adapter, f"scan failed: {err}", retryable=True,
                          hint="is bluetoothd running and the adapter powered?") from err


def _patterns(uuids: Sequence[str]) -> list[OrPatternLike]:
    """Advertising-data patterns matching any of ``uuids`` in a (complete or incomplete)
    service UUID list; 16-bit SIG UUIDs as their two little-endian bytes."""
    out: list[OrPatternLike] = []
    for u in uuids:
        short = short_uuid(u)
        if len(short) == 4:
            data = int(short, 16).to_bytes(2, "little")
            kinds = (AdvertisementDataType.COMPLETE_LIST_SERVICE_UUID16,
                     AdvertisementDataType.INCOMPLETE_LIST_SERVICE_UUID16)
        else:
            data = uuid.UUID(u).bytes[::-1]
            kinds = (AdvertisementDataType.COMPLETE_LIST_SERVICE_UUID128,
                     AdvertisementDataType.INCOMPLETE_LIST_SERVICE_UUID128)
        out += [OrPattern(0, kind, data) for kind in kinds]
    return out


def _found(dev: BLEDevice, adv: AdvertisementData) -> Found:
    return Found(
        address=dev.address.upper(),
        name=adv.local_name or dev.name,
        rssi=adv.rssi,
        service_uuids=tuple(adv.service_uuids),
        manufacturer_data=dict(adv.manufacturer_data),
        service_data=dict(adv.service_data),
    )


async def _locate(address: str, adapter: str, scan_for: float) -> BLEDevice:
    device = await get_device(address)
    if device is None:
        device = await BleakScanner.find_device_by_address(
            address, timeout=scan_for, bluez={"adapter": adapter}
        )
    if device is None:
        raise DeviceError(address, "not found (out of range, asleep, or battery flat)")
    return device


def _gatt_error(address: str, uuid: str, err: Exception) -> DeviceError:
    if isinstance(err, BleakGATTProtocolError):
        return GattError(address, short_uuid(uuid), int(err.code), str(err))
    if isinstance(err, BleakDBusError):
        text = err.dbus_error_details or err.dbus_error
        return GattError(address, short_uuid(uuid), None, text)
    return DeviceError(address, f"{short_uuid(uuid)}: {err}")


class BleTransport:
    """:class:`~edge_gateway.drivers.transport.Transport` over bleak."""

    def __init__(
        self,
        address: str,
        *,
        adapter: str = "hci0",
        name: str | None = None,
        find_timeout: float = 10.0,
        max_attempts: int = 2,
    ) -> None:
        self._address = address.upper()
        self._adapter = adapter
        self._name = name or self._address
        self._find_timeout = find_timeout
        self._max_attempts = max_attempts
        self._client: BleakClient | None = None
        self._on_disconnect: Callable[[], None] | None = None

    @property
    def address(self) -> str:
        return self._address

    @property
    def is_connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    def set_disconnected_callback(self, callback: Callable[[], None] | None) -> None:
        self._on_disconnect = callback

    def _disconnected(self, client: BleakClient) -> None:
        if client is self._client and self._on_disconnect is not None:
            self._on_disconnect()

    async def connect(self) -> None:
        if self.is_connected:
            return
        try:
            device = await _locate(self._address, self._adapter, self._find_timeout)
            self._client = await establish_connection(
                BleakClientWithServiceCache, device, self._name,
                disconnected_callback=self._disconnected, max_attempts=self._max_attempts,
            )
        except DeviceError:
            raise
        except (BleakError, TimeoutError, EOFError, OSError) as err:
            # OSError: no D-Bus system bus or no bluetoothd (socket missing, refused).
            raise DeviceError(self._address, f"connect failed: {err}", retryable=True) from err

    async def disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await client.disconnect()
        except (BleakError, TimeoutError, EOFError, BrokenPipeError) as err:
            log.debug("%s: disconnect: %s", self._address, err)

    def _char(self, uuid: str) -> BleakGATTCharacteristic:
        client = self._client
        if client is None or not client.is_connected:
            raise DeviceError(self._address, "not connected")
        ch = client.services.get_characteristic(full_uuid(uuid))
        if ch is None:
            raise DeviceError(self._address, f"no characteristic {short_uuid(uuid)}",
                              retryable=False)
        return ch

    def has(self, uuid: str) -> bool:
        client = self._client
        if client is None or not client.is_connected:
            return False
        full = full_uuid(uuid)
        services = client.services
        return services.get_characteristic(full) is not None or services.get_service(full) \
            is not None

    async def read(self, uuid: str) -> bytes:
        ch = self._char(uuid)
        assert self._client is not None
        try:
            return bytes(await self._client.read_gatt_char(ch))
        except (BleakError, EOFError, BrokenPipeError) as err:
            raise _gatt_error(self._address, uuid, err) from err

    async def write(self, uuid: str, data: bytes, *, response: bool = True) -> None:
        ch = self._char(uuid)
        assert self._client is not None
        try:
            await self._client.write_gatt_char(ch, data, response=response)
        except (BleakError, EOFError, BrokenPipeError) as err:
            raise _gatt_error(self._address, uuid, err) from err

    async def start_notify(self, uuid: str, callback: NotifyCallback) -> None:
        ch = self._char(uuid)
        assert self._client is not None

        def deliver(_ch: BleakGATTCharacteristic, data: bytearray) -> None:
            callback(bytes(data))

        try:
            await self._client.start_notify(ch, deliver)
        except (BleakError, EOFError, BrokenPipeError) as err:
            raise _gatt_error(self._address, uuid, err) from err

    async def stop_notify(self, uuid: str) -> None:
        ch = self._char(uuid)
        assert self._client is not None
        try:
            await self._client.stop_notify(ch)
        except (BleakError, EOFError, BrokenPipeError) as err:
            raise _gatt_error(self._address, uuid, err) from err


async def pair(
    address: str,
    passkey: PasskeyCallback | None = None,
    *,
    adapter: str = "hci0",
    within: float = 30.0,
) -> None:
    """Pair (bond) with a device.  ``passkey(address)`` is asked for the six digits the device
    shows, through a BlueZ agent registered for the time of the pairing.

    Raises ``DeviceError`` (not retryable) when the passkey is wrong or pairing is refused.
    """
    from edge_gateway.drivers.ble_agent import PairingAgent

    address = address.upper()
    try:
        async with PairingAgent(passkey):
            await _pair(address, adapter, within)
    except OSError as err:
        raise DeviceError(address, f"pairing failed: {err}", retryable=True,
                          hint="is bluetoothd running?") from err


async def _pair(address: str, adapter: str, within: float) -> None:
    try:
        async with asyncio.timeout(within):
            device = await _locate(address, adapter, within)
            client = BleakClient(device)
            await client.connect()
            try:
                await client.pair()
            finally:
                await client.disconnect()
    except TimeoutError as err:
        raise DeviceError(address, "pairing timed out", retryable=True) from err
    except BleakDBusError as err:
        raise DeviceError(
            address, f"pairing failed: {err.dbus_error_details or err.dbus_error}",
            retryable=False,
            hint="check the passkey shown on the device and put it in pairing mode",
        ) from err
    except BleakError as err:
        raise DeviceError(address, f"pairing failed: {err}", retryable=True) from err


async def bluez_gone() -> str:
    """Wait until bluetoothd (``org.bluez``) leaves the system bus or is replaced.

    bleak keeps its view of BlueZ's objects for the life of the event loop and does not notice
    a restarted bluetoothd: it would go on "connecting" to devices it believes are still linked.
    The daemon treats this as fatal and lets systemd restart it with a fresh view.
    """
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        gone: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_message(msg: Message) -> None:
            if (msg.message_type == MessageType.SIGNAL and msg.member == "NameOwnerChanged"
                    and msg.body and msg.body[0] == "org.bluez" and msg.body[1]
                    and not gone.done()):
                gone.set_result("bluetoothd stopped" if not msg.body[2]
                                else "bluetoothd restarted")

        bus.add_message_handler(on_message)
        reply = await bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="AddMatch", signature="s",
            body=["type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',"
                  "arg0='org.bluez'"],
        ))
        if reply is None or reply.message_type == MessageType.ERROR:
            raise DeviceError("bluez", "cannot watch org.bluez on the system bus")
        return await gone
    finally:
        bus.disconnect()


async def forget(address: str, *, adapter: str = "hci0") -> bool:
    """Remove the bond and BlueZ's record of a device; False when BlueZ did not know it."""
    device = await get_device(address.upper())
    if device is None:
        return False
    client = BleakClient(device)
    try:
        await client.unpair()
    except BleakError as err:
        raise DeviceError(address, f"could not remove: {err}") from err
    return True
