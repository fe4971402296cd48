"""The interface between a simulated BLE peripheral and the host that serves it.

A :class:`Peripheral` is pure data plus a few hooks; it knows nothing about D-Bus.  The virtual
BlueZ (:mod:`hardware_sim.bluez`) turns it into ``org.bluez.Device1`` / ``GattService1`` /
``GattCharacteristic1`` objects on a private bus, so bleak's real BlueZ backend talks to it.  A
unit test can drive a peripheral directly with any object that satisfies :class:`Link` (see
:class:`RecordingLink`), without D-Bus.

Life cycle, as the host drives it::

    accept_connection()            -> False: Connect fails ("le-connection-abort-by-remote")
    on_connect(link)               sync, once the link is up (before services are resolved)
    run(link)                      a task for as long as the link is up; cancelled at disconnect
    on_subscribe / on_unsubscribe  the central wrote the CCCD (StartNotify / StopNotify)
    Characteristic.on_read()       a ReadValue; raise AttError to fail it
    Characteristic.on_write(data)  a WriteValue; raise AttError to fail it; return an awaitable to
                                   do follow-up work *after* the write response, as a real device
                                   does (e.g. stream RACP records, then indicate the RACP result)
    on_disconnect()                sync, after the link went down (either side, or a fault)

Everything runs on the host's event loop; hooks must not block.  Notifications and indications go
out through the injected :class:`Link`: ``link.notify(uuid, value)`` is fire-and-forget (dropped
when the central has not enabled the CCCD, as on air); ``await link.indicate(uuid, value)`` waits
for the confirmation, so a peripheral sending a backlog is naturally paced.

UUIDs: pass 16-bit SIG numbers (``0x180D``) or full strings; they are normalised to the full
128-bit lowercase form BlueZ uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"
CCCD_UUID = "00002902" + BASE_UUID_SUFFIX


def uuid128(uuid: int | str) -> str:
    """Full 128-bit lowercase UUID text for a 16-bit SIG number or any UUID string."""
    if isinstance(uuid, int):
        if not 0 <= uuid <= 0xFFFFFFFF:
            raise ValueError(f"UUID number {uuid:#x} is out of range")
        return f"{uuid:08x}{BASE_UUID_SUFFIX}"
    text = uuid.strip().lower()
    if len(text) in (4, 8):
        return f"{int(text, 16):08x}{BASE_UUID_SUFFIX}"
    if len(text) != 36:
        raise ValueError(f"{uuid!r} is not a UUID")
    return text


def uuid16(uuid: str) -> int | None:
    """The 16-bit SIG number of a full UUID, or None for a vendor UUID."""
    text = uuid.lower()
    if text.endswith(BASE_UUID_SUFFIX) and text.startswith("0000"):
        return int(text[4:8], 16)
    return None


class Flag(StrEnum):
    """Characteristic flags, spelled as BlueZ's ``GattCharacteristic1.Flags`` spells them."""

    READ = "read"
    WRITE = "write"
    WRITE_WITHOUT_RESPONSE = "write-without-response"
    NOTIFY = "notify"
    INDICATE = "indicate"
    # Access needs an encrypted (paired) link; BlueZ answers "Not paired" otherwise.
    ENCRYPT_READ = "encrypt-read"
    ENCRYPT_WRITE = "encrypt-write"


class AttError(Exception):
    """An ATT error response (Core spec Vol 3 Part F §3.4.1.1; profile codes 0x80-0x9F).

    The host maps it to the D-Bus error BlueZ would send (``NotPermitted``, ``NotSupported``,
    ``InvalidArguments`` or ``Failed: Operation failed with ATT error: 0x..``).
    """

    READ_NOT_PERMITTED = 0x02
    WRITE_NOT_PERMITTED = 0x03
    INSUFFICIENT_AUTHENTICATION = 0x05
    REQUEST_NOT_SUPPORTED = 0x06
    INVALID_OFFSET = 0x07
    INVALID_ATTRIBUTE_VALUE_LENGTH = 0x0D
    UNLIKELY_ERROR = 0x0E
    INSUFFICIENT_ENCRYPTION = 0x0F
    # Profile-defined (GLS / CGMS / BLS): a RACP procedure is already running.
    PROCEDURE_ALREADY_IN_PROGRESS = 0xFE
    CCCD_IMPROPERLY_CONFIGURED = 0xFD

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"ATT error {code:#04x}" + (f": {reason}" if reason else ""))


ReadHandler = Callable[[], bytes]
WriteHandler = Callable[[bytes], Awaitable[None] | None]


@dataclass
class Descriptor:
    """A static descriptor (the CCCD is added by the host for notify/indicate characteristics)."""

    uuid: str
    value: bytes = b""

    def __post_init__(self) -> None:
        self.uuid = uuid128(self.uuid)


@dataclass
class Characteristic:
    uuid: str
    flags: frozenset[Flag]
    on_read: ReadHandler | None = None
    on_write: WriteHandler | None = None
    descriptors: list[Descriptor] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.uuid = uuid128(self.uuid)
        self.flags = frozenset(Flag(f) for f in self.flags)

    @property
    def secured(self) -> bool:
        return bool(self.flags & {Flag.ENCRYPT_READ, Flag.ENCRYPT_WRITE})


@dataclass
class Service:
    uuid: str
    characteristics: list[Characteristic]
    primary: bool = True

    def __post_init__(self) -> None:
        self.uuid = uuid128(self.uuid)


def char(
    uuid: int | str,
    *flags: Flag | str,
    on_read: ReadHandler | None = None,
    on_write: WriteHandler | None = None,
    descriptors: Iterable[Descriptor] = (),
) -> Characteristic:
    """Shorthand: ``char(0x2A37, Flag.NOTIFY)``."""
    return Characteristic(
        uuid128(uuid), frozenset(Flag(f) for f in flags), on_read, on_write, list(descriptors)
    )


def fixed(uuid: int | str, value: bytes) -> Characteristic:
    """A read-only characteristic whose value never changes (a feature set, a sensor location,
    a device information string)."""
    return char(uuid, Flag.READ, on_read=lambda: value)


def service(uuid: int | str, *characteristics: Characteristic, primary: bool = True) -> Service:
    return Service(uuid128(uuid), list(characteristics), primary)


class Link(Protocol):
    """What the host gives a connected peripheral."""

    def notify(self, char_uuid: str, value: bytes) -> None:
        """Send a notification; dropped when the central has not subscribed."""

    async def indicate(self, char_uuid: str, value: bytes) -> None:
        """Send an indication and wait for its confirmation (dropped when not subscribed)."""

    def is_subscribed(self, char_uuid: str) -> bool:
        """True when the central has enabled notifications/indications (CCCD)."""

    def drop(self) -> None:
        """Lose the link now (out of range, battery pulled): the central sees a disconnect."""


@dataclass
class Faults:
    """Fault knobs the host applies; a scenario or test may change them at any time.

    ``refuse_connections``: refuse this many next Connect attempts (-1: refuse all).
    ``link_loss_after``: seconds after each connection the link drops (None: never);
    ``link_loss_once`` clears it after it fired once.
    ``indication_delay``: seconds before each indication is confirmed (a slow device).
    ``connect_delay``: seconds a Connect takes.
    """

    refuse_connections: int = 0
    link_loss_after: float | None = None
    link_loss_once: bool = True
    indication_delay: float = 0.0
    connect_delay: float = 0.0


@dataclass
class Peripheral:
    """A simulated BLE peripheral.  Subclass it and override the hooks you need.

    ``address`` is ``AA:BB:CC:DD:EE:FF`` (upper case).  ``service_uuids`` are the UUIDs in the
    advertisement (default: the primary services).  ``manufacturer_data`` maps company id to
    bytes; ``service_data`` maps UUID to bytes.  With ``requires_pairing``, characteristics
    flagged ``encrypt-*`` fail with "Not paired" until the central pairs; ``passkey`` (six
    digits) makes pairing ask the central's agent for it (None: Just Works).
    """

    address: str
    name: str
    services: list[Service] = field(default_factory=list)
    service_uuids: list[str] | None = None
    rssi: int = -60
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_data: dict[str, bytes] = field(default_factory=dict)
    requires_pairing: bool = False
    passkey: int | None = None
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        self.address = self.address.upper()
        if len(self.address.split(":")) != 6:
            raise ValueError(f"{self.address!r} is not a Bluetooth address")
        if self.service_uuids is None:
            self.service_uuids = [s.uuid for s in self.services if s.primary]
        else:
            self.service_uuids = [uuid128(u) for u in self.service_uuids]
        self.service_data = {uuid128(k): v for k, v in self.service_data.items()}

    # -- hooks ---------------------------------------------------------------------------------

    def accept_connection(self) -> bool:
        """False refuses the Connect.  Default: honour ``faults.refuse_connections``."""
        if self.faults.refuse_connections == 0:
            return True
        if self.faults.refuse_connections > 0:
            self.faults.refuse_connections -= 1
        return False

    def on_connect(self, link: Link) -> None:
        """The link is up."""

    async def run(self, link: Link) -> None:
        """Runs while connected (stream measurements here); cancelled at disconnect."""

    def on_subscribe(self, char_uuid: str) -> None:
        """The central enabled notifications/indications on ``char_uuid``."""

    def on_unsubscribe(self, char_uuid: str) -> None:
        """The central disabled notifications/indications on ``char_uuid``."""

    def on_disconnect(self) -> None:
        """The link went down."""

    # -- helpers -------------------------------------------------------------------------------

    def characteristic(self, uuid: int | str) -> Characteristic:
        full = uuid128(uuid)
        for svc in self.services:
            for ch in svc.characteristics:
                if ch.uuid == full:
                    return ch
        raise KeyError(f"{self.name} has no characteristic {full}")


class RecordingLink:
    """A :class:`Link` for unit tests: records what the peripheral sends, no D-Bus."""

    def __init__(self, subscribed: Iterable[int | str] = ()) -> None:
        self.subscribed = {uuid128(u) for u in subscribed}
        self.sent: list[tuple[str, str, bytes]] = []  # (kind, uuid, value)
        self.dropped = False

    def notify(self, char_uuid: str, value: bytes) -> None:
        if uuid128(char_uuid) in self.subscribed:
            self.sent.append(("notify", uuid128(char_uuid), bytes(value)))

    async def indicate(self, char_uuid: str, value: bytes) -> None:
        if uuid128(char_uuid) in self.subscribed:
            self.sent.append(("indicate", uuid128(char_uuid), bytes(value)))
        await asyncio.sleep(0)

    def is_subscribed(self, char_uuid: str) -> bool:
        return uuid128(char_uuid) in self.subscribed

    def drop(self) -> None:
        self.dropped = True
