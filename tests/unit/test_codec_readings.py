"""From decoded measurements to Readings: kinds, units, natural keys, the two clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge_gateway.drivers import registry
from edge_gateway.drivers.profiles.base import DateTime
from edge_gateway.drivers.profiles.cgm import CGMMeasurement, CGMRecord
from edge_gateway.drivers.profiles.ieee11073 import SFloat
from edge_gateway.errors import MalformedPayload
from edge_gateway.reading import Reading

RX = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)
DEV = "aa:bb:cc:dd:ee:ff"


def readings(char: str, hexstr: str, offset: timedelta | None = None,
             session_start: datetime | None = None, reset_epoch: int = 0) -> list[Reading]:
    return registry.decode_readings(char, bytes.fromhex(hexstr), device_id=DEV,
                                    received_at=RX, device_clock_offset=offset,
                                    reset_epoch=reset_epoch, session_start=session_start)


def test_heart_rate_and_rr_share_the_receive_time_key() -> None:
    out = readings("2a37", "1e480a00000400020004", reset_epoch=3)
    assert [(r.kind, r.value, r.unit) for r in out] == [
        ("heart_rate", 72.0, "/min"), ("rr_interval", 1000.0, "ms"),
        ("rr_interval", 500.0, "ms"), ("rr_interval", 1000.0, "ms")]
    assert [r.record_key for r in out] == [
        "rx:2026-11-25T10:00:00.123456", "rx:2026-11-25T10:00:00.123456:rr0",
        "rx:2026-11-25T10:00:00.123456:rr1", "rx:2026-11-25T10:00:00.123456:rr2"]
    assert all(r.time == RX and r.device_time is None and r.reset_epoch == 3 for r in out)
    assert out[0].extra["energy_expended_kj"] == 10


def test_cgm_records_keyed_by_session_and_offset_with_clock_offset() -> None:
    start = datetime(2026, 11, 20, 8, 0)  # device clock, 2 minutes fast
    out = readings("2aa7", "060078000500" "06007a000a00", offset=timedelta(minutes=2),
                   session_start=start)
    assert [(r.kind, r.value, r.unit) for r in out] == [
        ("cgm_glucose", 120.0, "mg/dL"), ("cgm_glucose", 122.0, "mg/dL")]
    assert [r.record_key for r in out] == ["sess:2026-11-20T08:00:00:off:5",
                                           "sess:2026-11-20T08:00:00:off:10"]
    assert out[0].device_time == "2026-11-20T08:05:00"
    assert out[0].time == datetime(2026, 11, 20, 8, 3, tzinfo=UTC)


def test_cgm_without_session_start_uses_receive_time_and_says_so() -> None:
    (r,) = readings("2aa7", "060078000500")
    assert r.record_key == "sess:unknown:off:5"
    assert r.time == RX and r.extra["time_estimated"] is True


def test_cgm_aware_session_start_is_utc() -> None:
    (r,) = readings("2aa7", "060078000500",
                    session_start=datetime(2026, 11, 20, 7, 0, tzinfo=UTC))
    assert r.time == datetime(2026, 11, 20, 7, 5, tzinfo=UTC)
    assert r.record_key == "sess:2026-11-20T07:00:00:off:5"


def test_cgm_crc_mismatch_is_a_rejected_frame_not_a_value() -> None:
    good = CGMMeasurement((CGMRecord(SFloat(120), 5),)).to_bytes(add_crc=True)
    bad = good[:-2] + bytes((good[-2] ^ 0xFF, good[-1]))
    assert CGMMeasurement.from_bytes(bad).records[0].crc_ok is False
    with pytest.raises(MalformedPayload, match="E2E-CRC mismatch") as info:
        registry.decode_readings("2aa7", bad, device_id=DEV, received_at=RX,
                                 device_clock_offset=None)
    assert info.value.raw == bad


def test_cgm_special_value_has_no_number() -> None:
    (r,) = readings("2aa7", "0600ff070500")
    assert r.value is None and r.special == "nan"


def test_glucose_kg_per_l_keyed_by_sequence_number() -> None:
    # seq 7, base 2026-11-25 08:30, offset +5 min, 95 mg/dL, capillary whole blood / finger
    (r,) = readings("2a18", "030700ea070b19081e0005005fb011",
                    offset=timedelta(hours=1))
    assert (r.kind, r.value, r.unit, r.record_key) == ("glucose", 95.0, "mg/dL", "seq:7")
    assert r.device_time == "2026-11-25T08:35:00"
    assert r.time == datetime(2026, 11, 25, 7, 35, tzinfo=UTC)


def test_glucose_mmol_converted_with_original_kept() -> None:
    (r,) = readings("2a18", "060400ea070b19081e0036c012")
    assert r.unit == "mg/dL"
    assert r.value == pytest.approx(5.4 * 18.016)
    assert r.extra["original_value"] == 5.4 and r.extra["original_unit"] == "mmol/L"
    assert r.extra["clock_offset_unknown"] is True


def test_glucose_without_concentration_gives_nothing() -> None:
    assert readings("2a18", "080700ea070b19081e000800") == []


def test_blood_pressure_user_and_device_time_key() -> None:
    # flags 0x0e: time stamp, pulse rate, user id 1
    out = readings("2a35", "0e780050005d00ea070b190800004800" "01", offset=timedelta(0))
    assert [(r.kind, r.value, r.unit) for r in out] == [
        ("bp_systolic", 120.0, "mmHg"), ("bp_diastolic", 80.0, "mmHg"),
        ("bp_map", 93.0, "mmHg"), ("pulse_rate", 72.0, "/min")]
    assert {r.record_key for r in out} == {"u1:dev:2026-11-25T08:00:00"}
    assert all(r.time == datetime(2026, 11, 25, 8, 0, tzinfo=UTC) for r in out)


def test_blood_pressure_kpa_nan_map_and_no_timestamp() -> None:
    out = readings("2a35", "01a0f06bf0ff07")
    assert [(r.kind, r.value, r.unit, r.special) for r in out] == [
        ("bp_systolic", 16.0, "kPa", None), ("bp_diastolic", 10.7, "kPa", None),
        ("bp_map", None, "kPa", "nan")]
    assert out[0].record_key == "rx:2026-11-25T10:00:00.123456"


def test_intermediate_cuff_pressure_gives_no_readings() -> None:
    assert readings("2a36", "009600ff07ff07") == []


def test_spot_check_spo2_and_pulse() -> None:
    out = readings("2a5e", "0162004800ea070b19080000")
    assert [(r.kind, r.value, r.unit) for r in out] == [("spo2", 98.0, "%"),
                                                         ("pulse_rate", 72.0, "/min")]
    assert out[0].record_key == "dev:2026-11-25T08:00:00"


def test_thermometer_fahrenheit_and_weight_units() -> None:
    (t,) = readings("2a1c", "01da0300ff")
    assert (t.kind, t.value, t.unit) == ("temperature", 98.6, "[degF]")
    # flags 0x0d: imperial, user id 1, BMI 22.5 and height 70.2 in
    (w,) = readings("2a9d", "0d803e01e100be02")
    assert (w.kind, w.value, w.unit) == ("weight", 160.0, "[lb_av]")
    assert w.record_key == "u1:rx:2026-11-25T10:00:00.123456"
    assert w.extra["bmi_kg_m2"] == 22.5 and w.extra["height_unit"] == "[in_i]"


def test_weight_unsuccessful_is_special() -> None:
    (w,) = readings("2a9d", "00ffff")
    assert w.value is None and w.special == "nan"


def test_battery_reading_and_reserved_level() -> None:
    (b,) = readings("2a19", "5a")
    assert (b.kind, b.value, b.unit) == ("battery", 90.0, "%")
    # 101-255 are reserved (GSS Battery Level): malformed, kept raw by the pipeline.
    with pytest.raises(MalformedPayload, match="reserved for future use"):
        readings("2a19", "c8")


def test_non_measurement_characteristics_give_nothing() -> None:
    assert readings("2a38", "01") == []
    assert readings("2a52", "06000101") == []


def test_device_time_at_the_end_of_the_calendar_falls_back_to_receive_time() -> None:
    # base time 9999-12-31 23:59:00 + 32767 minutes cannot be a datetime
    (r,) = readings("2a18", "0301000f270c1f173b00ff7f5fb011", offset=timedelta(minutes=-3))
    assert r.time == RX and r.device_time is None
    # BP time stamp 9999-12-31 23:59:59 with the device clock an hour slow
    late = readings("2a35", "02780050005d000f270c1f173b3b", offset=timedelta(hours=-1))
    assert all(r.time == RX and r.extra["device_time_out_of_range"] is True for r in late)
    assert late[0].device_time == "9999-12-31T23:59:59"


def test_date_time_helpers() -> None:
    assert DateTime(2026, 2, 30, 0, 0, 0).iso() is None
    assert DateTime.of(datetime(2026, 1, 2, 3, 4, 5)).to_bytes().hex() == "ea070102030405"
