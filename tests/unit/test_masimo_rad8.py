"""The Masimo Rad-8 ASCII 1 line codec: documented lines, errors with offsets, round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_gateway.drivers.profiles.masimo_rad8 import CHARACTERISTIC, Rad8Record, to_readings
from edge_gateway.errors import MalformedPayload

# Shaped like the manual's ASCII 1 example (values worked out by hand).
LINE = (b"11/25/26 20:14:07 SN=0000093112 SPO2=097% BPM=072 PI=02.35% SPCO=--.-% "
        b"SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800")


def test_documented_line_decodes_and_reencodes_exactly() -> None:
    r = Rad8Record.from_bytes(LINE + b"\r\n")
    assert r.device_time == datetime(2026, 11, 25, 20, 14, 7)
    assert (r.spo2, r.pulse_rate, r.perfusion_index) == (97.0, 72.0, 2.35)
    assert r.serial_number == "0000093112" and r.alarm == 0 and r.exception == 0x800
    assert r.exceptions["set_mode"] and not r.exceptions["sensor_off"] and r.trustworthy
    assert r.to_bytes() == LINE


def test_dashes_are_no_value_and_sensor_off_gives_no_readings() -> None:
    line = (b"03/19/26 13:37:12 SN=0000093112 SPO2=---% BPM=--- PI=--.--% DESAT=-- "
            b"PIDELTA=+-- ALARM=0000 EXC=000021")
    r = Rad8Record.from_bytes(line)
    assert r.spo2 is None and r.pulse_rate is None and r.perfusion_index is None
    assert r.exceptions["no_sensor"] and r.exceptions["sensor_off"] and not r.trustworthy
    assert to_readings(r, device_id="ox", characteristic=CHARACTERISTIC,
                       received_at=datetime(2026, 3, 19, 13, 37, 13, tzinfo=UTC),
                       device_clock_offset=None) == []


def test_readings_are_keyed_by_device_time_and_corrected_by_the_clock_offset() -> None:
    r = Rad8Record.from_bytes(LINE)
    rx = datetime(2026, 11, 25, 20, 10, 8, tzinfo=UTC)
    out = to_readings(r, device_id="ox", characteristic=CHARACTERISTIC, received_at=rx,
                      device_clock_offset=timedelta(minutes=4))
    assert [(x.kind, x.value, x.unit) for x in out] == [
        ("spo2", 97.0, "%"), ("pulse_rate", 72.0, "/min"), ("perfusion_index", 2.35, "%")]
    assert {x.record_key for x in out} == {"dev:2026-11-25T20:14:07"}
    assert out[0].time == datetime(2026, 11, 25, 20, 10, 7, tzinfo=UTC)
    assert out[0].device_time == "2026-11-25T20:14:07"


@pytest.mark.parametrize(
    ("raw", "offset", "reason"),
    [
        (b"", 0, "line does not start with 'MM/DD/YY HH:MM:SS'"),
        (b"13/25/26 20:14:07 SN=1", 0, "device date/time is not valid: month must be in 1..12"),
        (b"11/25/26 20:14:07 SN=1 SPO2=97% BPM=72 PI=1.00% ALARM=0 EXC=0 \xb0", 62,
         "non-ASCII byte in line"),
        (b"11/25/26 20:14:07 SN=1 SPO2=nan% BPM=72 PI=1.00% ALARM=0 EXC=0", 23,
         "SPO2 value 'nan%' is not a number"),
        (b"11/25/26 20:14:07 SN=1 SPO2=101% BPM=72 PI=1.00% ALARM=0 EXC=0", 23,
         "SPO2 101% is above 100%"),
        (b"11/25/26 20:14:07 SN=1 SPO2=97% BPM=72 PI=1.00% ALARM=0 EXC=0x", 56,
         "EXC value '0x' is not hexadecimal"),
        (b"11/25/26 20:14:07 SN=1 SPO2=97% BPM=72", 38, "missing fields PI, ALARM, EXC"),
        (b"11/25/26 20:14:07 SN=1 SN=2", 23, "field SN appears twice"),
        (b"11/25/26 20:14:07 SN=1 garbage", 23, "field 'garbage' is not KEY=VALUE"),
        (b"11/25/26 20:14:07 " + b"X=1 " * 100, 400, "line longer than 400 characters"),
    ],
)
def test_malformed_lines_name_offset_and_reason(raw: bytes, offset: int, reason: str) -> None:
    with pytest.raises(MalformedPayload) as e:
        Rad8Record.from_bytes(raw)
    assert (e.value.offset, e.value.reason) == (offset, reason)
    assert e.value.characteristic == CHARACTERISTIC and e.value.raw == raw


def _opt(values: st.SearchStrategy[float]) -> st.SearchStrategy[float | None]:
    return st.one_of(st.none(), values)


records = st.builds(
    Rad8Record,
    device_time=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)
                             ).map(lambda d: d.replace(microsecond=0)),
    serial_number=st.text("0123456789-", min_size=1, max_size=10),
    spo2=_opt(st.integers(0, 100).map(float)),
    pulse_rate=_opt(st.integers(0, 999).map(float)),
    perfusion_index=_opt(st.integers(0, 9999).map(lambda v: v / 100)),
    alarm=st.integers(0, 0xFFFF),
    exception=st.integers(0, 0xFFFFFF),
    others=st.lists(st.tuples(st.sampled_from(["SPCO", "SPMET", "DESAT", "PIDELTA", "PVI"]),
                              st.text("0123456789-+.%", min_size=1, max_size=6)),
                    max_size=5, unique_by=lambda kv: kv[0]).map(tuple),
)


@given(records)
def test_round_trip(record: Rad8Record) -> None:
    assert Rad8Record.from_bytes(record.to_bytes()) == record


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_leak_other_errors(raw: bytes) -> None:
    try:
        Rad8Record.from_bytes(raw)
    except MalformedPayload:
        pass
