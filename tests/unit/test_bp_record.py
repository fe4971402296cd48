"""Blood Pressure Record 0x2B36 (BLS 1.1): records decode into the readings a live Blood
Pressure Measurement gives, and the simulated BLS 1.1 cuff serves its records over the RACP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta

import pytest
from hardware_sim.peripheral import RecordingLink, uuid128
from hardware_sim.peripherals.blood_pressure import BloodPressureCuff

from edge_gateway.drivers import registry
from edge_gateway.drivers.profiles.blood_pressure import BloodPressureRecord
from edge_gateway.drivers.profiles.racp import RecordAccessControlPoint as Racp
from edge_gateway.errors import MalformedPayload

NOW = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
RX = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
BPM = "0e780050005d00ea070b19081e00480001"  # 120/80/93 mmHg, 2026-11-25 08:30, 72/min, user 1


def _readings(char: str, hexs: str) -> list[tuple[str, str, float | None, str, str]]:
    out = registry.to_readings(char, bytes.fromhex(hexs), device_id="cuff", received_at=RX,
                               device_clock_offset=timedelta(0))
    return sorted((r.characteristic, r.kind, r.value, r.record_key, r.time.isoformat())
                  for r in out)


def test_record_gives_the_readings_of_the_live_measurement() -> None:
    live = _readings("2a35", BPM)
    record = _readings("2b36", "030500352a" + BPM)
    assert len(live) == 4 and record == live
    (r0, *_) = registry.to_readings("2b36", bytes.fromhex("030500352a" + BPM), device_id="c",
                                    received_at=RX, device_clock_offset=timedelta(0))
    assert r0.extra["record_sequence"] == 5 and r0.extra["user_id"] == 1


def test_record_without_time_stamp_is_keyed_by_sequence_and_segments_give_nothing() -> None:
    keys = {k for _c, _k, _v, k, _t in _readings("2b36", "030900352a08780050005d0002")}
    assert keys == {"u2:seq:9"}
    assert _readings("2b36", "050700352a0e7800") == []  # first segment of a longer record


def test_record_with_a_wrong_crc_is_malformed() -> None:
    rec = BloodPressureRecord.from_bytes(bytes.fromhex("030500352a" + BPM))
    good = BloodPressureRecord(rec.segmentation, 5, 0x2A35, rec.recorded, 0).to_bytes()
    with pytest.raises(MalformedPayload, match="E2E-CRC mismatch"):
        registry.to_readings("2b36", good, device_id="c", received_at=RX,
                             device_clock_offset=timedelta(0))


def _write(cuff: BloodPressureCuff, data: bytes) -> None:
    handler = cuff.characteristic(0x2A52).on_write
    assert handler is not None
    follow = handler(data)
    if isinstance(follow, Awaitable):
        async def run() -> None:
            await follow
        asyncio.run(run())


def test_bls11_cuff_serves_its_records_over_racp_and_not_as_indications() -> None:
    cuff = BloodPressureCuff("AA:00:00:00:03:02", start=NOW, seed=6, records=True,
                             clock=lambda: NOW, first_sequence=65530)
    total = len(cuff.stored)
    assert 50 <= total <= 58
    link = RecordingLink(subscribed=[0x2A35, 0x2B36, 0x2A52])
    cuff.on_connect(link)
    assert asyncio.run(cuff.transfer(link)) == 0  # the backlog is for the RACP
    _write(cuff, Racp(1, 1).to_bytes())  # report all
    records = [BloodPressureRecord.from_bytes(v) for _k, u, v in link.sent
               if u == uuid128(0x2B36)]
    assert len(records) == total
    seqs = [r.sequence_number for r in records]
    assert seqs[:7] == [65530, 65531, 65532, 65533, 65534, 65535, 0]  # uint16 wraps
    ms = [r.measurement for r in records]
    assert all(m is not None and m.user_id in (1, 2) for m in ms)
    assert Racp.from_bytes([v for _k, u, v in link.sent if u == uuid128(0x2A52)][-1]) \
        == Racp.response(1, 1)
    # A record decodes into the readings of the same measurement indicated live (BLS 1.0).
    plain = BloodPressureCuff("AA:00:00:00:03:02", start=NOW, seed=6, clock=lambda: NOW)
    assert records[0].recorded == plain.encode(plain.stored[0])
