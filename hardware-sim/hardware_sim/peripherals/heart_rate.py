"""A chest strap: Heart Rate service (HRS 1.0) streaming the RR generator's beats.

Once a second (HRS §3.1.1: "typically 1 Hz") it notifies a Heart Rate Measurement with the
beats that ended since the last one, so RR intervals are never lost between notifications,
and the sensor-contact status (HRS §3.1.1.1).  Energy Expended is included every tenth
notification, as the spec recommends.  While skin contact is lost the strap sends contact
"not detected", a heart rate of 0 and no RR intervals, which is what common straps do.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import numpy as np

from edge_gateway.drivers.profiles.heart_rate import BodySensorLocation, HeartRateMeasurement

from ..generators import RRProfile, RRSeries, rr_series, stream
from ..peripheral import Flag, Link, Service, char, fixed, service, uuid128
from .base import SimPeripheral

HRS = 0x180D
HR_MEASUREMENT = 0x2A37
BODY_SENSOR_LOCATION = 0x2A38
_MEASUREMENT_UUID = uuid128(HR_MEASUREMENT)
_CHUNK_S = 3600.0
_CONTACT_DETECTED = 3
_CONTACT_LOST = 2


class HeartRateStrap(SimPeripheral):
    has_clock = False  # straps have no clock; their frames carry no time
    model_number = "HRS-1"

    def __init__(self, address: str, name: str = "HR strap (sim)", *,
                 profile: RRProfile | None = None, interval_s: float = 1.0,
                 **kw: Any) -> None:
        self.rr_profile = profile if profile is not None else RRProfile()
        self.interval_s = interval_s
        self._chunks: dict[int, RRSeries] = {}
        self._last_hr = 0
        self._energy_j = 0.0
        self._measurements = 0
        self._recent: list[float] = []
        self._sent_at_s: float | None = None
        super().__init__(address, name, **kw)

    def profile_services(self) -> list[Service]:
        chest = BodySensorLocation(1).to_bytes()
        return [service(HRS, char(HR_MEASUREMENT, Flag.NOTIFY), fixed(BODY_SENSOR_LOCATION, chest))]

    # -- pure: which beats fall in a window ----------------------------------------------------

    def _chunk(self, k: int) -> RRSeries:
        if k not in self._chunks:
            # Each hour has its own random stream, so any hour can be made in any order and
            # always comes out the same for a given seed.
            rng = stream(self.seed, f"{self.name}:rr:{k}")
            self._chunks[k] = rr_series(self.start + timedelta(seconds=k * _CHUNK_S),
                                        timedelta(seconds=_CHUNK_S), rng, self.rr_profile)
            for old in [c for c in self._chunks if c < k - 1]:
                del self._chunks[old]
        return self._chunks[k]

    def beats(self, t0_s: float, t1_s: float) -> tuple[np.ndarray, np.ndarray]:
        """RR intervals (ms) and contact flags of the beats ending in ``[t0_s, t1_s)``
        (seconds since ``start``)."""
        rr: list[np.ndarray] = []
        contact: list[np.ndarray] = []
        k0, k1 = int(t0_s // _CHUNK_S), int(max(t0_s, t1_s - 1e-9) // _CHUNK_S)
        for k in range(max(k0, 0), k1 + 1):
            s = self._chunk(k)
            base = k * _CHUNK_S
            sl = s.between(t0_s - base, t1_s - base)
            rr.append(s.rr_ms[sl])
            contact.append(s.contact[sl])
        if not rr:
            return np.zeros(0), np.zeros(0, dtype=bool)
        return np.concatenate(rr), np.concatenate(contact)

    def measurement(self, t0_s: float, t1_s: float) -> HeartRateMeasurement:
        """The notification covering ``[t0_s, t1_s)``."""
        rr, contact = self.beats(t0_s, t1_s)
        if rr.size and not contact.all():
            return HeartRateMeasurement(0, _CONTACT_LOST)
        if rr.size == 0 and not bool(self.beats(t0_s - 3.0, t0_s)[1].all()):
            return HeartRateMeasurement(0, _CONTACT_LOST)
        if rr.size:
            # Straps smooth the displayed rate; four beats is what common ones average over.
            self._recent = [*self._recent, *(float(x) for x in rr)][-4:]
            self._last_hr = round(60_000.0 / (sum(self._recent) / len(self._recent)))
        self._energy_j += (t1_s - t0_s) * 0.09 * max(self._last_hr, 1)  # ~6 W at rest
        ticks = tuple(round(float(ms) * 1.024) for ms in rr)  # units of 1/1024 s
        self._measurements += 1
        energy = int(self._energy_j // 1000) if self._measurements % 10 == 0 else None
        return HeartRateMeasurement(self._last_hr, _CONTACT_DETECTED, energy, ticks)

    # -- live ----------------------------------------------------------------------------------

    def on_connect(self, link: Link) -> None:
        self._sent_at_s = None

    async def run(self, link: Link) -> None:
        while True:
            now_s = self.elapsed()
            if self._sent_at_s is None:
                self._sent_at_s = now_s - self.interval_s
            if link.is_subscribed(_MEASUREMENT_UUID):
                m = self.measurement(self._sent_at_s, now_s)
                self.send(link, HR_MEASUREMENT, m.to_bytes())
            self._sent_at_s = now_s
            await asyncio.sleep(self.interval_s)
