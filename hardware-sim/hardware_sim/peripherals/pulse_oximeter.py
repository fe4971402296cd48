"""A pulse oximeter: PLX service (PLXS 1.0) streaming PLX Continuous Measurements at 1 Hz.

Values come from :func:`~hardware_sim.generators.spo2_series` (slow SpO2 wander, pulse with
drift, scripted desaturations), generated in ten-minute chunks with one random stream per
chunk, so any moment of the scenario is reproducible from the seed alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from edge_gateway.drivers.profiles.ieee11073 import SFloat
from edge_gateway.drivers.profiles.pulse_oximeter import PLXContinuous, PLXFeatures

from ..generators import Episode, Spo2Series, spo2_series, stream
from ..peripheral import Flag, Link, Service, char, fixed, service, uuid128
from .base import SimPeripheral

PLXS = 0x1822
PLX_CONTINUOUS = 0x2A5F
PLX_FEATURES = 0x2A60
_CHUNK_S = 600
# Features: measurement status (bit 0) and pulse amplitude index (bit 6).
_FEATURES = 0x0001 | 0x0040
_VALIDATED = 1 << 7  # measurement status: validated data


class PulseOximeter(SimPeripheral):
    has_clock = False  # continuous measurements carry no time stamp
    model_number = "PLX-1"

    def __init__(self, address: str, name: str = "Pulse oximeter (sim)", *,
                 pulse_bpm: float = 68.0, episodes: Sequence[Episode] = (),
                 interval_s: float = 1.0, **kw: Any) -> None:
        self.pulse_bpm = pulse_bpm
        self.episodes = tuple(episodes)
        self.interval_s = interval_s
        self._chunks: dict[int, Spo2Series] = {}
        super().__init__(address, name, **kw)

    def profile_services(self) -> list[Service]:
        features = PLXFeatures(_FEATURES, measurement_status_support=_VALIDATED).to_bytes()
        return [service(PLXS, char(PLX_CONTINUOUS, Flag.NOTIFY), fixed(PLX_FEATURES, features))]

    def measurement(self, t_s: float) -> PLXContinuous:
        """The measurement at ``t_s`` seconds since ``start``."""
        k = int(t_s // _CHUNK_S)
        if k not in self._chunks:
            self._chunks = {k: spo2_series(
                self.start + timedelta(seconds=k * _CHUNK_S), timedelta(seconds=_CHUNK_S),
                stream(self.seed, f"{self.name}:spo2:{k}"), pulse_bpm=self.pulse_bpm,
                episodes=self.episodes)}
        s = self._chunks[k]
        i = min(int(t_s - k * _CHUNK_S), s.spo2.size - 1)
        return PLXContinuous(
            spo2=SFloat.from_value(float(s.spo2[i])),
            pulse_rate=SFloat.from_value(float(s.pulse[i])),
            measurement_status=_VALIDATED,
            pulse_amplitude_index=SFloat.from_value(float(s.perfusion_index[i]), 1),
        )

    async def run(self, link: Link) -> None:
        uuid = uuid128(PLX_CONTINUOUS)
        while True:
            if link.is_subscribed(uuid):
                self.send(link, PLX_CONTINUOUS, self.measurement(self.elapsed()).to_bytes())
            await asyncio.sleep(self.interval_s)
