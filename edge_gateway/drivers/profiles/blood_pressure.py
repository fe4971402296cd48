"""Blood Pressure profile codecs (service 0x1810).

Specifications: Blood Pressure Service v1.1 (BLS) §3.1–3.3 and the GATT Specification
Supplement "Blood Pressure Measurement", "Intermediate Cuff Pressure", "Blood Pressure Feature",
"Blood Pressure Record" (BLS 1.1 stored records, fetched over the RACP).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Self

from edge_gateway.drivers.profiles.base import (
    DateTime,
    Feature16,
    Profile,
    Racp,
    Reader,
    ReadingContext,
    bits,
    json_tail,
    measurement,
    p16,
    reserved_values,
    timed_key,
    ts_json,
)
from edge_gateway.drivers.profiles.e2e_crc import crc_ok
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
from edge_gateway.errors import MalformedPayload
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
    return out


_RANGE_CHECK = reserved_values("pulse rate range detection value", (0, 1, 2),
                               "BLS §3.1.1.7 / GSS Measurement Status bits 3-4: 3 RFU")


def _status_check(status: int) -> str | None:
    """Bits 3–4 of Measurement Status are a value (0 in range, 1 above, 2 below, 3 reserved
    for future use): a reserved *value* is malformed.  The other unassigned bits are RFU
    bits, which a receiver ignores (Core Vol 1 Part E §2.9): kept as ``bit<n>``."""
    return _RANGE_CHECK((status >> 3) & 3)


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
        Field("measurement_status", "measurement status", U16, _F_STATUS,
              check=_status_check),
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
    return _measurement_readings(m, ctx)


def _measurement_readings(m: BloodPressureMeasurement, ctx: ReadingContext,
                          key: str | None = None, more: dict[str, Any] | None = None,
                          ) -> list[Reading]:
    user = None if m.user_id in (None, 255) else m.user_id
    if key is None or m.timestamp is not None:
        key = timed_key(m.timestamp, ctx.received_at, user)
    dev = None if m.timestamp is None else m.timestamp.to_datetime()
    extra: dict[str, Any] = dict(more or {})
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


_SEG_FIRST = 0x01
_SEG_LAST = 0x02
_BPM_UUID = 0x2A35


@dataclass(frozen=True, slots=True)
class BloodPressureRecord:
    """Blood Pressure Record 0x2B36 (BLS 1.1 §3.4, GSS "Blood Pressure Record").

    Layout: segmentation header (uint8: bit 0 first segment, bit 1 last segment, bits 2–7
    rolling segment counter); sequence number (uint16, per user, wraps after 65535); UUID of
    the recorded characteristic (uint16, 0x2A35 for a Blood Pressure Measurement); the
    recorded characteristic's value (or a part of it); E2E-CRC (uint16, 0 or 2 octets, over
    the record, when the cuff supports it: Blood Pressure Feature bit 6).

    The recorded value of a whole (first-and-last-segment) Blood Pressure Measurement record
    is decoded with its own flags, which fix its length, so two octets after it are the
    E2E-CRC and anything else is malformed.  A segment of a longer record, or a record of a
    characteristic we have no codec for, keeps its recorded bytes as they came.
    """

    characteristic: ClassVar[str] = "2b36"
    name: ClassVar[str] = "Blood Pressure Record"

    segmentation: int
    sequence_number: int
    uuid: int
    recorded: bytes
    crc: int | None = None
    crc_ok: bool | None = None

    @property
    def complete(self) -> bool:
        """A whole record in one notification (first and last segment)."""
        return self.segmentation & (_SEG_FIRST | _SEG_LAST) == _SEG_FIRST | _SEG_LAST

    @property
    def measurement(self) -> BloodPressureMeasurement | None:
        """The recorded Blood Pressure Measurement of a whole record, else None."""
        if not self.complete or self.uuid != _BPM_UUID:
            return None
        return BloodPressureMeasurement.from_bytes(self.recorded)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        r = Reader(cls.characteristic, raw)
        seg = r.u8("segmentation header")
        seq = r.u16("sequence number")
        uuid = r.u16("UUID")
        start = r.pos
        if seg & (_SEG_FIRST | _SEG_LAST) != _SEG_FIRST | _SEG_LAST or uuid != _BPM_UUID:
            return cls(seg, seq, uuid, r.rest())
        # The recorded measurement, read in place so errors name their real offset.
        flags = r.u8("recorded flags")
        BloodPressureMeasurement.LAYOUT.read_fields(r, flags)
        end = r.pos
        crc = r.u16("E2E-CRC") if r.left >= 2 else None
        r.end()
        return cls(seg, seq, uuid, bytes(raw[start:end]), crc, crc_ok(raw, 0, end, crc))

    def to_bytes(self) -> bytes:
        out = bytes((self.segmentation & 0xFF,)) + p16(self.sequence_number) + p16(self.uuid)
        out += self.recorded
        return out if self.crc is None else out + p16(self.crc)

    def to_json(self) -> dict[str, Any]:
        m = self.measurement
        return {
            "first_segment": bool(self.segmentation & _SEG_FIRST),
            "last_segment": bool(self.segmentation & _SEG_LAST),
            "rolling_segment_counter": self.segmentation >> 2,
            "sequence_number": self.sequence_number,
            "recorded_uuid": f"{self.uuid:04x}",
            "recorded": m.to_json() if m is not None else self.recorded.hex(),
            "e2e_crc": self.crc,
            "crc_ok": self.crc_ok,
        }


@measurement
def record_to_readings(rec: BloodPressureRecord, ctx: ReadingContext) -> list[Reading]:
    """A whole record of a Blood Pressure Measurement gives the readings the live measurement
    gives — the same kinds, characteristic ``2a35`` and record key, so a measurement that
    came both live and as a record is stored once — plus ``record_sequence`` in ``extra``;
    a record without a time stamp is keyed ``[u<id>:]seq:<n>``.  A segment of a longer
    record gives none; an E2E-CRC mismatch makes the frame malformed."""
    m = rec.measurement
    if m is None:
        return []
    if rec.crc_ok is False:
        raise MalformedPayload(ctx.characteristic, 5 + len(rec.recorded),
                               "E2E-CRC mismatch", rec.to_bytes())
    user = None if m.user_id in (None, 255) else m.user_id
    key = f"seq:{rec.sequence_number}" if user is None else f"u{user}:seq:{rec.sequence_number}"
    return _measurement_readings(m, replace(ctx, characteristic=f"{_BPM_UUID:04x}"), key,
                                 {"record_sequence": rec.sequence_number})


class BloodPressureFeature(Feature16, uuid="2a49", label="Blood Pressure Feature",
                           bits=FEATURE_BITS):
    """Blood Pressure Feature 0x2A49 (BLS §3.3): 16 feature bits."""

    __slots__ = ()


PROFILE = Profile(
    name="blood_pressure", service="1810",
    codecs=(BloodPressureMeasurement, IntermediateCuffPressure, BloodPressureFeature,
            BloodPressureRecord, RecordAccessControlPoint),
    measurements={"2a35": to_readings, "2b36": record_to_readings},
    subscribe=(
        "2a35",  # Blood Pressure Measurement (indicate; stored ones arrive on connect)
        "2a36",  # Intermediate Cuff Pressure (notify)
        "2b36",  # Blood Pressure Record (BLS 1.1, with RACP)
    ),
    read_once=("2a49",),
    streams=("2a36",),
    needs_bond=True,  # BLS §5.1: stored measurements go to a bonded collector only
    racp=Racp(records="2b36", identity="recorded"),
)
