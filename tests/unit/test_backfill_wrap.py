"""Glucose RACP sequence numbers wrap from 65535 to 0 (GLS §3.106.2): the backfill still finds
every new record, against the simulator's RACP selection (filters by value, as devices do)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

from hardware_sim.peripherals.racp_server import select

from edge_gateway.drivers.backfill import Frame, GlucoseBackfill, seq_after
from edge_gateway.drivers.profiles.base import DateTime, Racp
from edge_gateway.drivers.profiles.glucose import GlucoseMeasurement
from edge_gateway.drivers.profiles.ieee11073 import SFloat
from edge_gateway.drivers.profiles.racp import RecordAccessControlPoint

T0 = datetime(2026, 11, 1, 8, 0)
RX = datetime(2026, 11, 25, 10, 0)


def record(seq: int, i: int) -> bytes:
    return GlucoseMeasurement(seq, DateTime.of(T0 + timedelta(hours=i)),
                              concentration=SFloat(100 + i % 50, -5), type=1,
                              sample_location=1).to_bytes()


class Meter:
    """A meter's memory behind a RACP port: records (seq, payload), selected by value."""

    device_id = "meter"

    def __init__(self, first: int, n: int) -> None:
        self.records = [((first + i) & 0xFFFF, record((first + i) & 0xFFFF, i))
                        for i in range(n)]
        self.delivered: list[int] = []
        self.requests: list[RecordAccessControlPoint] = []

    def add(self, n: int) -> None:
        last = self.records[-1][0]
        for k in range(1, n + 1):
            seq = (last + k) & 0xFFFF
            self.records.append((seq, record(seq, len(self.records))))

    async def racp(self, request: bytes, collect: Sequence[str]) -> tuple[int, list[Frame]]:
        req = RecordAccessControlPoint.from_bytes(request)
        self.requests.append(req)
        chosen = select(self.records, req, key=lambda r: r[0], user_time=None)
        if isinstance(chosen, int):
            return chosen, []
        return (1 if chosen else 6), [("2a18", RX, p) for _s, p in chosen]

    async def read(self, uuid: str) -> bytes:
        raise AssertionError("not used")

    def deliver(self, frames: Sequence[Frame]) -> None:
        self.delivered += [GlucoseMeasurement.from_bytes(p).sequence_number
                           for c, _t, p in frames if c == "2a18"]


def test_serial_comparison() -> None:
    assert seq_after(0, 65535) and seq_after(5, 65530) and seq_after(2, 1)
    assert not seq_after(65535, 0) and not seq_after(7, 7) and not seq_after(1, 2)


def test_backfill_follows_the_sequence_number_past_65535() -> None:
    meter = Meter(65520, 12)  # 65520 .. 65531
    bf = GlucoseBackfill(None, Racp(records="2a18", identity="sequence"))
    assert asyncio.run(bf.run(meter, ["2a18"])) == 12
    assert bf.mark is not None and bf.mark.key == 65531
    meter.add(10)  # 65532 .. 65535, 0 .. 5
    meter.delivered.clear()
    assert asyncio.run(bf.run(meter, ["2a18"])) == 10
    assert meter.delivered == [65532, 65533, 65534, 65535, 0, 1, 2, 3, 4, 5]
    assert bf.mark is not None and bf.mark.key == 5
    meter.add(3)  # 6 .. 8: the ordinary ">= mark" again, nothing twice
    meter.delivered.clear()
    assert asyncio.run(bf.run(meter, ["2a18"])) == 3
    assert meter.delivered == [6, 7, 8]


def test_backfill_when_the_mark_is_the_last_number_before_the_wrap() -> None:
    meter = Meter(65530, 6)  # .. 65535
    bf = GlucoseBackfill(None, Racp(records="2a18", identity="sequence"))
    asyncio.run(bf.run(meter, ["2a18"]))
    meter.add(2)  # 0, 1
    meter.delivered.clear()
    assert asyncio.run(bf.run(meter, ["2a18"])) == 2
    assert meter.delivered == [0, 1] and bf.mark is not None and bf.mark.key == 1
