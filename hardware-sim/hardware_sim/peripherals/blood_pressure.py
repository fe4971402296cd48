"""A blood-pressure cuff with two users (BLS 1.0): stored measurements indicated on connect.

Measurements come from :func:`~hardware_sim.generators.bp_measurements` — two users, morning
and evening, about 14 days stored — each with the User ID field (BLS §3.1.1.5) so the gateway
can assign the slot to a patient, the device's time stamp and the measurement status (body
movement, irregular pulse).  Pairing is required, as on real cuffs that store personal data.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from edge_gateway.drivers.profiles.base import DateTime
from edge_gateway.drivers.profiles.blood_pressure import (
    BloodPressureFeature,
    BloodPressureMeasurement,
)
from edge_gateway.drivers.profiles.ieee11073 import SFloat

from ..generators import DEFAULT_BP_USERS, BpMeasurement, BpUser, bp_measurements
from ..peripheral import Flag, Service, char, fixed, service
from .stored import Stored, StoringDevice

BLS = 0x1810
BP_MEASUREMENT = 0x2A35
BP_FEATURE = 0x2A49
# Body movement, irregular pulse detection, multiple bond (BLS §3.3).
_FEATURES = 0x0001 | 0x0004 | 0x0020
_BODY_MOVEMENT, _IRREGULAR_PULSE = 0x0001, 0x0004


class BloodPressureCuff(StoringDevice[BpMeasurement]):
    measurement_uuid = BP_MEASUREMENT
    model_number = "BPM-2U"
    stream_name = "bp"

    def __init__(self, address: str, name: str = "BP cuff (sim)", *,
                 users: Sequence[BpUser] = DEFAULT_BP_USERS, **kw: Any) -> None:
        self.users = tuple(users)
        kw.setdefault("requires_pairing", True)
        super().__init__(address, name, **kw)

    def profile_services(self) -> list[Service]:
        return [service(
            BLS,
            char(BP_MEASUREMENT, Flag.INDICATE, Flag.ENCRYPT_READ),
            fixed(BP_FEATURE, BloodPressureFeature(_FEATURES).to_bytes()),
        )]

    def plan_day(self, day: datetime, rng: np.random.Generator) -> list[BpMeasurement]:
        return bp_measurements(day, timedelta(days=1), rng, self.users)

    def encode(self, stored: Stored[BpMeasurement]) -> bytes:
        m = stored.item
        status = (_BODY_MOVEMENT if m.body_movement else 0) | (
            _IRREGULAR_PULSE if m.irregular_pulse else 0)
        return BloodPressureMeasurement(
            systolic=SFloat.from_value(m.systolic), diastolic=SFloat.from_value(m.diastolic),
            mean_arterial_pressure=SFloat.from_value(m.mean_arterial),
            timestamp=DateTime.of(stored.device_time), pulse_rate=SFloat.from_value(m.pulse),
            user_id=m.user, measurement_status=status,
        ).to_bytes()
