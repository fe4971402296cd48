"""Shared pieces of the codecs: a bounds-checked reader, writers, Date Time, the Reading helper.

Every codec in this package is a frozen dataclass with ``from_bytes`` (classmethod),
``to_bytes`` and ``to_json``.  Decoding goes through :class:`Reader`, which checks each field's
length before reading it, so a short or long payload raises
:class:`~edge_gateway.errors.MalformedPayload` naming the characteristic, the offset and the
field — never ``struct.error`` or ``IndexError``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol, Self

from edge_gateway.drivers.profiles.ieee11073 import Float32, SFloat
from edge_gateway.errors import MalformedPayload
from edge_gateway.reading import Reading

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_S16 = struct.Struct("<h")


class Codec(Protocol):
    """What every characteristic codec offers (used by the registry and the CLI)."""

    characteristic: ClassVar[str]
    name: ClassVar[str]

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self: ...

    def to_bytes(self) -> bytes: ...

    def to_json(self) -> dict[str, Any]: ...


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


def timed_key(dt: DateTime | None, received_at: datetime, user_id: int | None = None) -> str:
    """``dev:<device time>`` (with ``u<id>:`` in front when there is a user), else ``rx:``."""
    dev = None if dt is None else dt.iso()
    key = f"dev:{dev}" if dev is not None else rx_key(received_at)
    return key if user_id is None else f"u{user_id}:{key}"


@dataclass(frozen=True, slots=True)
class Feature16:
    """A characteristic that is one 16-bit feature field (BLS 0x2A49, GLS 0x2A51).

    Subclasses set ``characteristic``, ``name`` and ``BITS`` (bit number -> feature name).
    """

    characteristic: ClassVar[str] = ""
    name: ClassVar[str] = ""
    BITS: ClassVar[Mapping[int, str]] = {}

    features: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        r = Reader(cls.characteristic, raw)
        v = r.u16("features")
        r.end()
        return cls(v)

    def to_bytes(self) -> bytes:
        return p16(self.features)

    def to_json(self) -> dict[str, Any]:
        return {"features": bits(self.features, self.BITS)}
