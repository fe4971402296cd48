"""IEEE 11073 SFLOAT/FLOAT: special values never become numbers; precision is kept."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_gateway.drivers.profiles.ieee11073 import Float32, SFloat, format_number


@pytest.mark.parametrize(("word", "name"), [
    (0x07FF, "nan"), (0x0800, "nres"), (0x07FE, "+inf"), (0x0802, "-inf"), (0x0801, "reserved"),
])
def test_sfloat_special_values(word: int, name: str) -> None:
    v = SFloat.from_raw(word)
    assert v.value is None and v.special == name and str(v) == name
    assert v.to_raw() == word
    assert SFloat.special_value(name) == v


@pytest.mark.parametrize(("word", "name"), [
    (0x007FFFFF, "nan"), (0x00800000, "nres"), (0x007FFFFE, "+inf"), (0x00800002, "-inf"),
    (0x00800001, "reserved"),
])
def test_float_special_values(word: int, name: str) -> None:
    v = Float32.from_raw(word)
    assert v.value is None and v.special == name
    assert v.to_raw() == word and Float32.special_value(name) == v


def test_special_mantissa_with_an_exponent_is_a_number() -> None:
    # Specials are defined with exponent 0 only (GSS lists them as whole words).
    assert SFloat.from_raw(0x17FF).value == 20470.0
    assert SFloat.from_raw(0x17FF).special is None


@pytest.mark.parametrize(("word", "value", "text"), [
    (0x0002, 2.0, "2"), (0xF014, 2.0, "2.0"), (0xE0C8, 2.0, "2.00"), (0x1002, 20.0, "20"),
    (0xF2D5, 72.5, "72.5"), (0xFFFB, -0.5, "-0.5"), (0x8001, 1e-08, "0.00000001"),
])
def test_sfloat_values_keep_their_precision(word: int, value: float, text: str) -> None:
    v = SFloat.from_raw(word)
    assert v.value == value and str(v) == text


def test_float_values() -> None:
    assert Float32.from_raw(0xFF000172).value == 37.0
    assert Float32.from_raw(0xFFFFFF9C).value == -10.0
    assert Float32.from_raw(0xFE000E6C).value == 36.92


def test_from_value_chooses_exact_or_rounds() -> None:
    assert SFloat.from_value(72.5) == SFloat(725, -1)
    assert SFloat.from_value(2, precision=1) == SFloat(20, -1)
    assert SFloat.from_value(120) == SFloat(12, 1)
    assert SFloat.from_value(1234.56) == SFloat(1235, 0)  # 4 significant digits fit
    assert Float32.from_value(36.6) == Float32(366, -1)
    with pytest.raises(ValueError, match="not finite"):
        SFloat.from_value(math.nan)
    with pytest.raises(ValueError, match="does not fit"):
        SFloat.from_value(1e30)


def test_to_raw_refuses_out_of_range() -> None:
    with pytest.raises(ValueError):
        SFloat(4000, 0).to_raw()
    with pytest.raises(ValueError):
        Float32(1, 200).to_raw()


def test_format_number() -> None:
    assert format_number(-5, -3) == "-0.005"
    assert format_number(12, 2) == "1200"


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-2045, max_value=2045, allow_nan=False).map(lambda x: round(x, 1)))
def test_from_value_round_trips_short_decimals(x: float) -> None:
    v = SFloat.from_value(x)
    assert v.value == pytest.approx(x, abs=0.5)
    assert SFloat.from_raw(v.to_raw()) == v
