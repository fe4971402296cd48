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

import numpy as np

from edge_gateway.drivers.profiles.base import DateTime
from edge_gateway.drivers.profiles.ieee11073 import Float32
from edge_gateway.drivers.profiles.thermometer import TemperatureMeasurement, TemperatureType
from edge_gateway.drivers.profiles.weight import WeightMeasurement, WeightScaleFeature

from ..generators import Episode, Spot, temperatures, weights
from ..peripheral import Flag, Service, char, fixed, service
from .stored import Stored, StoringDevice

HTS, TEMPERATURE_MEASUREMENT, TEMPERATURE_TYPE = 0x1809, 0x2A1C, 0x2A1D
WSS, WEIGHT_MEASUREMENT, WEIGHT_FEATURE = 0x181D, 0x2A9D, 0x2A9E
_MOUTH = 6
# Time stamp supported (bit 0), weight resolution 0.005 kg (value 7 in bits 3-6, WSS §3.2).
_WSS_FEATURES = 0x01 | (7 << 3)


class Thermometer(StoringDevice[Spot]):
    measurement_uuid = TEMPERATURE_MEASUREMENT
    model_number = "HTS-1"
    stream_name = "temp"

    def __init__(self, address: str, name: str = "Thermometer (sim)", *,
                 episodes: Sequence[Episode] = (), **kw: Any) -> None:
        self.episodes = tuple(episodes)
        super().__init__(address, name, **kw)

    def profile_services(self) -> list[Service]:
        mouth = TemperatureType(_MOUTH).to_bytes()
        return [service(HTS, char(TEMPERATURE_MEASUREMENT, Flag.INDICATE),
                        fixed(TEMPERATURE_TYPE, mouth))]

    def plan_day(self, day: datetime, rng: np.random.Generator) -> list[Spot]:
        return temperatures(day, timedelta(days=1), rng, episodes=self.episodes)

    def encode(self, stored: Stored[Spot]) -> bytes:
        return TemperatureMeasurement(Float32.from_value(stored.item.value, 1),
                                      timestamp=DateTime.of(stored.device_time)).to_bytes()


class Scale(StoringDevice[Spot]):
    measurement_uuid = WEIGHT_MEASUREMENT
    model_number = "WSS-1"
    stream_name = "kg"

    def __init__(self, address: str, name: str = "Scale (sim)", *, baseline_kg: float = 78.0,
                 **kw: Any) -> None:
        self.baseline_kg = baseline_kg
        super().__init__(address, name, **kw)

    def profile_services(self) -> list[Service]:
        features = WeightScaleFeature(_WSS_FEATURES).to_bytes()
        return [service(WSS, char(WEIGHT_MEASUREMENT, Flag.INDICATE),
                        fixed(WEIGHT_FEATURE, features))]

    def plan_day(self, day: datetime, rng: np.random.Generator) -> list[Spot]:
        return weights(day, timedelta(days=1), rng, baseline_kg=self.baseline_kg,
                       trend_origin=self.start)

    def encode(self, stored: Stored[Spot]) -> bytes:
        return WeightMeasurement(round(stored.item.value / 0.005),
                                 timestamp=DateTime.of(stored.device_time)).to_bytes()
