"""Simulated peripherals driven directly (on_read / on_write / run) through a RecordingLink.

No D-Bus here: the virtual BlueZ has its own tests.  Every frame a peripheral sends is decoded
with the gateway's own codecs, so these tests also prove the simulator speaks the profiles.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hardware_sim.generators import CgmProfile, Episode, RRProfile, rmssd
from hardware_sim.peripheral import AttError, Peripheral, RecordingLink, uuid128
from hardware_sim.peripherals.base import FrameFaults
from hardware_sim.peripherals.blood_pressure import BloodPressureCuff
from hardware_sim.peripherals.cgm import CgmSensor
from hardware_sim.peripherals.glucose_meter import GlucoseMeter
from hardware_sim.peripherals.heart_rate import HeartRateStrap
from hardware_sim.peripherals.pulse_oximeter import PulseOximeter
from hardware_sim.peripherals.thermometer import Scale, Thermometer

from edge_gateway.drivers.profiles.base import DateTime
from edge_gateway.drivers.profiles.blood_pressure import BloodPressureMeasurement
from edge_gateway.drivers.profiles.cgm import (
    CGMFeature,
    CGMMeasurement,
    CGMRecord,
    CGMSessionStartTime,
    CGMStatus,
)
from edge_gateway.drivers.profiles.cgm_socp import CGMSpecificOpsControlPoint as Socp
from edge_gateway.drivers.profiles.glucose import GlucoseMeasurement, GlucoseMeasurementContext
from edge_gateway.drivers.profiles.heart_rate import HeartRateMeasurement
from edge_gateway.drivers.profiles.pulse_oximeter import PLXContinuous
from edge_gateway.drivers.profiles.racp import RecordAccessControlPoint as Racp
from edge_gateway.drivers.profiles.support import CurrentTime
from edge_gateway.drivers.profiles.thermometer import TemperatureMeasurement
from edge_gateway.drivers.profiles.weight import WeightMeasurement
from edge_gateway.errors import MalformedPayload

NOW = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)


class ManualClock:
    """The true time, moved by the test."""

    def __init__(self, t: datetime = NOW) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


def write(p: Peripheral, uuid: int, data: bytes) -> None:
    """A WriteValue: run the handler and its follow-up work to the end."""
    handler = p.characteristic(uuid).on_write
    assert handler is not None
    follow = handler(data)
    if isinstance(follow, Awaitable):
        asyncio.run(_await(follow))


async def _await(a: Awaitable[None]) -> None:
    await a


def read(p: Peripheral, uuid: int) -> bytes:
    handler = p.characteristic(uuid).on_read
    assert handler is not None
    return handler()


def sent(link: RecordingLink, uuid: int) -> list[bytes]:
    return [v for _, u, v in link.sent if u == uuid128(uuid)]


def racp_responses(link: RecordingLink) -> list[Racp]:
    return [Racp.from_bytes(v) for v in sent(link, 0x2A52)]


# -- heart rate -----------------------------------------------------------------------------------


def test_strap_notifies_every_beat_once_with_contact_status() -> None:
    loss = Episode("contact_loss", NOW + timedelta(seconds=100), timedelta(seconds=20))
    strap = HeartRateStrap("AA:00:00:00:00:01", start=NOW, seed=1,
                           profile=RRProfile(episodes=(loss,)))
    frames = [HeartRateMeasurement.from_bytes(strap.measurement(t, t + 1.0).to_bytes())
              for t in np.arange(0.0, 300.0, 1.0)]
    rr_ms = np.array([ms for f in frames for ms in f.rr_intervals_ms])
    beats, _ = strap.beats(0.0, 300.0)
    # Every beat outside the contact loss arrives, in 1/1024 s resolution.
    expected = beats[~((np.cumsum(beats) / 1000 >= 100) & (np.cumsum(beats) / 1000 < 120))]
    assert rr_ms.size == pytest.approx(expected.size, abs=2)
    assert 15 <= rmssd(rr_ms[:60]) <= 80
    lost = [f for f in frames[101:119]]
    assert all(f.sensor_contact == 2 and not f.rr_intervals for f in lost)
    assert all(f.sensor_contact == 3 for f in frames[:99])
    assert 50 <= np.median([f.heart_rate for f in frames[:99]]) <= 80
    # Energy expended rides on every tenth measurement with contact.
    assert 27 <= sum(f.energy_expended is not None for f in frames) <= 29


def test_strap_run_streams_while_subscribed_and_chunks_join() -> None:
    clock = ManualClock(NOW + timedelta(seconds=3598))
    strap = HeartRateStrap("AA:00:00:00:00:02", start=NOW, seed=2, clock=clock, interval_s=0.01)
    link = RecordingLink(subscribed=[0x2A37])
    strap.on_connect(link)

    async def main() -> None:
        task = asyncio.create_task(strap.run(link))
        for _ in range(5):
            await asyncio.sleep(0.012)
            clock.advance(seconds=1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    frames = [HeartRateMeasurement.from_bytes(v) for v in sent(link, 0x2A37)]
    assert len(frames) >= 4
    # Across the hour boundary of the generator the beats keep coming.
    assert sum(len(f.rr_intervals) for f in frames) >= 3


# -- glucose meter --------------------------------------------------------------------------------


def _meter(**kw: Any) -> tuple[GlucoseMeter, RecordingLink, ManualClock]:
    clock = ManualClock()
    meter = GlucoseMeter("AA:00:00:00:01:01", start=NOW, seed=3, clock=clock, **kw)
    link = RecordingLink(subscribed=[0x2A18, 0x2A34, 0x2A52])
    meter.on_connect(link)
    return meter, link, clock


def test_meter_holds_two_weeks_and_reports_all_records() -> None:
    meter, link, _ = _meter()
    n = len(meter.stored)
    assert 14 * 3 <= n <= 14 * 4 + 2
    # Numbered since the meter came into use: older records were overwritten in its memory.
    first = meter.stored[0].sequence
    assert first > 300
    write(meter, 0x2A52, Racp.report_all().to_bytes())
    ms = [GlucoseMeasurement.from_bytes(v) for v in sent(link, 0x2A18)]
    ctx = [GlucoseMeasurementContext.from_bytes(v) for v in sent(link, 0x2A34)]
    assert [m.sequence_number for m in ms] == list(range(first, first + n))
    assert [c.sequence_number for c in ctx] == list(range(first, first + n))
    assert all(m.context_follows and 20 <= (m.glucose_mg_dl or 0) <= 600 for m in ms)
    times = [m.device_time() for m in ms]
    assert times == sorted(times) and times[-1] <= NOW.replace(tzinfo=None)
    assert (NOW.replace(tzinfo=None) - times[0]) >= timedelta(days=13)
    assert racp_responses(link)[-1] == Racp.response(1, 1)
    assert len(meter.stored) == n  # reporting never deletes


def test_meter_racp_filters_count_and_errors() -> None:
    meter, link, clock = _meter()
    n = len(meter.stored)
    f = meter.stored[0].sequence
    end = f + n  # the next sequence number
    write(meter, 0x2A52, Racp(4, 1).to_bytes())  # number of all records
    write(meter, 0x2A52, Racp(4, 3, 1, f + 10).to_bytes())  # number with seq >= f+10
    write(meter, 0x2A52, Racp(4, 2, 1, f + 10).to_bytes())  # number with seq <= f+10
    write(meter, 0x2A52, Racp(4, 4, 1, f + 5, f + 9).to_bytes())  # within f+5..f+9
    write(meter, 0x2A52, Racp(4, 0).to_bytes())  # null operator: invalid
    write(meter, 0x2A52, Racp(4, 3, 3, 10).to_bytes())  # unknown filter type
    write(meter, 0x2A52, Racp(9, 1).to_bytes())  # unknown op code
    write(meter, 0x2A52, Racp(1, 3, 1, end + 5).to_bytes())  # nothing that new
    assert racp_responses(link) == [
        Racp.number_response(n), Racp.number_response(n - 10), Racp.number_response(11),
        Racp.number_response(5), Racp.response(4, 3), Racp.response(4, 9),
        Racp.response(9, 2), Racp.response(1, 6),
    ]
    # First / last and the user-facing-time filter.
    link.sent.clear()
    write(meter, 0x2A52, Racp(1, 6).to_bytes())
    last = GlucoseMeasurement.from_bytes(sent(link, 0x2A18)[0])
    assert last.sequence_number == end - 1
    since = DateTime.of((NOW - timedelta(days=2)).replace(tzinfo=None))
    write(meter, 0x2A52, Racp(4, 3, 2, since).to_bytes())
    count = racp_responses(link)[-1].number_of_records
    assert count is not None and 6 <= count <= 9
    # Backfill "after the last one the gateway holds" picks up what was taken meanwhile.
    clock.advance(days=1)
    meter.on_connect(link)
    link.sent.clear()
    write(meter, 0x2A52, Racp.report_from_sequence(end).to_bytes())
    new = [GlucoseMeasurement.from_bytes(v).sequence_number for v in sent(link, 0x2A18)]
    assert new == list(range(end, f + len(meter.stored))) and 3 <= len(new) <= 4


def test_meter_refuses_racp_without_indications_or_while_busy() -> None:
    meter, link, _ = _meter()
    link.subscribed.discard(uuid128(0x2A52))
    with pytest.raises(AttError) as e:
        write(meter, 0x2A52, Racp.report_all().to_bytes())
    assert e.value.code == 0xFD
    link.subscribed.add(uuid128(0x2A52))
    meter.racp.busy = True
    with pytest.raises(AttError) as e:
        write(meter, 0x2A52, Racp.report_all().to_bytes())
    assert e.value.code == 0xFE


def test_meter_abort_stops_a_report_and_delete_only_when_asked() -> None:
    meter, link, _ = _meter(pace_s=0.001)
    n = len(meter.stored)
    f = meter.stored[0].sequence

    on_write = meter.characteristic(0x2A52).on_write
    assert on_write is not None

    async def main() -> None:
        report = on_write(Racp.report_all().to_bytes())
        assert isinstance(report, Coroutine)
        task = asyncio.create_task(report)
        await asyncio.sleep(0.01)
        abort = on_write(Racp(3, 0).to_bytes())
        assert isinstance(abort, Coroutine)
        await abort
        await task

    asyncio.run(main())
    got = len(sent(link, 0x2A18))
    assert 0 < got < n
    assert racp_responses(link) == [Racp.response(3, 1)]  # the report itself gets no response
    write(meter, 0x2A52, Racp(2, 2, 1, f + 9).to_bytes())  # delete the ten oldest
    assert racp_responses(link)[-1] == Racp.response(2, 1)
    assert [r.sequence for r in meter.stored] == list(range(f + 10, f + n))


def test_meter_reboot_restarts_sequence_numbers() -> None:
    meter, link, clock = _meter(frame_faults=FrameFaults(reboot_before_connect=2))
    assert meter.accept_connection()
    n = len(meter.stored)
    assert meter.accept_connection()  # the second connection: the meter was reset
    assert meter.stored == [] and meter.boots == 2
    clock.advance(days=1)
    meter.on_connect(link)
    assert [r.sequence for r in meter.stored] == list(range(len(meter.stored)))
    assert 0 < len(meter.stored) < n


def test_device_clock_is_off_until_the_central_sets_it() -> None:
    off = FrameFaults(clock_offset=timedelta(days=365 * 3, minutes=7))
    meter, link, _ = _meter(frame_faults=off)
    ct = CurrentTime.from_bytes(read(meter, 0x2A2B)).to_datetime()
    assert ct == (NOW + off.clock_offset).replace(tzinfo=None)
    write(meter, 0x2A52, Racp(1, 6).to_bytes())
    last = GlucoseMeasurement.from_bytes(sent(link, 0x2A18)[-1])
    stamp = last.device_time()
    assert stamp is not None and stamp > NOW.replace(tzinfo=None)
    write(meter, 0x2A2B, CurrentTime.for_write(NOW.replace(tzinfo=None)).to_bytes())
    assert CurrentTime.from_bytes(read(meter, 0x2A2B)).to_datetime() == NOW.replace(tzinfo=None)
    with pytest.raises(AttError):
        write(meter, 0x2A2B, b"\x01\x02")


def test_frame_faults_corrupt_and_truncate_every_nth_frame() -> None:
    strap = HeartRateStrap("AA:00:00:00:00:03", start=NOW, seed=4,
                           frame_faults=FrameFaults(corrupt_every=3, truncate_every=5))
    bad = []
    for i in range(15):
        raw = strap.mangle(strap.measurement(i, i + 1.0).to_bytes())
        try:
            HeartRateMeasurement.from_bytes(raw)
        except MalformedPayload:
            bad.append(i + 1)
    assert bad == [3, 5, 6, 9, 10, 12, 15]


# -- CGM ------------------------------------------------------------------------------------------


def _cgm(**kw: Any) -> tuple[CgmSensor, RecordingLink, ManualClock]:
    clock = ManualClock()
    low = datetime(2026, 11, 25, 3, 10, tzinfo=UTC)
    cgm = CgmSensor("AA:00:00:00:02:01", start=NOW, seed=5, clock=clock,
                    profile=CgmProfile(lows=(low,)), **kw)
    link = RecordingLink(subscribed=[0x2AA7, 0x2A52, 0x2AAC])
    cgm.on_connect(link)
    return cgm, link, clock


def _cgm_records(link: RecordingLink) -> list[CGMRecord]:
    return [r for v in sent(link, 0x2AA7) for r in CGMMeasurement.from_bytes(v).records]


def test_cgm_holds_its_session_with_crc_and_the_night_low() -> None:
    cgm, link, _ = _cgm()
    feature = CGMFeature.from_bytes(read(cgm, 0x2AA8))
    assert feature.e2e_crc_supported and feature.to_json()["crc_ok"]
    start = CGMSessionStartTime.from_bytes(read(cgm, 0x2AAA))
    # 13.5 days before NOW, at the UTC midnight before (sessions are anchored to dates).
    assert start.crc_ok and start.utc_start() == datetime(2026, 11, 12, tzinfo=UTC)
    status = CGMStatus.from_bytes(read(cgm, 0x2AA9))
    assert status.crc_ok and status.time_offset == 13 * 1440 + 1200
    write(cgm, 0x2A52, Racp.report_all().to_bytes())
    recs = _cgm_records(link)
    assert all(r.crc_ok for r in recs)
    offsets = [r.time_offset for r in recs]
    assert offsets[0] == 60 and offsets == sorted(offsets) and offsets[-1] <= status.time_offset
    assert len(offsets) == (status.time_offset - 60) // 5 + 1
    by_offset = {r.time_offset: r for r in recs}
    session = start.utc_start()
    assert session is not None
    low_offset = int((datetime(2026, 11, 25, 3, 10, tzinfo=UTC) - session).total_seconds() // 60)
    near = [by_offset[o] for o in range(low_offset - 30, low_offset + 31, 5) if o in by_offset]
    assert min(r.glucose.value or 999 for r in near) < 54
    flagged = [r for r in near if r.warning_octet and r.warning_octet & 0x04]
    assert flagged  # "lower than hypo" annunciated
    assert racp_responses(link)[-1] == Racp.response(1, 1)


def test_cgm_backfills_by_time_offset_and_streams_new_records() -> None:
    cgm, link, clock = _cgm()
    last = cgm.offset_now() // 5 * 5
    clock.advance(minutes=31)
    write(cgm, 0x2A52, Racp.report_from_sequence(last + 1).to_bytes())  # filter 1: time offset
    assert [r.time_offset for r in _cgm_records(link)] == [last + 5 * i for i in range(1, 7)]
    link.sent.clear()
    assert cgm.live_records()  # measured meanwhile: handed to the live stream once
    assert cgm.live_records() == []
    clock.advance(minutes=5)
    assert len(cgm.live_records()) == 1
    # User-facing time is not a CGM filter.
    write(cgm, 0x2A52, Racp(1, 3, 2, DateTime.of(NOW.replace(tzinfo=None))).to_bytes())
    assert racp_responses(link)[-1] == Racp.response(1, 9)


def test_cgm_new_session_restarts_offsets_and_socp_checks_crc() -> None:
    cgm, link, clock = _cgm()
    with pytest.raises(AttError) as e:
        write(cgm, 0x2AAC, Socp(26).to_bytes())  # no CRC
    assert e.value.code == 0x80
    bad = bytearray(Socp(26).to_bytes(add_crc=True))
    bad[-1] ^= 0xFF
    with pytest.raises(AttError) as e:
        write(cgm, 0x2AAC, bytes(bad))
    assert e.value.code == 0x81
    write(cgm, 0x2AAC, Socp(26).to_bytes(add_crc=True))
    reply = Socp.from_bytes(sent(link, 0x2AAC)[-1])
    assert reply.crc_ok and (reply.request_op_code, reply.response_code) == (26, 1)
    assert cgm.sessions == 2
    start = CGMSessionStartTime.from_bytes(read(cgm, 0x2AAA)).utc_start()
    assert start == NOW
    write(cgm, 0x2A52, Racp(4, 1).to_bytes())
    assert racp_responses(link)[-1] == Racp.number_response(0)  # warming up: nothing yet
    clock.advance(minutes=70)
    write(cgm, 0x2A52, Racp(4, 1).to_bytes())
    assert racp_responses(link)[-1] == Racp.number_response(3)  # offsets 60, 65, 70


# -- spot devices that indicate stored readings on connect ---------------------------------------


def test_cuff_indicates_two_users_backlog_once_and_resumes_after_a_drop() -> None:
    clock = ManualClock()
    cuff = BloodPressureCuff("AA:00:00:00:03:01", start=NOW, seed=6, clock=clock)
    total = len(cuff.stored)
    assert 50 <= total <= 58
    link = RecordingLink(subscribed=[])
    assert asyncio.run(cuff.transfer(link)) == 0  # nothing without indications enabled
    link.subscribed.add(uuid128(0x2A35))
    asyncio.run(cuff.transfer(link))
    ms = [BloodPressureMeasurement.from_bytes(v) for v in sent(link, 0x2A35)]
    assert len(ms) == total and {m.user_id for m in ms} == {1, 2}
    assert all((m.systolic.value or 0) > (m.diastolic.value or 0) for m in ms)
    stamps = [m.timestamp.to_datetime() for m in ms if m.timestamp is not None]
    assert stamps == sorted(stamps)  # oldest first
    assert asyncio.run(cuff.transfer(link)) == 0  # transferred means gone from the queue
    clock.advance(days=1)
    cuff.catch_up()
    assert asyncio.run(cuff.transfer(link)) == 4  # two users, morning and evening


def test_thermometer_scale_and_oximeter_speak_their_profiles() -> None:
    link = RecordingLink(subscribed=[0x2A1C, 0x2A9D])
    thermo = Thermometer("AA:00:00:00:04:01", start=NOW, seed=7, clock=ManualClock())
    scale = Scale("AA:00:00:00:04:02", start=NOW, seed=8, clock=ManualClock())
    asyncio.run(thermo.transfer(link))
    asyncio.run(scale.transfer(link))
    temps = [TemperatureMeasurement.from_bytes(v).temperature.value for v in sent(link, 0x2A1C)]
    kgs = [WeightMeasurement.from_bytes(v).weight for v in sent(link, 0x2A9D)]
    assert 26 <= len(temps) <= 29 and all(35.5 <= (t or 0) <= 38.0 for t in temps)
    assert 13 <= len(kgs) <= 14 and all(70 <= (k or 0) <= 86 for k in kgs)
    ep = Episode("desaturation", NOW + timedelta(seconds=60), timedelta(seconds=60), rate=86)
    ox = PulseOximeter("AA:00:00:00:04:03", start=NOW, seed=9, episodes=(ep,))
    spo2 = [PLXContinuous.from_bytes(ox.measurement(t).to_bytes()).spo2.value for t in range(150)]
    values = [v for v in spo2 if v is not None]
    assert len(values) == 150 and min(values[:50]) >= 93 and min(values[60:120]) <= 88


def test_cgm_clock_set_through_session_start_time_and_reboot_starts_a_session() -> None:
    cgm, _, clock = _cgm(frame_faults=FrameFaults(clock_offset=timedelta(days=-400),
                                                  reboot_before_connect=2))
    shown = CGMSessionStartTime.from_bytes(read(cgm, 0x2AAA)).utc_start()
    true_start = datetime(2026, 11, 12, tzinfo=UTC)
    assert shown == true_start - timedelta(days=400)  # the drifted clock shows
    with pytest.raises(AttError):
        write(cgm, 0x2AAA, CGMSessionStartTime(DateTime.of(true_start), 0, 0).to_bytes())
    fixed = CGMSessionStartTime(DateTime.of(true_start.replace(tzinfo=None)), 0, 0)
    write(cgm, 0x2AAA, fixed.to_bytes(add_crc=True))
    assert CGMSessionStartTime.from_bytes(read(cgm, 0x2AAA)).utc_start() == true_start
    assert cgm.accept_connection() and cgm.sessions == 1
    clock.advance(minutes=1)
    assert cgm.accept_connection() and cgm.sessions == 2  # rebooted: a new session
    assert CGMStatus.from_bytes(read(cgm, 0x2AA9)).time_offset == 0
