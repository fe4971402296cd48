"""Pure parts of the BLE drivers: backoff, hole finding, RACP requests, Current Time, UUIDs."""

from __future__ import annotations

import random
from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from edge_gateway.backoff import Backoff
from edge_gateway.drivers.backfill import (
    HoleFinder,
    report_all,
    report_from,
    report_range,
    response_code,
)
from edge_gateway.drivers.current_time import decode_current_time, encode_current_time
from edge_gateway.drivers.profiles.base import full_uuid, short_uuid


def test_backoff_is_full_jitter_under_a_growing_capped_ceiling() -> None:
    b = Backoff(1.0, 30.0, rng=random.Random(1))
    delays = [b.next() for _ in range(12)]
    ceilings = [min(30.0, 2.0**n) for n in range(12)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[6:]) > 8  # it does grow
    b.reset()
    assert b.next() <= 1.0


@given(st.lists(st.booleans(), min_size=1, max_size=60))
def test_hole_finder_finds_exactly_the_damaged_keys(damaged: list[bool]) -> None:
    finder = HoleFinder(None)
    for key, bad in enumerate(damaged):
        if bad:
            finder.bad = True
        else:
            finder.good([key])
    holes = finder.finish(upto=len(damaged) - 1)
    missing = {k for lo, hi in holes for k in range(lo, hi + 1)}
    assert missing == {k for k, bad in enumerate(damaged) if bad}


def test_racp_requests_and_responses() -> None:
    assert report_all() == bytes([1, 1])
    assert report_from(0x0102) == bytes([1, 3, 1, 2, 1])
    assert report_range(5, 9) == bytes([1, 4, 1, 5, 0, 9, 0])
    assert response_code(bytes([6, 0, 1, 6])) == (1, 6)
    assert response_code(bytes([5, 0, 3, 0])) is None  # number of records, not a response
    assert response_code(b"\x06") is None  # damaged


@given(st.datetimes(min_value=datetime(1582, 10, 15), max_value=datetime(9999, 12, 31)))
def test_current_time_round_trip(when: datetime) -> None:
    raw = encode_current_time(when)
    assert len(raw) == 10 and raw[9] == 1
    back = decode_current_time(raw)
    assert back is not None
    assert back.replace(microsecond=0) == when.replace(microsecond=0)
    assert abs((back - when).total_seconds()) < 1 / 256 + 1e-6


def test_unset_device_clock_is_none() -> None:
    assert decode_current_time(bytes(10)) is None
    assert decode_current_time(b"\xe9\x07") is None


def test_uuids() -> None:
    assert full_uuid("2A37") == "00002a37-0000-1000-8000-00805f9b34fb"
    assert full_uuid(0x180D) == "0000180d-0000-1000-8000-00805f9b34fb"
    assert short_uuid(full_uuid("2a37")) == "2a37"
    vendor = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
    assert short_uuid(vendor) == vendor
