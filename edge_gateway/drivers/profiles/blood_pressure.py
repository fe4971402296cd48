"""Blood Pressure profile codecs (service 0x1810).

Specifications: Blood Pressure Service v1.1 (BLS) §3.1–3.3 and the GATT Specification
Supplement "Blood Pressure Measurement", "Intermediate Cuff Pressure", "Blood Pressure Feature".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from edge_gateway.drivers.profiles.base import (
    DateTime,
    Feature16,
    Profile,
    Racp,
    ReadingContext,
    bits,
    json_tail,
    measurement,
    timed_key,
    ts_json,
)
from edge_gateway.drivers.profiles.ieee11073 import SFloat, value_of
from edge_gateway.drivers.profiles.layout import (
    DATE_TIME,
    SFLOAT,
    U8,
    U16,
    Field,
    Layout,
    TableCodec,
)
from edge_gateway.drivers.profiles.racp import RecordAccessControlPoint
from edge_gateway.reading import Reading

_F_KPA = 0x01
_F_TIME = 0x02
_F_PULSE = 0x04
_F_USER = 0x08
_F_STATUS = 0x10
_F_RESERVED = 0xE0

STATUS_BITS = {0: "body_movement_detected", 1: "cuff_too_loose",
               2: "irregular_pulse_detected", 5: "improper_measurement_position"}
FEATURE_BITS = {0: "body_movement_detection", 1: "cuff_fit_detection",
                2: "irregular_pulse_detection", 3: "pulse_rate_range_detection",
                4: "measurement_position_detection", 5: "multiple_bond",
                6: "e2e_crc", 7: "user_data_service", 8: "user_facing_time"}


def measurement_status_json(status: int) -> dict[str, bool]:
    """Measurement Status (BLS §3.1.1.7) as booleans; bits 3–4 are a 2-bit range code."""
    out = bits(status & ~0x18, STATUS_BITS)
    rng = (status >> 3) & 3
    out["pulse_rate_exceeds_upper_limit"] = rng == 1
    out["pulse_rate_below_lower_limit"] = rng == 2
    if rng == 3:
        out["pulse_rate_range_reserved"] = True
    return out


@dataclass(frozen=True, slots=True)
class BloodPressureMeasurement(TableCodec):
    """Blood Pressure Measurement 0x2A35 (BLS §3.1, GSS "Blood Pressure Measurement").

    Layout: flags (uint8: bit 0 units 0=mmHg 1=kPa, bit 1 time stamp, bit 2 pulse rate,
    bit 3 user id, bit 4 measurement status); systolic, diastolic, mean arterial pressure
    (SFLOAT each); time stamp (Date Time, 7); pulse rate (SFLOAT /min); user id (uint8,
    255 = unknown user); measurement status (16 bits).
    Intermediate Cuff Pressure (0x2A36, BLS §3.2) has the same layout with the current cuff
    pressure in the systolic field and NaN in the other two: see :class:`IntermediateCuffPressure`.
    """

    characteristic: ClassVar[str] = "2a35"
    name: ClassVar[str] = "Blood Pressure Measurement"
    LAYOUT: ClassVar[Layout] = Layout((
        Field("systolic", "systolic", SFLOAT),
        Field("diastolic", "diastolic", SFLOAT),
        Field("mean_arterial_pressure", "mean arterial pressure", SFLOAT),
        Field("timestamp", "time stamp", DATE_TIME, _F_TIME),
        Field("pulse_rate", "pulse rate", SFLOAT, _F_PULSE),
        Field("user_id", "user id", U8, _F_USER),
        Field("measurement_status", "measurement status", U16, _F_STATUS),
    ), {"kpa": _F_KPA}, _F_RESERVED)

    systolic: SFloat
    diastolic: SFloat
    mean_arterial_pressure: SFloat
    kpa: bool = False
    timestamp: DateTime | None = None
    pulse_rate: SFloat | None = None
    user_id: int | None = None
    measurement_status: int | None = None
    reserved_flags: int = 0

    @property
    def unit(self) -> str:
        return "kPa" if self.kpa else "mmHg"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "systolic": self.systolic.value,
            "diastolic": self.diastolic.value,
            "mean_arterial_pressure": self.mean_arterial_pressure.value,
            "pressure_unit": self.unit,
            "timestamp": ts_json(self.timestamp),
            "pulse_rate_bpm": value_of(self.pulse_rate),
            "user_id": self.user_id,
            "measurement_status": None if self.measurement_status is None
            else measurement_status_json(self.measurement_status),
        }
        return json_tail(out, self.reserved_flags, raw_timestamp=self.timestamp,
                         systolic=self.systolic, diastolic=self.diastolic,
                         mean_arterial_pressure=self.mean_arterial_pressure,
                         pulse_rate=self.pulse_rate)


@dataclass(frozen=True, slots=True)
class IntermediateCuffPressure(BloodPressureMeasurement):
    """Intermediate Cuff Pressure 0x2A36 (BLS §3.2): the Blood Pressure Measurement layout;
    the current cuff pressure is in ``systolic``, diastolic and MAP are NaN."""

    characteristic: ClassVar[str] = "2a36"
    name: ClassVar[str] = "Intermediate Cuff Pressure"

    def to_json(self) -> dict[str, Any]:
        out = BloodPressureMeasurement.to_json(self)
        out["cuff_pressure"] = self.systolic.value
        return out


@measurement
def to_readings(m: BloodPressureMeasurement, ctx: ReadingContext) -> list[Reading]:
    """``bp_systolic``, ``bp_diastolic``, ``bp_map`` (mmHg or kPa as flagged) and
    ``pulse_rate`` (/min) sharing one record key: ``[u<id>:]dev:<time stamp>`` or ``rx:``.
    Intermediate cuff pressures are progress, not results: they give no readings."""
    if isinstance(m, IntermediateCuffPressure):
        return []
    user = None if m.user_id in (None, 255) else m.user_id
    key = timed_key(m.timestamp, ctx.received_at, user)
    dev = None if m.timestamp is None else m.timestamp.to_datetime()
    extra: dict[str, Any] = {}
    if m.user_id is not None:
        extra["user_id"] = m.user_id
    if m.measurement_status is not None:
        extra["measurement_status"] = m.measurement_status
    out = [ctx.mder(kind, v, m.unit, record_key=key, device_time=dev, extra=extra)
           for kind, v in (("bp_systolic", m.systolic), ("bp_diastolic", m.diastolic),
                           ("bp_map", m.mean_arterial_pressure))]
    if m.pulse_rate is not None:
        out.append(ctx.mder("pulse_rate", m.pulse_rate, "/min", record_key=key,
                            device_time=dev, extra=extra))
    return out


class BloodPressureFeature(Feature16, uuid="2a49", label="Blood Pressure Feature",
                           bits=FEATURE_BITS):
    """Blood Pressure Feature 0x2A49 (BLS §3.3): 16 feature bits."""

    __slots__ = ()


PROFILE = Profile(
    name="blood_pressure", service="1810",
    codecs=(BloodPressureMeasurement, IntermediateCuffPressure, BloodPressureFeature,
            RecordAccessControlPoint),
    measurements={"2a35": to_readings},
    subscribe=(
        "2a35",  # Blood Pressure Measurement (indicate; stored ones arrive on connect)
        "2a36",  # Intermediate Cuff Pressure (notify)
        "2b36",  # Blood Pressure Record (BLS 1.1, with RACP); kept raw, no codec yet
    ),
    read_once=("2a49",),
    streams=("2a36",),
    needs_bond=True,  # BLS §5.1: stored measurements go to a bonded collector only
    racp=Racp(records="2b36", identity="recorded"),
)
