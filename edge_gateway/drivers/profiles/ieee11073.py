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
from typing import ClassVar, Final

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
_SFLOAT_BY_NAME: Final = {v: k for k, v in _SFLOAT_SPECIAL.items()}
_FLOAT_BY_NAME: Final = {v: k for k, v in _FLOAT_SPECIAL.items()}


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


class _MedFloat:
    """What SFLOAT and FLOAT share: special values (exponent 0 only), the number, the text.

    Each subclass names its own table of special mantissas; only the widths differ.
    """

    __slots__ = ()
    _SPECIAL: ClassVar[Mapping[int, str]]
    mantissa: int
    exponent: int

    @property
    def special(self) -> str | None:
        """``"nan"``, ``"nres"``, ``"+inf"``, ``"-inf"``, ``"reserved"`` or ``None``."""
        return self._SPECIAL.get(self.mantissa) if self.exponent == 0 else None

    @property
    def value(self) -> float | None:
        """The number, or ``None`` for a special value."""
        if self.exponent == 0 and self.mantissa in self._SPECIAL:
            return None
        return _number(self.mantissa, self.exponent)

    def __str__(self) -> str:
        return self.special or format_number(self.mantissa, self.exponent)


def value_of(v: _MedFloat | None) -> float | None:
    """An optional field's number: ``None`` when the field is absent or a special value."""
    return None if v is None else v.value


@dataclass(frozen=True, slots=True)
class SFloat(_MedFloat):
    """A 16-bit IEEE 11073 SFLOAT as sent: ``mantissa`` (−2048..2047), ``exponent`` (−8..7)."""

    _SPECIAL: ClassVar[Mapping[int, str]] = _SFLOAT_SPECIAL

    mantissa: int
    exponent: int = 0

    @classmethod
    def from_raw(cls, word: int) -> SFloat:
        """Decode a 16-bit word (already read little-endian).

        Instances are immutable, so each of the 65 536 words is built once and shared: a
        CGM backfill decodes thousands of SFLOATs drawn from a few hundred distinct values.
        """
        v = _SFLOAT_CACHE.get(word)
        if v is None:
            mant = word & 0x0FFF
            if mant >= 0x0800:
                mant -= 0x1000
            exp = word >> 12
            if exp >= 8:
                exp -= 16
            v = SFloat(mant, exp)
            if 0 <= word <= 0xFFFF:
                _SFLOAT_CACHE[word] = v
        return v

    def to_raw(self) -> int:
        if not (-0x800 <= self.mantissa <= 0x7FF and -8 <= self.exponent <= 7):
            raise ValueError(f"SFLOAT out of range: mantissa {self.mantissa}, "
                             f"exponent {self.exponent}")
        return ((self.exponent & 0xF) << 12) | (self.mantissa & 0x0FFF)

    @classmethod
    def from_value(cls, value: float, precision: int | None = None) -> SFloat:
        """Encode a finite number (``precision`` = digits after the point, if given)."""
        mant, exp = _split(value, precision, 2045, -8, 7)
        return cls(mant, exp)

    @classmethod
    def special_value(cls, name: str) -> SFloat:
        """The SFLOAT for ``"nan"``, ``"nres"``, ``"+inf"``, ``"-inf"`` or ``"reserved"``."""
        return cls(_SFLOAT_BY_NAME[name], 0)


_SFLOAT_CACHE: dict[int, SFloat] = {}


@dataclass(frozen=True, slots=True)
class Float32(_MedFloat):
    """A 32-bit IEEE 11073 FLOAT: ``mantissa`` (24-bit signed), ``exponent`` (8-bit signed)."""

    _SPECIAL: ClassVar[Mapping[int, str]] = _FLOAT_SPECIAL

    mantissa: int
    exponent: int = 0

    @classmethod
    def from_raw(cls, word: int) -> Float32:
        """Decode a 32-bit word (already read little-endian)."""
        mant = word & 0xFFFFFF
        if mant >= 0x800000:
            mant -= 0x1000000
        exp = word >> 24
        if exp >= 0x80:
            exp -= 0x100
        return cls(mant, exp)

    def to_raw(self) -> int:
        if not (-0x800000 <= self.mantissa <= 0x7FFFFF and -128 <= self.exponent <= 127):
            raise ValueError(f"FLOAT out of range: mantissa {self.mantissa}, "
                             f"exponent {self.exponent}")
        return ((self.exponent & 0xFF) << 24) | (self.mantissa & 0xFFFFFF)

    @classmethod
    def from_value(cls, value: float, precision: int | None = None) -> Float32:
        mant, exp = _split(value, precision, 0x7FFFFD, -128, 127)
        return cls(mant, exp)

    @classmethod
    def special_value(cls, name: str) -> Float32:
        return cls(_FLOAT_BY_NAME[name], 0)


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
