"""A thermometer (HTS 1.0) and a weight scale (WSS 1.0): stored readings indicated on connect.

Both keep what was measured while no central listened and indicate it, oldest first, once
indications are enabled (see :mod:`.stored`).  Values come from
:func:`~hardware_sim.generators.temperatures` (twice a day, circadian, scripted fevers) and
:func:`~hardware_sim.generators.weights` (each morning, slow trend).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from edge_gateway.drivers.profiles.base import DateTime
from edge_gateway.drivers.profiles.ieee11073 import Float32
from edge_gateway.drivers.profiles.thermometer import TemperatureMeasurement, TemperatureType
from edge_gateway.drivers.profiles.weight import WeightMeasurement, WeightScaleFeature

from ..generators import Episode, Spot, temperatures, weights
from ..peripheral import Flag, Service, char, service
from .stored import Stored, StoringDevice

HTS, TEMPERATURE_MEASUREMENT, TEMPERATURE_TYPE = 0x1809, 0x2A1C, 0x2A1D
WSS, WEIGHT_MEASUREMENT, WEIGHT_FEATURE = 0x181D, 0x2A9D, 0x2A9E
_MOUTH = 6
# Time stamp supported (bit 0), weight resolution 0.005 kg (value 7 in bits 3-6, WSS §3.2).
_WSS_FEATURES = 0x01 | (7 << 3)


#: How far ahead the user's measurements are planned (a run longer than this gets no more).
_AHEAD = timedelta(days=60)


class Thermometer(StoringDevice[Spot]):
    measurement_uuid = TEMPERATURE_MEASUREMENT

    def __init__(self, address: str, name: str = "Thermometer (sim)", *,
                 history: timedelta = timedelta(days=14), episodes: Sequence[Episode] = (),
                 **kw: Any) -> None:
        self.history = history
        self.episodes = tuple(episodes)
        kw.setdefault("model", "HTS-1")
        super().__init__(address, name, **kw)

    def profile_services(self) -> list[Service]:
        return [service(
            HTS,
            char(TEMPERATURE_MEASUREMENT, Flag.INDICATE),
            char(TEMPERATURE_TYPE, Flag.READ, on_read=lambda: TemperatureType(_MOUTH).to_bytes()),
        )]

    def plan(self) -> list[tuple[datetime, Spot]]:
        out: list[tuple[datetime, Spot]] = []
        for day, rng in self.days(self.start - self.history, self.start + _AHEAD, "temp"):
            out += [(s.time, s) for s in temperatures(day, timedelta(days=1), rng,
                                                      episodes=self.episodes)]
        return [(t, s) for t, s in out if t >= self.start - self.history]

    def encode(self, stored: Stored[Spot]) -> bytes:
        return TemperatureMeasurement(Float32.from_value(stored.item.value, 1),
                                      timestamp=DateTime.of(stored.device_time)).to_bytes()


class Scale(StoringDevice[Spot]):
    measurement_uuid = WEIGHT_MEASUREMENT

    def __init__(self, address: str, name: str = "Scale (sim)", *,
                 history: timedelta = timedelta(days=14), baseline_kg: float = 78.0,
                 **kw: Any) -> None:
        self.history = history
        self.baseline_kg = baseline_kg
        kw.setdefault("model", "WSS-1")
        super().__init__(address, name, **kw)

    def profile_services(self) -> list[Service]:
        return [service(
            WSS,
            char(WEIGHT_MEASUREMENT, Flag.INDICATE),
            char(WEIGHT_FEATURE, Flag.READ,
                 on_read=lambda: WeightScaleFeature(_WSS_FEATURES).to_bytes()),
        )]

    def plan(self) -> list[tuple[datetime, Spot]]:
        out: list[tuple[datetime, Spot]] = []
        for day, rng in self.days(self.start - self.history, self.start + _AHEAD, "kg"):
            out += [(s.time, s) for s in weights(day, timedelta(days=1), rng,
                                                 baseline_kg=self.baseline_kg,
                                                 trend_origin=self.start)]
        return [(t, s) for t, s in out if t >= self.start - self.history]

    def encode(self, stored: Stored[Spot]) -> bytes:
        return WeightMeasurement(round(stored.item.value / 0.005),
                                 timestamp=DateTime.of(stored.device_time)).to_bytes()
