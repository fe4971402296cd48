"""Codecs whose layout is a table: the fields in wire order, read and written from one list.

Most SIG measurements share one shape (GSS "Blood Pressure Measurement", "Temperature
Measurement", "Weight Measurement", "PLX …", "Glucose Measurement"): a flags octet, fields that
are always there, then optional fields in a fixed order, each announced by a flag bit; some
flag bits are plain booleans (units) and the unassigned ones are kept as ``reserved_flags``.
Many small characteristics are simpler still: fixed fields, sometimes followed by the CGM
E2E-CRC (CGM Status, Session Start/Run Time).  A codec states its shape once as a
:class:`Layout` — one :class:`Field` per row of the specification's table — and
:class:`TableCodec` (:class:`TableCodecWithCrc`) reads and writes it, so the decoder and the
encoder can never disagree about an order or a bit.  Codecs with a quirk of their own (the
heart-rate fast path, CGM records behind their size octet, operands chosen by an op code)
write their own ``from_bytes`` with :class:`~.base.Reader` (or :meth:`Layout.read_fields`) and
their own ``to_bytes`` (or :meth:`Layout.encode`).

A helper module: it declares no profile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

from edge_gateway.drivers.profiles.base import (
    DateTime,
    Reader,
    p8,
    p16,
    p24,
    pf32,
    pnib,
    ps16,
    psf,
    u8,
)
from edge_gateway.drivers.profiles.e2e_crc import end_with_crc, with_crc


@dataclass(frozen=True, slots=True)
class Wire:
    """How one field type is read (``read(reader, what)``) and written (``write(value)``)."""

    read: Callable[[Reader, Any], Any]
    write: Callable[[Any], bytes]


def _read_pair(r: Reader, what: tuple[str, str]) -> tuple[Any, Any]:
    return r.sfloat(what[0]), r.sfloat(what[1])


def _write_pair(v: tuple[Any, Any]) -> bytes:
    return psf(v[0]) + psf(v[1])


def _write_nibbles(v: tuple[int, int]) -> bytes:
    return pnib(v[0], v[1])


#: U8 refuses a value over 255 when writing; P8/S8 write ``value & 0xFF`` (the time fields —
#: zone, DST offset, day of week … — have always been written masked).
U8 = Wire(Reader.u8, u8)
P8 = Wire(Reader.u8, p8)
S8 = Wire(Reader.s8, p8)
U16 = Wire(Reader.u16, p16)
S16 = Wire(Reader.s16, ps16)
U24 = Wire(Reader.u24, p24)
SFLOAT = Wire(Reader.sfloat, psf)
FLOAT = Wire(Reader.float32, pf32)
DATE_TIME = Wire(Reader.datetime7, DateTime.to_bytes)
#: One octet, two dataclass fields (low nibble, high nibble): ``Field(("a", "b"), …)``.
NIBBLES = Wire(Reader.nibbles, _write_nibbles)
#: Two SFLOATs kept as one tuple field; ``what`` names both: ``("SpO2 (fast)", "…")``.
SFLOAT_PAIR = Wire(_read_pair, _write_pair)


@dataclass(frozen=True, slots=True)
class Field:
    """One row of a characteristic's field table.

    ``attr`` is the dataclass field (a tuple for :data:`NIBBLES`), ``what`` its name in
    error messages, ``bit`` the flag that announces it (0: always present).  Fields sharing
    a bit are one group: all present or all left out (BMI and height, concentration and
    type/sample location).  An absent field keeps its dataclass default.  With ``fill``, a
    :data:`NIBBLES` pair is written when either half is set, the other half as ``fill``
    (the glucose context's tester/health).  ``check`` returns why a value read is not
    acceptable (a value the specification reserves, see :func:`~.base.reserved_values`) or
    None; the payload is then malformed at the field's offset.
    """

    attr: str | tuple[str, ...]
    what: Any
    wire: Wire
    bit: int = 0
    fill: int | None = None
    check: Callable[[Any], str | None] | None = None


@dataclass(frozen=True, slots=True)
class Layout:
    """A characteristic's fields in wire order.  Flags-first (the default): its boolean flag
    bits (dataclass field -> bit) and the mask of the bits kept as ``reserved_flags``.
    :meth:`fixed`: no flags octet, every field always there, optionally the E2E-CRC last
    (fields ``crc`` and ``crc_ok``)."""

    fields: tuple[Field, ...]
    booleans: Mapping[str, int] = field(default_factory=dict)
    reserved: int = 0
    flags_octet: bool = True
    crc_tail: bool = False

    @classmethod
    def fixed(cls, *fields: Field, crc_tail: bool = False) -> Layout:
        return cls(fields, flags_octet=False, crc_tail=crc_tail)

    def read_fields(self, r: Reader, flags: int) -> dict[str, Any]:
        """The fields ``flags`` announces, read from ``r`` on: dataclass field -> value."""
        values: dict[str, Any] = {}
        for f in self.fields:
            if f.bit and not flags & f.bit:
                continue
            start = r.pos
            v = f.wire.read(r, f.what)
            if f.check is not None and (why := f.check(v)) is not None:
                raise r.fail(why, start)
            if isinstance(f.attr, str):
                values[f.attr] = v
            else:
                values.update(zip(f.attr, v, strict=True))
        return values

    def decode(self, cls: Callable[..., Any], char: str, raw: bytes) -> Any:
        r = Reader(char, raw)
        flags = r.u8("flags") if self.flags_octet else 0
        values = self.read_fields(r, flags)
        if self.crc_tail:
            values["crc"], values["crc_ok"] = end_with_crc(r)
        else:
            r.end()
        for name, bit in self.booleans.items():
            values[name] = bool(flags & bit)
        if self.reserved:
            values["reserved_flags"] = flags & self.reserved
        return cls(**values)

    def encode(self, obj: Any, add_crc: bool = False) -> bytes:
        """The payload; with a CRC tail, ``obj.crc`` as given or computed when ``add_crc``."""
        flags = obj.reserved_flags & self.reserved if self.reserved else 0
        for name, bit in self.booleans.items():
            if getattr(obj, name):
                flags |= bit
        parts: list[tuple[int, Any, Wire]] = []
        absent = 0  # bits of groups with a member missing: the whole group is left out
        for f in self.fields:
            if isinstance(f.attr, str):
                v = getattr(obj, f.attr)
                missing = v is None
            else:
                v = tuple(getattr(obj, a) for a in f.attr)
                if f.fill is None:
                    missing = None in v
                else:
                    missing = all(x is None for x in v)
                    v = tuple(f.fill if x is None else x for x in v)
            if f.bit:
                if missing:
                    absent |= f.bit
                else:
                    flags |= f.bit
            parts.append((f.bit, v, f.wire))
        flags &= ~absent
        body = b"".join(wire.write(v) for bit, v, wire in parts if not bit or not absent & bit)
        if self.flags_octet:
            body = bytes((flags,)) + body
        return with_crc(body, obj.crc, add_crc) if self.crc_tail else body


class TableCodec:
    """``from_bytes``/``to_bytes`` of a frozen dataclass codec from its ``LAYOUT``."""

    __slots__ = ()
    characteristic: ClassVar[str]
    LAYOUT: ClassVar[Layout]

    if TYPE_CHECKING:  # the dataclass subclasses generate it
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        out: Self = cls.LAYOUT.decode(cls, cls.characteristic, raw)
        return out

    def to_bytes(self) -> bytes:
        return self.LAYOUT.encode(self)


class TableCodecWithCrc(TableCodec):
    """A :class:`TableCodec` whose layout ends with the optional E2E-CRC (``crc_tail``)."""

    __slots__ = ()

    def to_bytes(self, add_crc: bool = False) -> bytes:
        """Encode; ``add_crc`` computes the E2E-CRC when ``crc`` is ``None``."""
        return self.LAYOUT.encode(self, add_crc)
