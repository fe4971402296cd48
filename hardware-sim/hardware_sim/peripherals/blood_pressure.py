"""A blood-pressure cuff with two users: BLS 1.0 (stored measurements indicated on connect) or,
with ``records=True``, BLS 1.1 (stored measurements kept as Blood Pressure Records, 0x2B36,
fetched over the Record Access Control Point).

Measurements come from :func:`~hardware_sim.generators.bp_measurements` — two users, morning
and evening, about 14 days stored — each with the User ID field (BLS §3.1.1.5) so the gateway
can assign the slot to a patient, the device's time stamp and the measurement status (body
movement, irregular pulse).  Pairing is required, as on real cuffs that store personal data.

BLS 1.1 mode: every measurement is stored as a record with a sequence number (uint16, wraps
after 65535); the cuff keeps one counter for both users (GSS "Blood Pressure Record" counts per
user; one counter keeps every record's number unique on a cuff without the User Data Service).
A record is a whole measurement in one notification (segmentation header 0x03).  While a
central is connected, a new measurement is indicated live on 0x2A35 and stored as a record;
the backlog is only handed out over the RACP (filter type 1 = sequence number).
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
    BloodPressureRecord,
)
from edge_gateway.drivers.profiles.ieee11073 import SFloat

from ..generators import DEFAULT_BP_USERS, BpMeasurement, BpUser, bp_measurements
from ..peripheral import Flag, Link, Service, char, fixed, service
from .racp_server import RACP, RacpServer
from .stored import Stored, StoringDevice

BLS = 0x1810
BP_MEASUREMENT = 0x2A35
BP_FEATURE = 0x2A49
BP_RECORD = 0x2B36
# Body movement, irregular pulse detection, multiple bond (BLS §3.3).
_FEATURES = 0x0001 | 0x0004 | 0x0020
_BODY_MOVEMENT, _IRREGULAR_PULSE = 0x0001, 0x0004
_WHOLE_RECORD = 0x03  # segmentation header: first and last segment, counter 0


class BloodPressureCuff(StoringDevice[BpMeasurement]):
    measurement_uuid = BP_MEASUREMENT
    model_number = "BPM-2U"
    stream_name = "bp"

    def __init__(self, address: str, name: str = "BP cuff (sim)", *,
                 users: Sequence[BpUser] = DEFAULT_BP_USERS, records: bool = False,
                 first_sequence: int = 0, **kw: Any) -> None:
        self.users = tuple(users)
        self.records = records
        #: The sequence number of ``stored[0]`` (records mode); counts on past 65535 mod 2^16.
        self.first_sequence = first_sequence
        self.racp = RacpServer[int](
            records=self._record_indices, key=lambda i: self.sequence_of(i) & 0xFFFF,
            user_time=lambda i: self.stored[i].device_time,
            send_records=self._send_records, remove=self._remove)
        kw.setdefault("requires_pairing", True)
        super().__init__(address, name, **kw)

    def profile_services(self) -> list[Service]:
        chars = [
            char(BP_MEASUREMENT, Flag.INDICATE, Flag.ENCRYPT_READ),
            fixed(BP_FEATURE, BloodPressureFeature(_FEATURES).to_bytes()),
        ]
        if self.records:
            chars += [
                char(BP_RECORD, Flag.NOTIFY, Flag.ENCRYPT_READ),
                char(RACP, Flag.INDICATE, Flag.ENCRYPT_WRITE,
                     on_write=lambda data: self.racp.on_write(data)),
            ]
        return [service(BLS, *chars)]

    def plan_day(self, day: datetime, rng: np.random.Generator) -> list[BpMeasurement]:
        return bp_measurements(day, timedelta(days=1), rng, self.users)

    def measurement(self, stored: Stored[BpMeasurement]) -> BloodPressureMeasurement:
        m = stored.item
        status = (_BODY_MOVEMENT if m.body_movement else 0) | (
            _IRREGULAR_PULSE if m.irregular_pulse else 0)
        return BloodPressureMeasurement(
            systolic=SFloat.from_value(m.systolic), diastolic=SFloat.from_value(m.diastolic),
            mean_arterial_pressure=SFloat.from_value(m.mean_arterial),
            timestamp=DateTime.of(stored.device_time), pulse_rate=SFloat.from_value(m.pulse),
            user_id=m.user, measurement_status=status,
        )

    def encode(self, stored: Stored[BpMeasurement]) -> bytes:
        return self.measurement(stored).to_bytes()

    # -- BLS 1.1 records ---------------------------------------------------------------------------

    def sequence_of(self, index: int) -> int:
        """The (unwrapped) sequence number of ``stored[index]``; on the air it is mod 2^16."""
        return self.first_sequence + index

    def record(self, index: int) -> BloodPressureRecord:
        m = self.measurement(self.stored[index]).to_bytes()
        return BloodPressureRecord(_WHOLE_RECORD, self.sequence_of(index) & 0xFFFF,
                                   BP_MEASUREMENT, m)

    def _record_indices(self) -> list[int]:
        return list(range(len(self.stored)))

    def _send_records(self, link: Link, batch: Sequence[int]) -> None:
        for i in batch:
            self.send(link, BP_RECORD, self.record(i).to_bytes())

    def _remove(self, chosen: Sequence[int]) -> None:
        # Deleting shifts the indices; keep the numbering by moving what stays to the end.
        gone = set(chosen)
        if gone and min(gone) == 0 and gone == set(range(len(gone))):
            self.first_sequence += len(gone)
            self.stored = self.stored[len(gone):]
            self.transferred = max(0, self.transferred - len(gone))
        # Deleting from the middle is not offered by this cuff (RACP answers success).

    def on_connect(self, link: Link) -> None:
        if self.records:
            self.catch_up()
            # The backlog is for the RACP; only what is measured from now on is indicated.
            self.transferred = len(self.stored)
            self.racp.reset(link)

    def on_disconnect(self) -> None:
        self.racp.reset(None)

    def on_reboot(self) -> None:
        super().on_reboot()
        self.first_sequence = 0
