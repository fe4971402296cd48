"""Shared pieces of the codecs: the :class:`Profile` record, UUIDs, a bounds-checked reader,
writers, Date Time, the Reading helper and the one-field codec bases.

Every codec in this package is a frozen dataclass with ``from_bytes`` (classmethod),
``to_bytes`` and ``to_json``.  Decoding goes through :class:`Reader`, which checks each field's
length before reading it, so a short or long payload raises
:class:`~edge_gateway.errors.MalformedPayload` naming the characteristic, the offset and the
field — never ``struct.error`` or ``IndexError``.

A profile module declares everything about itself in one :class:`Profile` (``PROFILE``, or
``PROFILES`` for a module holding several small services); the registry builds every table
from those.  A helper module (this one, ``layout``, ``racp``, ``ieee11073``, ``e2e_crc``,
``cgm_socp``) declares none.  A codec whose layout is a table (flags-first or fixed) declares
it as a :class:`~edge_gateway.drivers.profiles.layout.Layout`; a profile's ``to_readings`` is
``@measurement def to_readings(decoded, ctx)``.
"""

from __future__ import annotations

import functools
import struct
import uuid as _uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, Protocol, Self, TypeVar

from edge_gateway.drivers.profiles.ieee11073 import Float32, SFloat
from edge_gateway.errors import MalformedPayload
from edge_gateway.reading import Reading
from edge_gateway.units import Kind

_M = TypeVar("_M")
_M_contra = TypeVar("_M_contra", contravariant=True)
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_S16 = struct.Struct("<h")


# ---------------------------------------------------------------------------------------------
# UUIDs
# ---------------------------------------------------------------------------------------------

#: The Bluetooth Base UUID after the 32-bit alias: ``0000xxxx`` + this is a 16-bit SIG UUID.
BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"
_HEX = frozenset("0123456789abcdef")


def short_uuid(uuid: str) -> str:
    """The one spelling of a service or characteristic UUID that every table and the store use.

    A 16-bit SIG UUID (``"2A37"``, ``"0x2a37"``, or the full Base-UUID form
    ``00002a37-0000-1000-8000-00805f9b34fb``) -> four lower-case hex digits ``"2a37"``; any
    other valid 128-bit UUID (a vendor's) -> its canonical lower-case 36-character form.
    Anything else raises ``ValueError``.
    """
    text = uuid.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if len(text) == 4 and _HEX.issuperset(text):
        return text
    if len(text) >= 32:
        try:
            full = str(_uuid.UUID(text))
        except ValueError:
            pass
        else:
            if full.startswith("0000") and full.endswith(BASE_UUID_SUFFIX):
                return full[4:8]
            return full
    raise ValueError(f"{uuid!r} is not a 16-bit Bluetooth SIG UUID (like 2a37) "
                     "or a 128-bit UUID")


def full_uuid(uuid: str | int) -> str:
    """``"2a37"`` / ``0x2A37`` / any UUID spelling -> the full 128-bit lower-case UUID."""
    if isinstance(uuid, int):
        return f"{uuid:08x}{BASE_UUID_SUFFIX}"
    text = uuid.strip().lower()
    if len(text) in (4, 8):
        return f"{int(text, 16):08x}{BASE_UUID_SUFFIX}"
    short = short_uuid(text)
    return f"0000{short}{BASE_UUID_SUFFIX}" if len(short) == 4 else short


class Codec(Protocol):
    """What every characteristic codec offers (used by the registry and the CLI)."""

    characteristic: ClassVar[str]
    name: ClassVar[str]

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self: ...

    def to_bytes(self) -> bytes: ...

    def to_json(self) -> dict[str, Any]: ...


#: ``to_readings(decoded, *, device_id, characteristic, received_at, device_clock_offset,
#: reset_epoch, session_start)`` -> Readings: a profile's measurement function.
ToReadings = Callable[..., list[Reading]]

#: How stored records are identified over RACP (the backfill strategy follows from it):
#: ``"sequence"``: a GLS-style uint16 sequence number, the record's base time its identity;
#: ``"time_offset"``: CGM time offsets within a sensor session (``Racp.session`` names it);
#: ``"recorded"``: BLS 1.1 Records, sequence number + the recorded measurement bytes.
RecordIdentity = Literal["sequence", "time_offset", "recorded"]


@dataclass(frozen=True, slots=True)
class Racp:
    """A profile's stored records, fetched over the Record Access Control Point (0x2A52)."""

    #: The characteristic the records arrive on (it must be subscribed).
    records: str
    identity: RecordIdentity
    #: Characteristics collected with the records when offered (e.g. glucose context).
    also: tuple[str, ...] = ()
    #: ``time_offset`` only: the characteristic read to identify the sensor session.
    session: str | None = None


@dataclass(frozen=True, eq=False)
class Profile:
    """Everything the gateway needs to know about one profile (or serial protocol).

    Characteristics are UUID strings in any spelling :func:`short_uuid` accepts (the registry
    normalises them); a serial protocol's one "characteristic" is ``serial:<protocol>``.
    Compared by identity (it holds a mapping of functions).
    """

    #: The profile's name (``devices.profile``), e.g. ``"heart_rate"``.
    name: str
    #: Its service UUID; None for a serial protocol (nothing to scan or subscribe to).
    service: str | None
    #: Every codec the profile owns (``decode`` finds them by their ``characteristic``).
    codecs: tuple[type[Codec], ...]
    #: Characteristic -> ``to_readings``: which characteristics carry measurements.
    measurements: Mapping[str, ToReadings] = field(default_factory=dict)
    #: Subscribed to (notify or indicate) when the device offers them, in this order.
    subscribe: tuple[str, ...] = ()
    #: Read once per connection and handed on as a frame (features, sensor location, …).
    read_once: tuple[str, ...] = ()
    #: Read on the first connection only (Device Information).
    read_first: tuple[str, ...] = ()
    #: Continuous streams: a device offering one is never disconnected for idleness.
    streams: tuple[str, ...] = ()
    #: The device hands out its records only to a bonded gateway (pair before use).
    needs_bond: bool = False
    #: Stored records fetched over RACP, or None.
    racp: Racp | None = None
    #: ``devices scan`` looks for this service as a health device (False: support services).
    scan: bool = True
    #: Reading kinds this profile emits that the core table (``units.KINDS``) lacks.
    kinds: tuple[Kind, ...] = ()


class Reader:
    """Reads little-endian fields from ``raw``, raising ``MalformedPayload`` when one is short."""

    __slots__ = ("char", "pos", "raw")

    def __init__(self, char: str, raw: bytes) -> None:
        self.char = char
        self.raw = raw
        self.pos = 0

    def fail(self, reason: str, offset: int | None = None) -> MalformedPayload:
        return MalformedPayload(self.char, self.pos if offset is None else offset, reason,
                                self.raw)

    def need(self, size: int, what: str) -> int:
        """Reserve ``size`` bytes for field ``what``; return their offset."""
        pos = self.pos
        left = len(self.raw) - pos
        if left < size:
            raise self.fail(f"{what} truncated: needs {size} byte{'s' if size > 1 else ''}, "
                            f"{left} left")
        self.pos = pos + size
        return pos

    def u8(self, what: str) -> int:
        return self.raw[self.need(1, what)]

    def s8(self, what: str) -> int:
        v = self.raw[self.need(1, what)]
        return v - 256 if v >= 128 else v

    def u16(self, what: str) -> int:
        p = self.need(2, what)
        raw = self.raw
        return raw[p] | (raw[p + 1] << 8)

    def s16(self, what: str) -> int:
        return int(_S16.unpack_from(self.raw, self.need(2, what))[0])

    def u24(self, what: str) -> int:
        p = self.need(3, what)
        raw = self.raw
        return raw[p] | (raw[p + 1] << 8) | (raw[p + 2] << 16)

    def u32(self, what: str) -> int:
        return int(_U32.unpack_from(self.raw, self.need(4, what))[0])

    def nibbles(self, what: str) -> tuple[int, int]:
        """One byte as (low, high) nibble: GSS "Type-Sample Location", "Tester-Health"."""
        v = self.u8(what)
        return v & 0xF, v >> 4

    def sfloat(self, what: str) -> SFloat:
        return SFloat.from_raw(self.u16(what))

    def float32(self, what: str) -> Float32:
        return Float32.from_raw(self.u32(what))

    def datetime7(self, what: str) -> DateTime:
        p = self.need(7, what)
        raw = self.raw
        return DateTime(raw[p] | (raw[p + 1] << 8), raw[p + 2], raw[p + 3], raw[p + 4],
                        raw[p + 5], raw[p + 6])

    def rest(self) -> bytes:
        data = self.raw[self.pos:]
        self.pos = len(self.raw)
        return bytes(data)

    @property
    def left(self) -> int:
        return len(self.raw) - self.pos

    def end(self) -> None:
        """Refuse trailing bytes: a payload longer than its flags say is not trusted."""
        left = len(self.raw) - self.pos
        if left:
            raise self.fail(f"{left} trailing byte{'s' if left > 1 else ''} after the last field")


def p8(v: int) -> bytes:
    return bytes((v & 0xFF,))


def p16(v: int) -> bytes:
    return _U16.pack(v & 0xFFFF)


def ps16(v: int) -> bytes:
    return _S16.pack(v)


def p24(v: int) -> bytes:
    v &= 0xFFFFFF
    return bytes((v & 0xFF, (v >> 8) & 0xFF, v >> 16))


def p32(v: int) -> bytes:
    return _U32.pack(v & 0xFFFFFFFF)


#: Type of sample (GSS "Type-Sample Location", low nibble), the same for glucose and CGM.
SAMPLE_TYPES = {1: "capillary_whole_blood", 2: "capillary_plasma", 3: "venous_whole_blood",
                4: "venous_plasma", 5: "arterial_whole_blood", 6: "arterial_plasma",
                7: "undetermined_whole_blood", 8: "undetermined_plasma",
                9: "interstitial_fluid", 10: "control_solution"}


def pnib(low: int, high: int) -> bytes:
    """Two nibbles in one byte, ``low`` in bits 0–3 (the inverse of :meth:`Reader.nibbles`)."""
    return bytes(((high & 0xF) << 4 | (low & 0xF),))


def psf(v: SFloat) -> bytes:
    return _U16.pack(v.to_raw())


def pf32(v: Float32) -> bytes:
    return _U32.pack(v.to_raw())


def bits(flags: int, names: Mapping[int, str]) -> dict[str, bool]:
    """A status/feature bit field as an object of booleans, unknown set bits as ``bit<n>``."""
    out = {name: bool(flags >> bit & 1) for bit, name in names.items()}
    extra = flags & ~sum(1 << b for b in names)
    n = 0
    while extra >> n:
        if extra >> n & 1:
            out[f"bit{n}"] = True
        n += 1
    return out


def enum_name(value: int, names: Mapping[int, str]) -> str | int:
    """A known enumeration value's name, or the number itself (unknown values are kept)."""
    return names.get(value, value)


def opt_name(value: int | None, names: Mapping[int, str]) -> str | int | None:
    """:func:`enum_name` of an optional field: ``None`` when the field is absent."""
    return None if value is None else names.get(value, value)


def opt_bits(flags: int | None, names: Mapping[int, str]) -> dict[str, bool] | None:
    """:func:`bits` of an optional status field: ``None`` when the field is absent."""
    return None if flags is None else bits(flags, names)


def reserved_values(what: str, allowed: Collection[int], where: str,
                    ) -> Callable[[Any], str | None]:
    """A :class:`~.layout.Field` ``check``: a value outside ``allowed`` is one the specification
    (``where``) reserves for future use, and Core Specification Vol 1 Part E §2.9 says a
    receiver should reject a structure carrying one.  Reserved *bits* (RFU flag bits) are
    ignored instead, as the same section says; codecs keep those as ``reserved_flags``."""
    ok = frozenset(allowed)

    def check(value: Any) -> str | None:
        if value in ok:
            return None
        return f"{what} {value} is reserved for future use ({where})"

    return check


def u8(v: int) -> bytes:
    """One octet, unmasked: a value over 255 is refused (``ValueError``), not wrapped."""
    return bytes((v,))


def json_tail(out: dict[str, Any], reserved_flags: int, *, raw_timestamp: DateTime | None = None,
              **specials: SFloat | Float32 | None) -> dict[str, Any]:
    """The end every measurement's ``to_json`` shares: ``<name>_special`` for each float that
    is a special value, ``timestamp_raw`` for a time stamp that is not a real date (when
    given), ``reserved_flags`` when any is set.  Returns ``out``."""
    for name, v in specials.items():
        if v is not None and v.special is not None:
            out[f"{name}_special"] = v.special
    if raw_timestamp is not None and raw_timestamp.iso() is None:
        out["timestamp_raw"] = raw_timestamp.to_json()
    if reserved_flags:
        out["reserved_flags"] = reserved_flags
    return out


@dataclass(frozen=True, slots=True)
class DateTime:
    """Date Time (GATT Specification Supplement §3.70, org.bluetooth.characteristic.date_time).

    Year 0, month 0 or day 0 mean "not known".  The fields are kept as sent; :meth:`iso` gives
    naive ISO 8601 text (the device's own clock has no zone) or ``None`` when the fields are
    not a real date and time.
    """

    year: int
    month: int
    day: int
    hours: int
    minutes: int
    seconds: int

    def to_datetime(self) -> datetime | None:
        try:
            return datetime(self.year, self.month, self.day, self.hours, self.minutes,
                            self.seconds)
        except ValueError:
            return None

    def iso(self) -> str | None:
        dt = self.to_datetime()
        return None if dt is None else dt.isoformat()

    def to_bytes(self) -> bytes:
        return p16(self.year) + bytes((self.month & 0xFF, self.day & 0xFF, self.hours & 0xFF,
                                       self.minutes & 0xFF, self.seconds & 0xFF))

    @classmethod
    def of(cls, dt: datetime) -> DateTime:
        return cls(dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second)

    def to_json(self) -> str | dict[str, int]:
        """ISO text, or the raw fields when they are not a valid date (kept, not dropped)."""
        text = self.iso()
        if text is not None:
            return text
        return {"year": self.year, "month": self.month, "day": self.day, "hours": self.hours,
                "minutes": self.minutes, "seconds": self.seconds}


def ts_json(dt: DateTime | None) -> str | None:
    """``timestamp`` as the contract wants it: ISO 8601 without zone, or null."""
    return None if dt is None else dt.iso()


# ---------------------------------------------------------------------------------------------
# Readings
# ---------------------------------------------------------------------------------------------

def iso_naive(dt: datetime) -> str:
    return dt.replace(tzinfo=None).isoformat()


def rx_key(received_at: datetime) -> str:
    """``rx:<received_at in UTC, always with microseconds>`` for records without own identity."""
    return "rx:" + received_at.astimezone(UTC).replace(tzinfo=None).isoformat(
        timespec="microseconds")


def device_to_utc(device_time: datetime, offset: timedelta | None) -> datetime:
    """Turn the device's naive clock reading into UTC.

    ``offset`` is device clock − gateway UTC, measured when the session read the device's
    Current Time.  When it is unknown the device clock is taken as UTC (the caller marks it).
    """
    aware = device_time.replace(tzinfo=UTC)
    return aware if offset is None else aware - offset


@dataclass(frozen=True, slots=True)
class ReadingContext:
    """The per-frame facts every ``to_readings`` needs, bundled once."""

    device_id: str
    characteristic: str
    received_at: datetime
    device_clock_offset: timedelta | None
    reset_epoch: int = 0
    #: CGM only: the device's Session Start Time (see ``cgm.to_readings``).
    session_start: datetime | None = None

    def reading(self, kind: str, value: float | None, unit: str, *, record_key: str,
                special: str | None = None, device_time: datetime | None = None,
                time: datetime | None = None, extra: Mapping[str, Any] | None = None,
                ) -> Reading:
        """One Reading; ``time`` defaults to the device time converted, else ``received_at``."""
        ex: dict[str, Any] = dict(extra or {})
        if time is None and device_time is not None:
            try:
                time = device_to_utc(device_time, self.device_clock_offset)
            except OverflowError:
                # A device clock at year 1 or 9999 shifted past the calendar's end: the
                # device time is kept as text, the receive time stands in.
                ex["device_time_out_of_range"] = True
            else:
                if self.device_clock_offset is None:
                    ex["clock_offset_unknown"] = True
        if time is None:
            time = self.received_at
        if value is None and special is None:
            special = "nan"
        return Reading(
            device_id=self.device_id, characteristic=self.characteristic, kind=kind,
            value=value, unit=unit, time=time.astimezone(UTC),
            received_at=self.received_at.astimezone(UTC), record_key=record_key,
            device_time=None if device_time is None else device_time.isoformat(),
            reset_epoch=self.reset_epoch, special=special, extra=ex,
        )

    def mder(self, kind: str, v: SFloat | Float32, unit: str, **kw: Any) -> Reading:
        """A Reading from an IEEE 11073 float: special values give ``value=None`` + ``special``."""
        return self.reading(kind, v.value, unit, special=v.special, **kw)


class ToReadingsOf(Protocol[_M_contra]):
    """The ``to_readings`` signature the registry calls (see :data:`ToReadings`)."""

    def __call__(self, m: _M_contra, *, device_id: str, characteristic: str, received_at: datetime,
                 device_clock_offset: timedelta | None, reset_epoch: int = 0,
                 session_start: datetime | None = None) -> list[Reading]: ...


def measurement(fn: Callable[[_M, ReadingContext], list[Reading]]) -> ToReadingsOf[_M]:
    """Make ``fn(decoded, ctx)`` a profile's ``to_readings``: the keyword signature the
    registry calls is spelled once, here, and bundled into one :class:`ReadingContext`."""

    @functools.wraps(fn)
    def to_readings(m: _M, *, device_id: str, characteristic: str, received_at: datetime,
                    device_clock_offset: timedelta | None, reset_epoch: int = 0,
                    session_start: datetime | None = None) -> list[Reading]:
        return fn(m, ReadingContext(device_id, characteristic, received_at,
                                    device_clock_offset, reset_epoch, session_start))

    return to_readings


def timed_key(dt: DateTime | None, received_at: datetime, user_id: int | None = None) -> str:
    """``dev:<device time>`` (with ``u<id>:`` in front when there is a user), else ``rx:``."""
    dev = None if dt is None else dt.iso()
    key = f"dev:{dev}" if dev is not None else rx_key(received_at)
    return key if user_id is None else f"u{user_id}:{key}"


class UIntField:
    """A characteristic that is one little-endian unsigned integer: the codec skeleton that
    Battery Level, Body Sensor Location, Temperature Type, the feature fields … share.

    A subclass is a frozen dataclass with exactly one ``int`` field, declared in its class
    line: ``class BodySensorLocation(UIntField, uuid="2a38", label="Body Sensor Location",
    what="body sensor location", key="body_sensor_location", names=LOCATIONS)``.  ``what``
    names the field in error messages, ``size`` is 1, 2 or 4 bytes, ``key`` (+ ``names`` for
    an enumeration) is its JSON, ``check`` refuses reserved values (:func:`reserved_values`);
    a subclass may write its own ``to_json`` instead.
    """

    __slots__ = ()
    characteristic: ClassVar[str] = ""
    name: ClassVar[str] = ""
    WHAT: ClassVar[str] = ""
    SIZE: ClassVar[int] = 1
    KEY: ClassVar[str] = ""
    NAMES: ClassVar[Mapping[int, str] | None] = None
    BITS: ClassVar[Mapping[int, str]] = {}
    CHECK: ClassVar[Callable[[Any], str | None] | None] = None

    def __init_subclass__(cls, *, uuid: str = "", label: str = "", what: str | None = None,
                          size: int | None = None, key: str = "",
                          names: Mapping[int, str] | None = None,
                          bits: Mapping[int, str] | None = None,
                          check: Callable[[Any], str | None] | None = None) -> None:
        # Only what the class line gives is set: dataclass(slots=True) re-creates the class
        # without the keywords, and Feature16 presets what its subclasses share.
        if uuid:
            cls.characteristic, cls.name = uuid, label
        if what is not None:
            cls.WHAT = what
        if size is not None:
            cls.SIZE = size
        if key:
            cls.KEY = key
        if names is not None:
            cls.NAMES = names
        if bits is not None:
            cls.BITS = bits
        if check is not None:
            cls.CHECK = staticmethod(check)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        r = Reader(cls.characteristic, raw)
        size = cls.SIZE
        v = r.u8(cls.WHAT) if size == 1 else r.u16(cls.WHAT) if size == 2 else r.u32(cls.WHAT)
        r.end()
        if cls.CHECK is not None and (why := cls.CHECK(v)) is not None:
            raise r.fail(why, 0)
        return cls(v)  # type: ignore[call-arg]

    @property
    def raw_value(self) -> int:
        """The one field's value, whatever the subclass calls it."""
        return int(getattr(self, fields(self)[0].name))  # type: ignore[arg-type]

    def to_bytes(self) -> bytes:
        v = self.raw_value
        return bytes((v,)) if self.SIZE == 1 else p16(v) if self.SIZE == 2 else p32(v)

    def to_json(self) -> dict[str, Any]:
        v = self.raw_value
        return {self.KEY: v if self.NAMES is None else enum_name(v, self.NAMES)}


@dataclass(frozen=True, slots=True)
class Feature16(UIntField, what="features", size=2):
    """A characteristic that is one 16-bit feature field (BLS 0x2A49, GLS 0x2A51).

    A subclass is its class line: ``class GlucoseFeature(Feature16, uuid="2a51",
    label="Glucose Feature", bits=FEATURE_BITS): __slots__ = ()`` (bit number -> name).
    """

    features: int

    def to_json(self) -> dict[str, Any]:
        return {"features": bits(self.features, self.BITS)}


@dataclass(frozen=True, slots=True)
class TextField:
    """A UTF-8 string characteristic (Device Information §3.1–3.6); invalid UTF-8 is malformed.

    A subclass is declared in one line: ``class ModelNumber(TextField, uuid="2a24",
    label="Model Number String", key="model_number"): __slots__ = ()``.
    """

    characteristic: ClassVar[str] = ""
    name: ClassVar[str] = ""
    key: ClassVar[str] = ""

    value: str

    def __init_subclass__(cls, *, uuid: str = "", label: str = "", key: str = "") -> None:
        # No super() call: slots=True rebuilds this class, which breaks zero-argument
        # super(); object.__init_subclass__ does nothing anyway.
        if uuid:
            cls.characteristic, cls.name, cls.key = uuid, label, key

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as err:
            raise MalformedPayload(cls.characteristic, err.start,
                                   f"invalid UTF-8 in {cls.name.lower()}: {err.reason}",
                                   raw) from None
        return cls(text)

    def to_bytes(self) -> bytes:
        return self.value.encode("utf-8")

    def to_json(self) -> dict[str, Any]:
        return {self.key: self.value}
