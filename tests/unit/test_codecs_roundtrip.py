"""Property tests for the codecs.

* Round trip over the valid space: for every registered codec, ``from_bytes(x.to_bytes())``
  gives ``x`` back (hypothesis builds ``x`` field by field).
* Fuzz: arbitrary bytes never raise anything but ``MalformedPayload``; whatever decodes
  re-encodes to the very same bytes, serialises to JSON, and turns into Readings.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_gateway.drivers import registry
from edge_gateway.drivers.profiles import blood_pressure as bp
from edge_gateway.drivers.profiles import (
    cgm,
    cgm_socp,
    glucose,
    heart_rate,
    pulse_oximeter,
    racp,
    support,
    thermometer,
    weight,
)
from edge_gateway.drivers.profiles.base import DateTime
from edge_gateway.drivers.profiles.e2e_crc import crc16_mcrf4xx
from edge_gateway.drivers.profiles.ieee11073 import Float32, SFloat
from edge_gateway.errors import MalformedPayload

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u24 = st.integers(0, 0xFFFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
s16 = st.integers(-0x8000, 0x7FFF)
nib = st.integers(0, 15)
sfloats = st.builds(SFloat, st.integers(-0x800, 0x7FF), st.integers(-8, 7))
float32s = st.builds(Float32, st.integers(-0x800000, 0x7FFFFF), st.integers(-128, 127))
datetimes = st.builds(DateTime, u16, u8, u8, u8, u8, u8)


def opt(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | s


def reserved(mask: int) -> st.SearchStrategy[int]:
    return st.integers(0, 0xFF).map(lambda v: v & mask)


def defined(names: Any) -> st.SearchStrategy[int]:
    """Values the specification defines: reserved values are malformed (golden vectors)."""
    return st.sampled_from(sorted(names))


# BLS Measurement Status with bits 3-4 (pulse rate range) not the reserved value 3.
bp_status = u16.filter(lambda v: (v >> 3) & 3 != 3)


@st.composite
def heart_rates(draw: st.DrawFn) -> heart_rate.HeartRateMeasurement:
    wide = draw(st.booleans())
    rr = tuple(draw(st.lists(u16, max_size=9)))
    return heart_rate.HeartRateMeasurement(
        draw(u16 if wide else u8), draw(st.integers(0, 3)), draw(opt(u16)), rr, wide,
        draw(reserved(0xE0)))


records = st.builds(cgm.CGMRecord, sfloats, u16, opt(u8), opt(u8), opt(u8), opt(sfloats),
                    opt(sfloats), opt(u16), st.none(), reserved(0x1C))


@st.composite
def glucoses(draw: st.DrawFn) -> glucose.GlucoseMeasurement:
    conc = draw(opt(sfloats))
    return glucose.GlucoseMeasurement(
        draw(u16), draw(datetimes), draw(opt(s16)), conc, draw(st.booleans()),
        draw(defined(glucose.SAMPLE_TYPES)) if conc else 0,
        draw(defined(glucose.SAMPLE_LOCATIONS)) if conc else 0, draw(opt(u16)),
        draw(st.booleans()), draw(reserved(0xE0)))


@st.composite
def contexts(draw: st.DrawFn) -> glucose.GlucoseMeasurementContext:
    carb = draw(st.booleans())
    tester = draw(st.booleans())
    exercise = draw(st.booleans())
    med = draw(st.booleans())
    return glucose.GlucoseMeasurementContext(
        draw(u16), draw(opt(u8)), draw(defined(glucose.CARBOHYDRATE_IDS)) if carb else None,
        draw(sfloats) if carb else None, draw(opt(defined(glucose.MEALS))),
        draw(defined(glucose.TESTERS)) if tester else None,
        draw(defined(glucose.HEALTH)) if tester else None,
        draw(u16) if exercise else None, draw(u8) if exercise else None,
        draw(defined(glucose.MEDICATION_IDS)) if med else None,
        draw(sfloats) if med else None, draw(st.booleans()),
        draw(opt(sfloats)))


@st.composite
def racps(draw: st.DrawFn) -> racp.RecordAccessControlPoint:
    rac = racp.RecordAccessControlPoint
    kind = draw(st.sampled_from(["plain", "seq", "time", "number", "response", "raw"]))
    op = draw(st.sampled_from([1, 2, 4]))
    if kind == "plain":
        return rac(draw(st.sampled_from([1, 2, 3, 4])), draw(st.sampled_from([0, 1, 5, 6])))
    if kind == "seq":
        operator = draw(st.sampled_from([2, 3, 4]))
        return rac(op, operator, 1, draw(u16), draw(u16) if operator == 4 else None)
    if kind == "time":
        operator = draw(st.sampled_from([2, 3, 4]))
        return rac(op, operator, 2, draw(datetimes), draw(datetimes) if operator == 4 else None)
    if kind == "number":
        return rac(5, draw(u8), number_of_records=draw(u16))
    if kind == "response":
        return rac(6, draw(u8), request_op_code=draw(u8), response_code=draw(u8))
    return rac(draw(st.integers(7, 255)), draw(u8), operand_raw=draw(st.binary(max_size=8)))


@st.composite
def socps(draw: st.DrawFn) -> cgm_socp.CGMSpecificOpsControlPoint:
    socp = cgm_socp.CGMSpecificOpsControlPoint
    crc = draw(opt(u16))
    kind = draw(st.sampled_from(["empty", "interval", "level", "cal", "rec", "resp", "raw"]))
    if kind == "empty":
        return socp(draw(st.sampled_from(sorted(cgm_socp._EMPTY_OPS))), crc=crc)
    if kind == "interval":
        return socp(draw(st.sampled_from([1, 3])), interval_min=draw(u8), crc=crc)
    if kind == "level":
        return socp(draw(st.sampled_from(sorted(cgm_socp._LEVEL_OPS))), level=draw(sfloats),
                    crc=crc)
    if kind == "cal":
        cal = st.builds(cgm_socp.Calibration, sfloats, u16, nib, nib, u16, u16, u8)
        return socp(draw(st.sampled_from([4, 6])), calibration=draw(cal), crc=crc)
    if kind == "rec":
        return socp(5, record_number=draw(u16), crc=crc)
    if kind == "resp":
        return socp(28, request_op_code=draw(u8), response_code=draw(u8), crc=crc)
    return socp(draw(st.integers(29, 255)), operand_raw=draw(st.binary(max_size=8)))


@st.composite
def plx_features(draw: st.DrawFn) -> pulse_oximeter.PLXFeatures:
    ms = draw(opt(u16))
    ds = draw(opt(u24))
    f = draw(u16) & ~3 | (1 if ms is not None else 0) | (2 if ds is not None else 0)
    return pulse_oximeter.PLXFeatures(f, ms, ds)


@st.composite
def weights(draw: st.DrawFn) -> weight.WeightMeasurement:
    bmi = draw(st.booleans())
    return weight.WeightMeasurement(draw(u16), draw(st.booleans()), draw(opt(datetimes)),
                                    draw(opt(u8)), draw(u16) if bmi else None,
                                    draw(u16) if bmi else None, draw(reserved(0xF0)))


def _bp(cls: type[bp.BloodPressureMeasurement]) -> st.SearchStrategy[Any]:
    return st.builds(cls, sfloats, sfloats, sfloats, st.booleans(), opt(datetimes),
                     opt(sfloats), opt(u8), opt(bp_status), reserved(0xE0))


@st.composite
def bp_records(draw: st.DrawFn) -> bp.BloodPressureRecord:
    seq, counter = draw(u16), draw(st.integers(0, 63))
    if draw(st.booleans()):  # a segment of a longer record, or another characteristic's
        seg = counter << 2 | draw(st.integers(0, 3))
        uuid = draw(u16) if seg & 3 == 3 else 0x2A35
        if uuid == 0x2A35 and seg & 3 == 3:
            uuid = 0x2B34
        return bp.BloodPressureRecord(seg, seq, uuid, draw(st.binary(max_size=20)))
    inner = draw(_bp(bp.BloodPressureMeasurement)).to_bytes()
    head = bytes((counter << 2 | 3,)) + seq.to_bytes(2, "little") + b"\x35\x2a"
    if not draw(st.booleans()):
        return bp.BloodPressureRecord(counter << 2 | 3, seq, 0x2A35, inner)
    crc = _crc_reference(head + inner)
    return bp.BloodPressureRecord(counter << 2 | 3, seq, 0x2A35, inner, crc, True)


def _temp(cls: type[thermometer.TemperatureMeasurement]) -> st.SearchStrategy[Any]:
    return st.builds(cls, float32s, st.booleans(), opt(datetimes),
                     opt(defined(thermometer.TEMPERATURE_TYPES)), reserved(0xF8))


def _text(cls: type[Any]) -> st.SearchStrategy[Any]:
    return st.builds(cls, st.text(max_size=20))


STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "2a37": heart_rates(),
    "2a38": st.builds(heart_rate.BodySensorLocation,
                      defined(heart_rate.BODY_SENSOR_LOCATIONS)),
    "2a39": st.builds(heart_rate.HeartRateControlPoint, u8),
    "2a35": _bp(bp.BloodPressureMeasurement),
    "2a36": _bp(bp.IntermediateCuffPressure),
    "2b36": bp_records(),
    "2a49": st.builds(bp.BloodPressureFeature, u16),
    "2a18": glucoses(),
    "2a34": contexts(),
    "2a51": st.builds(glucose.GlucoseFeature, u16),
    "2a52": racps(),
    "2aa7": st.builds(cgm.CGMMeasurement, st.lists(records, min_size=1, max_size=4).map(tuple)),
    "2aa8": st.builds(cgm.CGMFeature, u24, nib, nib, u16),
    "2aa9": st.builds(cgm.CGMStatus, u16, u24, opt(u16)),
    "2aaa": st.builds(cgm.CGMSessionStartTime, datetimes, st.integers(-128, 127), u8,
                      opt(u16)),
    "2aab": st.builds(cgm.CGMSessionRunTime, u16, opt(u16)),
    "2aac": socps(),
    "2a5e": st.builds(pulse_oximeter.PLXSpotCheck, sfloats, sfloats, opt(datetimes), opt(u16),
                      opt(u24), opt(sfloats), st.booleans(), reserved(0xE0)),
    "2a5f": st.builds(pulse_oximeter.PLXContinuous, sfloats, sfloats,
                      opt(st.tuples(sfloats, sfloats)), opt(st.tuples(sfloats, sfloats)),
                      opt(u16), opt(u24), opt(sfloats), reserved(0xE0)),
    "2a60": plx_features(),
    "2a1c": _temp(thermometer.TemperatureMeasurement),
    "2a1e": _temp(thermometer.IntermediateTemperature),
    "2a1d": st.builds(thermometer.TemperatureType, defined(thermometer.TEMPERATURE_TYPES)),
    "2a21": st.builds(thermometer.MeasurementInterval, u16),
    "2a9d": weights(),
    "2a9e": st.builds(weight.WeightScaleFeature, u32),
    "2a19": st.builds(support.BatteryLevel, st.integers(0, 100)),
    "2a29": _text(support.ManufacturerName),
    "2a24": _text(support.ModelNumber),
    "2a25": _text(support.SerialNumber),
    "2a26": _text(support.FirmwareRevision),
    "2a27": _text(support.HardwareRevision),
    "2a28": _text(support.SoftwareRevision),
    "2a23": st.builds(support.SystemID, st.integers(0, 2**40 - 1), u24),
    "2a50": st.builds(support.PnPID, u8, u16, u16, u16),
    "2a08": st.builds(support.DateTimeChar, datetimes),
    "2a2b": st.builds(support.CurrentTime, datetimes, u8, u8, u8),
    "2a0f": st.builds(support.LocalTimeInformation, st.integers(-128, 127), u8),
}

# Serial protocols (``serial:…``) have their own tests (test_masimo_rad8.py).
CHARS = sorted(c for c in registry.CODECS if not c.startswith(registry.SERIAL_PREFIX))


def test_every_codec_has_a_round_trip_strategy() -> None:
    assert sorted(STRATEGIES) == CHARS


@pytest.mark.parametrize("char", CHARS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(char: str, data: st.DataObject) -> None:
    obj = data.draw(STRATEGIES[char])
    raw = obj.to_bytes()
    assert registry.CODECS[char].from_bytes(raw) == obj
    json.dumps(obj.to_json())


RX = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("char", CHARS)
@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=40))
def test_fuzz_only_malformed_payload(char: str, raw: bytes) -> None:
    codec = registry.CODECS[char]
    try:
        obj = codec.from_bytes(raw)
    except MalformedPayload as err:
        assert err.raw == raw
        assert 0 <= err.offset <= len(raw)
        return
    assert obj.to_bytes() == raw
    json.dumps(obj.to_json())
    try:
        registry.to_readings(char, raw, device_id="d", received_at=RX,
                             device_clock_offset=timedelta(minutes=-3),
                             session_start=datetime(2026, 11, 20, 8, 0))
    except MalformedPayload:
        pass  # a CGM record whose E2E-CRC does not match


def _crc_reference(data: bytes) -> int:
    # Bit-by-bit CRC-16/MCRF4XX: reflected poly 0x8408, init 0xFFFF, no final XOR.
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64))
def test_crc_matches_bitwise_reference(data: bytes) -> None:
    assert crc16_mcrf4xx(data) == _crc_reference(data)
    assert crc16_mcrf4xx(b"123456789") == 0x6F91


@settings(max_examples=200, deadline=None)
@given(rec=records, add_crc=st.booleans())
def test_cgm_fast_path_agrees_with_checked_path(rec: cgm.CGMRecord, add_crc: bool) -> None:
    raw = rec.to_bytes(add_crc)
    fast, end_fast = cgm._decode_record(raw, 0)
    slow, end_slow = cgm._decode_record_checked(raw, 0)
    assert (fast, fast.crc_ok, end_fast) == (slow, slow.crc_ok, end_slow)
    assert fast.crc_ok is (None if rec.crc is None and not add_crc else
                           crc16_mcrf4xx(raw[:-2]) == fast.crc)
