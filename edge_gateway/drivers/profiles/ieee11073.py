"""IEEE 11073-20601 medical floats: SFLOAT (16-bit) and FLOAT (32-bit).

Specification: IEEE 11073-20601 §F.8 (FLOAT-Type, SFLOAT-Type) as used by the Bluetooth GATT
Specification Supplement §2.2 ("medfloat16", "medfloat32").

* SFLOAT: 4-bit signed exponent (high nibble), 12-bit signed mantissa, value = m × 10^e.
* FLOAT: 8-bit signed exponent (high byte), 24-bit signed mantissa.

Special values exist only with exponent 0 (the GATT Supplement lists them as whole 16/32-bit
words): NaN (+(2^k−1)), NRes (−2^k, "not at this resolution"), +INF (+(2^k−2)), −INF
(−(2^k−2)) and one reserved value (−(2^k−1)).  A special value never becomes a number: its
``value`` is ``None`` and ``special`` names it, so a NaN blood pressure can never be stored as
2047 mmHg.

The mantissa and exponent are kept as sent, so "2.0" (m=20, e=−1) and "2" stay distinguishable
(the precision is information) and encoding gives back the exact bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import ClassVar, Final, Self

#: Names of the special values, as used in ``Reading.special`` and in JSON.
NAN: Final = "nan"
NRES: Final = "nres"
POS_INF: Final = "+inf"
NEG_INF: Final = "-inf"
RESERVED: Final = "reserved"

_SFLOAT_SPECIAL: Final[dict[int, str]] = {
    0x07FF: NAN, -0x0800: NRES, 0x07FE: POS_INF, -0x07FE: NEG_INF, -0x07FF: RESERVED,
}
_FLOAT_SPECIAL: Final[dict[int, str]] = {
    0x7FFFFF: NAN, -0x800000: NRES, 0x7FFFFE: POS_INF, -0x7FFFFE: NEG_INF, -0x7FFFFF: RESERVED,
}


def _number(mantissa: int, exponent: int) -> float:
    # Dividing by an exact power of ten rounds once (correctly); multiplying by 10**-n would
    # round twice (0.1 is inexact), which turns 72.5 into 72.50000000000001.
    scale: int = 10 ** abs(exponent)
    return float(mantissa * scale) if exponent >= 0 else mantissa / scale


def _split(value: float, precision: int | None, mant_max: int, exp_min: int,
           exp_max: int) -> tuple[int, int]:
    """Choose (mantissa, exponent) for a finite number.

    With ``precision`` (digits after the point) the exponent is ``-precision``; otherwise the
    shortest decimal form of ``value`` is used.  Digits that do not fit the mantissa are rounded
    away (half to even), as the device itself would; ``ValueError`` when the magnitude cannot
    be represented at all.
    """
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not finite: use special_value() for NaN/INF")
    dec = Decimal(repr(float(value)))
    exp: int
    if precision is None:
        dec = dec.normalize()
        tup_exp = dec.as_tuple().exponent
        assert isinstance(tup_exp, int)  # finite, so never 'n'/'N'/'F'
        exp = tup_exp
    else:
        exp = -precision
    while True:
        mant = int(dec.scaleb(-exp).to_integral_value(ROUND_HALF_EVEN))
        if abs(mant) <= mant_max or exp >= exp_max:
            break
        exp += 1
    while exp > exp_max and abs(mant) * 10 <= mant_max:
        mant *= 10
        exp -= 1
    while exp < exp_min and mant % 10 == 0 and mant:
        mant //= 10
        exp += 1
    if mant == 0:
        exp = min(max(exp, exp_min), exp_max)
    if abs(mant) > mant_max or not exp_min <= exp <= exp_max:
        raise ValueError(f"{value!r} does not fit an IEEE 11073 float of this size")
    return mant, exp


@dataclass(frozen=True, slots=True)
class _Width:
    """One size of medical float: its name, field widths and special mantissas."""

    label: str
    mant_bits: int
    exp_bits: int
    special: Mapping[int, str]

    @property
    def by_name(self) -> dict[str, int]:
        return {v: k for k, v in self.special.items()}


@dataclass(frozen=True, slots=True)
class _MedFloat:
    """What SFLOAT and FLOAT share: one layout (exponent over mantissa, both two's complement)
    at two widths, special values at exponent 0, the number and the text.  A subclass gives
    its :class:`_Width`; the mantissa and exponent are kept as sent."""

    _WIDTH: ClassVar[_Width]

    mantissa: int
    exponent: int = 0

    @property
    def special(self) -> str | None:
        """``"nan"``, ``"nres"``, ``"+inf"``, ``"-inf"``, ``"reserved"`` or ``None``."""
        return self._WIDTH.special.get(self.mantissa) if self.exponent == 0 else None

    @property
    def value(self) -> float | None:
        """The number, or ``None`` for a special value."""
        if self.exponent == 0 and self.mantissa in self._WIDTH.special:
            return None
        return _number(self.mantissa, self.exponent)

    @classmethod
    def _fields(cls, word: int) -> tuple[int, int]:
        """(mantissa, exponent) of a raw word (already read little-endian)."""
        mbits, ebits = cls._WIDTH.mant_bits, cls._WIDTH.exp_bits
        mant = word & ((1 << mbits) - 1)
        if mant >> (mbits - 1):
            mant -= 1 << mbits
        exp = word >> mbits
        if exp >> (ebits - 1):
            exp -= 1 << ebits
        return mant, exp

    def to_raw(self) -> int:
        mbits, ebits = self._WIDTH.mant_bits, self._WIDTH.exp_bits
        mlim, elim = 1 << (mbits - 1), 1 << (ebits - 1)
        if not (-mlim <= self.mantissa < mlim and -elim <= self.exponent < elim):
            raise ValueError(f"{self._WIDTH.label} out of range: mantissa {self.mantissa}, "
                             f"exponent {self.exponent}")
        return ((self.exponent & ((1 << ebits) - 1)) << mbits) \
            | (self.mantissa & ((1 << mbits) - 1))

    @classmethod
    def from_value(cls, value: float, precision: int | None = None) -> Self:
        """Encode a finite number (``precision`` = digits after the point, if given).

        The mantissa stays below the three special values at the top of its range.
        """
        mbits, ebits = cls._WIDTH.mant_bits, cls._WIDTH.exp_bits
        elim = 1 << (ebits - 1)
        mant, exp = _split(value, precision, (1 << (mbits - 1)) - 3, -elim, elim - 1)
        return cls(mant, exp)

    @classmethod
    def special_value(cls, name: str) -> Self:
        """The float for ``"nan"``, ``"nres"``, ``"+inf"``, ``"-inf"`` or ``"reserved"``."""
        return cls(cls._WIDTH.by_name[name], 0)

    def __str__(self) -> str:
        return self.special or format_number(self.mantissa, self.exponent)


def value_of(v: _MedFloat | None) -> float | None:
    """An optional field's number: ``None`` when the field is absent or a special value."""
    return None if v is None else v.value


@dataclass(frozen=True, slots=True)
class SFloat(_MedFloat):
    """A 16-bit IEEE 11073 SFLOAT as sent: ``mantissa`` (−2048..2047), ``exponent`` (−8..7)."""

    _WIDTH: ClassVar[_Width] = _Width("SFLOAT", 12, 4, _SFLOAT_SPECIAL)

    @classmethod
    def from_raw(cls, word: int) -> SFloat:
        """Decode a 16-bit word (already read little-endian).

        Instances are immutable, so each of the 65 536 words is built once and shared: a
        CGM backfill decodes thousands of SFLOATs drawn from a few hundred distinct values.
        """
        v = _SFLOAT_CACHE.get(word)
        if v is None:
            v = SFloat(*SFloat._fields(word))
            if 0 <= word <= 0xFFFF:
                _SFLOAT_CACHE[word] = v
        return v


_SFLOAT_CACHE: dict[int, SFloat] = {}


@dataclass(frozen=True, slots=True)
class Float32(_MedFloat):
    """A 32-bit IEEE 11073 FLOAT: ``mantissa`` (24-bit signed), ``exponent`` (8-bit signed)."""

    _WIDTH: ClassVar[_Width] = _Width("FLOAT", 24, 8, _FLOAT_SPECIAL)

    @classmethod
    def from_raw(cls, word: int) -> Float32:
        """Decode a 32-bit word (already read little-endian)."""
        return cls(*cls._fields(word))


def format_number(mantissa: int, exponent: int) -> str:
    """Decimal text keeping the sent precision: (725, −1) → ``"72.5"``, (20, −1) → ``"2.0"``."""
    if exponent >= 0:
        return str(mantissa * 10**exponent)
    sign = "-" if mantissa < 0 else ""
    digits = str(abs(mantissa)).rjust(-exponent + 1, "0")
    return f"{sign}{digits[:exponent]}.{digits[exponent:]}"


def sfloat(word: int) -> SFloat:
    """Shorthand for :meth:`SFloat.from_raw`."""
    return SFloat.from_raw(word)


def float32(word: int) -> Float32:
    """Shorthand for :meth:`Float32.from_raw`."""
    return Float32.from_raw(word)
