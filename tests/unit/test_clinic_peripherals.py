"""The clinic's store-only devices: spot-check oximeter and scaled-down record intervals."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from hardware_sim.peripheral import RecordingLink, uuid128
from hardware_sim.peripherals.clinic import (
    ClinicMeter,
    ClinicThermometer,
    SpotCheckOximeter,
    every,
    made_between,
)

from edge_gateway.drivers.profiles.pulse_oximeter import PLXSpotCheck
from edge_gateway.drivers.profiles.thermometer import TemperatureMeasurement

NOW = datetime(2026, 11, 25, 20, 0, 0, 400_000, tzinfo=UTC)


class ManualClock:
    def __init__(self, t: datetime = NOW) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def indicated(link: RecordingLink, uuid: int) -> list[bytes]:
    return [v for _kind, u, v in link.sent if u == uuid128(uuid)]


def test_spot_check_oximeter_indicates_its_memory_oldest_first_and_only_once() -> None:
    clock = ManualClock()
    ox = SpotCheckOximeter("AA:00:00:00:05:01", start=NOW, seed=7, clock=clock,
                           history=timedelta(days=2))
    link = RecordingLink(subscribed=[0x2A5E])
    assert asyncio.run(ox.transfer(link)) == len(ox.stored) >= 4  # ~3 a day for 2 days
    spots = [PLXSpotCheck.from_bytes(v) for v in indicated(link, 0x2A5E)]
    times = [s.timestamp.to_datetime() for s in spots if s.timestamp is not None]
    assert len(times) == len(spots) and times == sorted(times)
    assert all(80 <= (s.spo2.value or 0) <= 100 for s in spots)
    assert all((s.measurement_status or 0) & (1 << 9) for s in spots)  # from storage
    assert asyncio.run(ox.transfer(link)) == 0  # confirmed ones are not sent again


def test_record_every_adds_whole_second_records_between_visits() -> None:
    clock = ManualClock()
    th = ClinicThermometer("AA:00:00:00:05:02", start=NOW, seed=8, clock=clock,
                           history=timedelta(days=1), record_every_s=30)
    before = len(th.stored)
    made = made_between(th, NOW, NOW + timedelta(seconds=95))
    assert [(t - NOW.replace(microsecond=0)).total_seconds() for t in made] == [31, 61, 91]
    clock.t = NOW + timedelta(seconds=95)
    assert th.catch_up() == 3 and len(th.stored) == before + 3
    link = RecordingLink(subscribed=[0x2A1C])
    asyncio.run(th.transfer(link))
    last = TemperatureMeasurement.from_bytes(indicated(link, 0x2A1C)[-1])
    assert last.timestamp is not None
    assert last.timestamp.to_datetime() == made[-1].replace(tzinfo=None)


def test_clinic_meter_takes_scaled_down_finger_sticks_with_new_sequence_numbers() -> None:
    clock = ManualClock()
    meter = ClinicMeter("AA:00:00:00:05:03", start=NOW, seed=9, clock=clock,
                        history=timedelta(days=1), record_every_s=20)
    last = meter.stored[-1].sequence
    clock.t = NOW + timedelta(seconds=61)
    assert meter.catch_up() == 3
    assert [r.sequence for r in meter.stored[-3:]] == [last + 1, last + 2, last + 3]


def test_every_refuses_sub_second_intervals() -> None:
    with pytest.raises(ValueError, match="at least 1 s"):
        every([(NOW + timedelta(days=1), object())], NOW, 0.5)
