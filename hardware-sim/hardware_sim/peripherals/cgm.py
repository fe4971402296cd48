"""A continuous glucose monitor: CGM service (CGMS 1.0.2) with E2E-CRC, RACP and SOCP.

One sensor session started ``session_age`` before the scenario's start, at UTC midnight (13.5 to
14.5 days by default, so the device holds about two weeks); a record every 5 minutes from
:func:`~hardware_sim.generators.cgm_series` (meals, a scripted night-time low, AR(1) sensor
noise, silence during warm-up), each with trend, quality and — past the alert levels — the
Warning octet of the Sensor Status Annunciation (CGMS §3.1.1.5).

* New records are notified live while the central is subscribed; older ones are fetched with
  the RACP, filter type 1 = Time Offset (CGMS §3.10.2; user-facing time is not supported).
* Time offsets count minutes from the session start, so a new session (SOCP Start Session,
  CGMS §3.11, or a reboot fault) restarts them at zero — the "sequence reset" of a CGM.
* The device supports E2E-CRC (feature bit 12), so every CGMS value it sends carries one and
  every SOCP write must carry a valid one (ATT 0x80 Missing CRC / 0x81 Invalid CRC, CGMS §4).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from edge_gateway.drivers.profiles.base import DateTime
from edge_gateway.drivers.profiles.cgm import (
    CGMFeature,
    CGMMeasurement,
    CGMRecord,
    CGMSessionRunTime,
    CGMSessionStartTime,
    CGMStatus,
)
from edge_gateway.drivers.profiles.cgm_socp import CGMSpecificOpsControlPoint as Socp
from edge_gateway.drivers.profiles.e2e_crc import crc16_mcrf4xx
from edge_gateway.drivers.profiles.ieee11073 import SFloat
from edge_gateway.errors import MalformedPayload

from ..generators import CgmProfile, CgmSeries, cgm_series, stream
from ..peripheral import AttError, Flag, Link, Service, char, service, uuid128
from .base import SimPeripheral
from .racp_server import RACP, RacpServer

CGMS = 0x181F
CGM_MEASUREMENT, CGM_FEATURE, CGM_STATUS = 0x2AA7, 0x2AA8, 0x2AA9
SESSION_START_TIME, SESSION_RUN_TIME, SOCP = 0x2AAA, 0x2AAB, 0x2AAC
# Patient high/low, hypo, hyper and rate alerts; E2E-CRC; multiple sessions; trend; quality.
_FEATURES = 0b1_1101_0000_0001_1110
_INTERSTITIAL, _SUBCUTANEOUS = 9, 5
_SESSION_STOPPED = 0x01
_PATIENT_LOW, _PATIENT_HIGH, _HYPO, _HYPER = 70.0, 180.0, 55.0, 250.0
_START_SESSION, _STOP_SESSION, _SET_INTERVAL, _GET_INTERVAL = 26, 27, 1, 2
_INTERVAL_RESPONSE, _RESPONSE = 3, 28
_SUCCESS, _OP_NOT_SUPPORTED, _INVALID_OPERAND = 1, 2, 3
_OUT_OF_RANGE = 0xFF  # common profile ATT error (Core Specification Supplement §1.2)
#: Records per notification: 13-byte records fit 18 to an MTU of 247; stay below.
_BATCH = 15


def _warning(g: float, trend: float) -> int | None:
    bits = 0
    bits |= 0x01 if g < _PATIENT_LOW else 0
    bits |= 0x02 if g > _PATIENT_HIGH else 0
    bits |= 0x04 if g < _HYPO else 0
    bits |= 0x08 if g > _HYPER else 0
    bits |= 0x10 if trend <= -3.0 else 0
    bits |= 0x20 if trend >= 3.0 else 0
    return bits or None


class CgmSensor(SimPeripheral):
    model_number = "CGM-1"

    def __init__(self, address: str, name: str = "CGM (sim)", *,
                 profile: CgmProfile | None = None,
                 session_age: timedelta = timedelta(days=13, hours=12),
                 session_length: timedelta = timedelta(days=15),
                 **kw: Any) -> None:
        self.cgm_profile = profile if profile is not None else CgmProfile()
        self.session_length = session_length
        self.sessions = 0
        self.stopped = False
        self._stopped_at = 0
        self.interval_min = self.cgm_profile.interval_min
        self._live_offset = -1
        self._session_start = datetime.min.replace(tzinfo=UTC)
        self._series: CgmSeries | None = None
        self._deleted: set[int] = set()
        self.racp = RacpServer[int](
            records=self._available, key=lambda i: int(self.series.offset_min[i]),
            send_records=self._send_records, remove=self._remove, batch=_BATCH,
        )
        super().__init__(address, name, **kw)
        # Sessions start at a UTC midnight, so runs on the same day meet the same session
        # (same start, same records); a run on another day meets a newer sensor.
        at = (self.start - session_age).astimezone(UTC)
        self.new_session(at.replace(hour=0, minute=0, second=0, microsecond=0))

    def profile_services(self) -> list[Service]:
        return [service(
            CGMS,
            char(CGM_MEASUREMENT, Flag.NOTIFY),
            char(CGM_FEATURE, Flag.READ, on_read=self._feature),
            char(CGM_STATUS, Flag.READ, on_read=self._status),
            char(SESSION_START_TIME, Flag.READ, Flag.WRITE, on_read=self._session_start_time,
                 on_write=self._write_session_start_time),
            char(SESSION_RUN_TIME, Flag.READ, on_read=lambda: CGMSessionRunTime(
                int(self.session_length.total_seconds() // 3600)).to_bytes(add_crc=True)),
            char(RACP, Flag.WRITE, Flag.INDICATE, on_write=lambda d: self.racp.on_write(d)),
            char(SOCP, Flag.WRITE, Flag.INDICATE, on_write=self._socp),
        )]

    # -- the session -----------------------------------------------------------------------------

    @property
    def series(self) -> CgmSeries:
        assert self._series is not None
        return self._series

    @property
    def session_start(self) -> datetime:
        """True (UTC) start of the current session."""
        return self._session_start

    def new_session(self, at: datetime) -> None:
        """Start a sensor session at ``at``: offsets restart, the old records are gone."""
        self.sessions += 1
        self.stopped = False
        self._session_start = at
        self._deleted = set()
        rng = stream(self.seed, f"{self.name}:session:{at.isoformat()}")
        self._series = cgm_series(at, self.session_length, rng, self.cgm_profile)
        self._live_offset = self._last_available_offset()

    def on_reboot(self) -> None:
        self.new_session(self.now())

    def offset_now(self) -> int:
        return int((self.now() - self._session_start).total_seconds() // 60)

    def _available(self) -> list[int]:
        """Indices of the records measured so far (and not deleted)."""
        limit = self._stopped_at if self.stopped else self.offset_now()
        idx = np.flatnonzero(self.series.offset_min <= limit)
        return [int(i) for i in idx if int(i) not in self._deleted]

    def _last_available_offset(self) -> int:
        avail = self._available()
        return int(self.series.offset_min[avail[-1]]) if avail else -1

    def record(self, i: int) -> CGMRecord:
        s = self.series
        g, trend = float(s.glucose_mg_dl[i]), float(s.trend[i])
        return CGMRecord(
            glucose=SFloat.from_value(g), time_offset=int(s.offset_min[i]),
            warning_octet=_warning(g, trend), trend=SFloat.from_value(trend, 1),
            quality=SFloat.from_value(float(s.quality[i])),
        )

    def _remove(self, chosen: Sequence[int]) -> None:
        self._deleted.update(chosen)

    def _send_records(self, link: Link, batch: Sequence[int]) -> None:
        m = CGMMeasurement(tuple(self.record(i) for i in batch))
        self.send(link, CGM_MEASUREMENT, m.to_bytes(add_crc=True))

    # -- characteristics -------------------------------------------------------------------------

    def _feature(self) -> bytes:
        body = CGMFeature(_FEATURES, _INTERSTITIAL, _SUBCUTANEOUS).to_bytes()[:4]
        return CGMFeature(_FEATURES, _INTERSTITIAL, _SUBCUTANEOUS,
                          crc16_mcrf4xx(body)).to_bytes()

    def _status(self) -> bytes:
        status = _SESSION_STOPPED if self.stopped else 0
        return CGMStatus(max(self.offset_now(), 0) & 0xFFFF, status).to_bytes(add_crc=True)

    def _session_start_time(self) -> bytes:
        # The device keeps its clock in UTC here (time zone 0, standard time), so a collector
        # that trusts the device clock gets UTC directly; a drifted clock shows up as drift.
        start = DateTime.of(self.device_time(self._session_start))
        return CGMSessionStartTime(start, 0, 0).to_bytes(add_crc=True)

    def _write_session_start_time(self, data: bytes) -> None:
        """CGMS §3.4: the collector writes the session start in its own (user-facing) time;
        the sensor derives its clock from it, so this is how a CGM's clock gets set."""
        try:
            written = CGMSessionStartTime.from_bytes(data)
        except MalformedPayload:
            raise AttError(AttError.INVALID_ATTRIBUTE_VALUE_LENGTH, "bad start time") from None
        if written.crc is None:
            raise AttError(0x80, "missing CRC")
        if written.crc_ok is False:
            raise AttError(0x81, "invalid CRC")
        start = written.utc_start()
        if start is None:
            raise AttError(_OUT_OF_RANGE, "start time, time zone or DST not known")
        # The device keeps UTC (time zone 0): its clock is now whatever makes the session
        # start read back as written.
        self.clock_offset = start - self._session_start

    def _socp(self, data: bytes) -> Any:
        link = self.racp.link
        if link is None or not link.is_subscribed(uuid128(SOCP)):
            raise AttError(AttError.CCCD_IMPROPERLY_CONFIGURED, "SOCP indications are off")
        try:
            req = Socp.from_bytes(data)
        except MalformedPayload:
            raise AttError(0x80, "missing CRC") from None
        if req.crc is None:
            raise AttError(0x80, "missing CRC")
        if req.crc_ok is False:
            raise AttError(0x81, "invalid CRC")
        if req.op_code == _START_SESSION:
            self.new_session(self.now())
            reply = Socp(_RESPONSE, request_op_code=req.op_code, response_code=_SUCCESS)
        elif req.op_code == _STOP_SESSION:
            self._stopped_at = self.offset_now()
            self.stopped = True
            reply = Socp(_RESPONSE, request_op_code=req.op_code, response_code=_SUCCESS)
        elif req.op_code == _GET_INTERVAL:
            reply = Socp(_INTERVAL_RESPONSE, interval_min=self.interval_min)
        elif req.op_code == _SET_INTERVAL and req.interval_min is not None:
            if req.interval_min == 0:
                reply = Socp(_RESPONSE, request_op_code=req.op_code,
                             response_code=_INVALID_OPERAND)
            else:
                reply = Socp(_RESPONSE, request_op_code=req.op_code, response_code=_SUCCESS)
        else:
            reply = Socp(_RESPONSE, request_op_code=req.op_code, response_code=_OP_NOT_SUPPORTED)
        return self.send_indication(link, SOCP, reply.to_bytes(add_crc=True))

    # -- connection ------------------------------------------------------------------------------

    def on_connect(self, link: Link) -> None:
        self.racp.reset(link)
        # Live notifications resume from now; what was measured meanwhile is for the RACP.
        self._live_offset = self._last_available_offset()

    def on_disconnect(self) -> None:
        self.racp.reset(None)

    def live_records(self) -> list[int]:
        """Records measured since the last live notification (and marks them sent)."""
        fresh = [i for i in self._available() if self.series.offset_min[i] > self._live_offset]
        if fresh:
            self._live_offset = int(self.series.offset_min[fresh[-1]])
        return fresh

    async def run(self, link: Link) -> None:
        while True:
            fresh = self.live_records()
            if fresh and link.is_subscribed(uuid128(CGM_MEASUREMENT)) and not self.racp.busy:
                for i in range(0, len(fresh), _BATCH):
                    self._send_records(link, fresh[i : i + _BATCH])
            await asyncio.sleep(1.0)
