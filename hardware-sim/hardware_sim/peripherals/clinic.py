"""Store-only devices for the clinic scenario: many meters, cuffs, thermometers, scales and
spot-check oximeters that connect only to hand over what they stored.

* :class:`SpotCheckOximeter` — a pulse oximeter (PLXS 1.0) that takes spot-checks (PLX
  Spot-Check Measurement 0x2A5E, time-stamped) while nobody listens and indicates the ones not
  yet transferred once a central enables indications, as the thermometer and the scale do (see
  :mod:`.stored`).  A PLXS device with the "spot-check measurement storage" feature serves
  its memory over a RACP instead; the gateway's pulse-oximeter profile declares no RACP for
  0x2A5E yet, so this device does not claim that feature.
* ``record_every`` for every store-only kind (:class:`ClinicThermometer`,
  :class:`ClinicScale`, :class:`ClinicCuff`, :class:`ClinicMeter`, and the oximeter): on top
  of the days of history, a new measurement every so many seconds from the scenario's start —
  time scaled down, so that a test of a few minutes sees records made between two visits and
  can tell how late each one reached the gateway.  Values are the device's own planned
  measurements of the coming days, moved to the earlier times.
* They look for a subscription every 50 ms (``poll_s``), as a real device starts indicating
  within a connection interval or two of the CCCD write; the gateway leaves a store-only
  device once it has been quiet for a moment, so a slow poll would look like "nothing stored".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import numpy as np

from edge_gateway.drivers.profiles.base import DateTime
from edge_gateway.drivers.profiles.ieee11073 import SFloat
from edge_gateway.drivers.profiles.pulse_oximeter import PLXFeatures, PLXSpotCheck

from ..generators import daily_times
from ..peripheral import Flag, Service, char, fixed, service
from .blood_pressure import BloodPressureCuff
from .glucose_meter import GlucoseMeter
from .stored import Stored, StoringDevice
from .thermometer import Scale, Thermometer

PLXS, PLX_SPOT_CHECK, PLX_FEATURES = 0x1822, 0x2A5E, 0x2A60
# Features: measurement status (bit 0), spot-check time stamp (bit 3).
_PLX_FEATURES = 0x0001 | 0x0008
_VALIDATED, _FROM_STORAGE = 1 << 7, 1 << 9  # measurement status bits (PLXS §3.1.1.3)
#: At most this many scaled-down records per device (a long run gets no more).
MAX_EXTRA = 2000

Item = TypeVar("Item")


def every(plan: Sequence[tuple[datetime, Item]], start: datetime, every_s: float | None,
          count: int = MAX_EXTRA) -> list[tuple[datetime, Item]]:
    """``plan`` plus a measurement every ``every_s`` seconds from ``start`` (whole seconds, as
    device clocks keep them), valued as the plan's own measurements after ``start``."""
    if not every_s:
        return list(plan)
    if every_s < 1.0:
        raise ValueError("record_every must be at least 1 s (device clocks count seconds)")
    ahead = [item for t, item in plan if t > start]
    if not ahead:
        return list(plan)
    origin = start.replace(microsecond=0) + timedelta(seconds=1)
    extra: list[tuple[datetime, Item]] = []
    for k in range(count):
        t = origin + timedelta(seconds=round(every_s * (k + 1)))
        moved: Any = dataclasses.replace(ahead[k % len(ahead)], time=t)  # type: ignore[type-var]
        extra.append((t, moved))
    return sorted([*plan, *extra], key=lambda p: p[0])


#: How often the clinic's store-only devices check for a subscriber (see the module doc).
POLL_S = 0.05


class ClinicThermometer(Thermometer):
    poll_s = POLL_S

    def __init__(self, address: str, name: str = "Thermometer (clinic)", *,
                 record_every_s: float | None = None, **kw: Any) -> None:
        self.record_every_s = record_every_s  # before super(): __init__ plans
        super().__init__(address, name, **kw)

    def plan(self) -> list[tuple[datetime, Any]]:
        return every(super().plan(), self.start, self.record_every_s)


class ClinicScale(Scale):
    poll_s = POLL_S

    def __init__(self, address: str, name: str = "Scale (clinic)", *,
                 record_every_s: float | None = None, **kw: Any) -> None:
        self.record_every_s = record_every_s
        super().__init__(address, name, **kw)

    def plan(self) -> list[tuple[datetime, Any]]:
        return every(super().plan(), self.start, self.record_every_s)


class ClinicCuff(BloodPressureCuff):
    poll_s = POLL_S

    def __init__(self, address: str, name: str = "BP cuff (clinic)", *,
                 record_every_s: float | None = None, **kw: Any) -> None:
        self.record_every_s = record_every_s
        super().__init__(address, name, **kw)

    def plan(self) -> list[tuple[datetime, Any]]:
        return every(super().plan(), self.start, self.record_every_s)


class ClinicMeter(GlucoseMeter):
    """A glucose meter (RACP by sequence number) that also measures every ``record_every_s``."""

    def __init__(self, address: str, name: str = "Glucose meter (clinic)", *,
                 record_every_s: float | None = None, **kw: Any) -> None:
        super().__init__(address, name, **kw)
        if record_every_s:
            done, rest = self._plan[: self._planned_until], self._plan[self._planned_until:]
            merged = every([(s.time, s) for s in rest], self.start, record_every_s)
            self._plan = done + [s for _, s in merged]


@dataclasses.dataclass(frozen=True, slots=True)
class OxSpot:
    time: datetime
    spo2: float
    pulse: float


class SpotCheckOximeter(StoringDevice[OxSpot]):
    """Spot-checks at the clinic's morning, noon and evening rounds, indicated on connect."""

    measurement_uuid = PLX_SPOT_CHECK
    poll_s = POLL_S
    model_number = "PLX-SC"
    stream_name = "spotcheck"

    def __init__(self, address: str, name: str = "Spot-check oximeter (clinic)", *,
                 baseline: float = 96.0, pulse_bpm: float = 74.0,
                 record_every_s: float | None = None, **kw: Any) -> None:
        self.baseline = baseline
        self.pulse_bpm = pulse_bpm
        self.record_every_s = record_every_s
        super().__init__(address, name, **kw)

    def profile_services(self) -> list[Service]:
        features = PLXFeatures(_PLX_FEATURES, measurement_status_support=_VALIDATED
                               | _FROM_STORAGE).to_bytes()
        return [service(PLXS, char(PLX_SPOT_CHECK, Flag.INDICATE),
                        fixed(PLX_FEATURES, features))]

    def plan_day(self, day: datetime, rng: np.random.Generator) -> list[OxSpot]:
        out = []
        for hour in (8.5, 13.0, 18.5):
            for t in daily_times(day, timedelta(days=1), hour, rng, jitter_min=40.0):
                spo2 = float(np.clip(round(rng.normal(self.baseline, 1.3)), 80, 100))
                out.append(OxSpot(t, spo2, float(round(rng.normal(self.pulse_bpm, 7.0)))))
        return sorted(out, key=lambda s: s.time)

    def plan(self) -> list[tuple[datetime, OxSpot]]:
        return every(super().plan(), self.start, self.record_every_s)

    def encode(self, stored: Stored[OxSpot]) -> bytes:
        m = stored.item
        return PLXSpotCheck(SFloat.from_value(m.spo2), SFloat.from_value(m.pulse),
                            timestamp=DateTime.of(stored.device_time),
                            measurement_status=_VALIDATED | _FROM_STORAGE).to_bytes()


def made_between(device: object, first: datetime, last: datetime) -> list[datetime]:
    """When a store-only device takes (took) its measurements in [first, last] (true time)
    — what a test compares with what reached the gateway."""
    if isinstance(device, GlucoseMeter):
        times = [s.time for s in device._plan]
    elif isinstance(device, StoringDevice):
        times = [t for t, _ in device._plan]
    else:
        raise TypeError(f"{type(device).__name__} stores no records")
    return [t for t in times if first <= t <= last]
