"""A blood-glucose meter: Glucose service (GLS 1.0) with stored records and a working RACP.

The meter holds every finger-stick it took (about 14 days by default, from
:func:`~hardware_sim.generators.glucose_spots`) and grows as the scenario's time passes, so a
gateway that was away finds a backlog.  Records carry a sequence number (GLS §3.106.2: it
increments by one per record and restarts only when the device is reset), the device's base
time, and a Glucose Measurement Context with the meal (GLS §3.107).  Nothing is deleted
unless the central asks through the RACP.

Pairing is required (the Glucose service mandates security, GLS §5.1); ``passkey`` makes
pairing ask for the six digits the meter "shows".
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from edge_gateway.drivers.profiles.base import DateTime
from edge_gateway.drivers.profiles.glucose import (
    GlucoseFeature,
    GlucoseMeasurement,
    GlucoseMeasurementContext,
)
from edge_gateway.drivers.profiles.ieee11073 import SFloat

from ..generators import GlucoseSpot, glucose_spots, stream
from ..peripheral import Flag, Link, Service, char, fixed, service
from .base import PLAN_AHEAD, SimPeripheral
from .racp_server import RACP, RacpServer

GLS = 0x1808
GLUCOSE_MEASUREMENT = 0x2A18
GLUCOSE_CONTEXT = 0x2A34
GLUCOSE_FEATURE = 0x2A51
_MEAL_CODES = {"preprandial": 1, "postprandial": 2, "fasting": 3, "casual": 4, "bedtime": 5}
_CAPILLARY_WHOLE_BLOOD, _FINGER, _SELF = 1, 1, 1
# Features: low battery, malfunction, sample size, strip insertion, strip type, high/low,
# temperature detection; no multiple bond (bit 10).
_FEATURES = 0x007F


@dataclass(frozen=True, slots=True)
class StoredGlucose:
    sequence: int
    taken_at: datetime  # true time (aware UTC)
    base_time: datetime  # the device clock's reading then (naive)
    mg_dl: float
    meal: str

    def measurement(self) -> GlucoseMeasurement:
        # kg/L: 100 mg/dL = 1e-3 kg/L; SFLOAT carries it exactly as mantissa × 10^-5.
        return GlucoseMeasurement(
            self.sequence, DateTime.of(self.base_time), time_offset=0,
            concentration=SFloat(round(self.mg_dl), -5), type=_CAPILLARY_WHOLE_BLOOD,
            sample_location=_FINGER, sensor_status=0, context_follows=True,
        )

    def context(self) -> GlucoseMeasurementContext:
        return GlucoseMeasurementContext(self.sequence, meal=_MEAL_CODES.get(self.meal, 4),
                                         tester=_SELF, health=0x0F)


#: When the simulated meters came into use (their sequence numbers count from here).
IN_USE_SINCE = datetime(2026, 1, 1, tzinfo=UTC)


class GlucoseMeter(SimPeripheral):
    model_number = "GLS-1"

    def __init__(self, address: str, name: str = "Glucose meter (sim)", *,
                 history: timedelta = timedelta(days=14), passkey: int | None = None,
                 new_record_every_s: float | None = None, pace_s: float = 0.0,
                 in_use_since: datetime = IN_USE_SINCE, **kw: Any) -> None:
        self.history = history
        self.new_record_every_s = new_record_every_s
        self.next_sequence = 0
        self.stored: list[StoredGlucose] = []
        self._plan: list[GlucoseSpot] = []
        self._planned_until = 0
        self.racp = RacpServer[StoredGlucose](
            records=lambda: self.stored, key=lambda r: r.sequence,
            user_time=lambda r: r.base_time, send_records=self._send_records,
            remove=self._remove, pace_s=pace_s,
        )
        kw.setdefault("requires_pairing", True)
        super().__init__(address, name, passkey=passkey, **kw)
        # Sequence numbers count every record since the meter came into use; its memory
        # holds the last ``history`` of them (older ones were overwritten, as in a ring).
        for day, rng in self.days(min(in_use_since, self.start - history),
                                  self.start + PLAN_AHEAD, "spots"):
            self._plan += glucose_spots(day, timedelta(days=1), rng)
        kept = self.start - history
        while self._planned_until < len(self._plan) and self._plan[self._planned_until].time < kept:
            self._planned_until += 1
        self.next_sequence = self._planned_until & 0xFFFF
        self.catch_up()

    def profile_services(self) -> list[Service]:
        return [service(
            GLS,
            char(GLUCOSE_MEASUREMENT, Flag.NOTIFY, Flag.ENCRYPT_READ),
            char(GLUCOSE_CONTEXT, Flag.NOTIFY, Flag.ENCRYPT_READ),
            fixed(GLUCOSE_FEATURE, GlucoseFeature(_FEATURES).to_bytes()),
            char(RACP, Flag.INDICATE, Flag.ENCRYPT_WRITE,
                 on_write=lambda data: self.racp.on_write(data)),
        )]

    # -- the memory ------------------------------------------------------------------------------

    def add_record(self, taken_at: datetime, mg_dl: float, meal: str = "casual") -> StoredGlucose:
        """The patient measured: store a record with the next sequence number."""
        rec = StoredGlucose(self.next_sequence, taken_at, self.device_time(taken_at), mg_dl, meal)
        self.next_sequence = (self.next_sequence + 1) & 0xFFFF  # uint16, wraps (GLS §3.106.2)
        self.stored.append(rec)
        return rec

    def catch_up(self) -> int:
        """Store every planned finger-stick whose time has come; returns how many."""
        now = self.now()
        n = 0
        while self._planned_until < len(self._plan) and self._plan[self._planned_until].time <= now:
            spot = self._plan[self._planned_until]
            self.add_record(spot.time, spot.mg_dl, spot.meal)
            self._planned_until += 1
            n += 1
        return n

    def on_reboot(self) -> None:
        # A reset meter forgets its memory and counts from zero again.
        self.stored.clear()
        self.next_sequence = 0

    def _remove(self, chosen: Sequence[StoredGlucose]) -> None:
        gone = {r.sequence for r in chosen}
        self.stored = [r for r in self.stored if r.sequence not in gone]

    def _send_records(self, link: Link, batch: Sequence[StoredGlucose]) -> None:
        for rec in batch:
            self.send(link, GLUCOSE_MEASUREMENT, rec.measurement().to_bytes())
            self.send(link, GLUCOSE_CONTEXT, rec.context().to_bytes())

    # -- connection ------------------------------------------------------------------------------

    def on_connect(self, link: Link) -> None:
        self.catch_up()
        self.racp.reset(link)

    def on_disconnect(self) -> None:
        self.racp.reset(None)

    async def run(self, link: Link) -> None:
        while True:
            await asyncio.sleep(self.new_record_every_s or 1.0)
            self.catch_up()
            if self.new_record_every_s:
                # Demo liveliness: the "patient" measures now and then while connected.
                rng = stream(self.seed, f"{self.name}:live:{self.next_sequence}")
                self.add_record(self.now(), float(round(rng.normal(130.0, 25.0))), "casual")
