"""Glucose profile codecs (service 0x1808).

Specifications: Glucose Service v1.0.1 (GLS) §3.106–3.109 of the GATT Specification Supplement
("Glucose Measurement", "Glucose Measurement Context", "Glucose Feature") and GLS §3.4 with
the GSS "Record Access Control Point" (RACP, in racp.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from edge_gateway.drivers.profiles.base import (
    SAMPLE_TYPES,
    DateTime,
    Feature16,
    Profile,
    Racp,
    ReadingContext,
    json_tail,
    measurement,
    opt_bits,
    opt_name,
    reserved_values,
)
from edge_gateway.drivers.profiles.ieee11073 import SFloat, format_number, value_of
from edge_gateway.drivers.profiles.layout import (
    DATE_TIME,
    NIBBLES,
    S16,
    SFLOAT,
    U8,
    U16,
    Field,
    Layout,
    TableCodec,
)
from edge_gateway.drivers.profiles.racp import RecordAccessControlPoint
from edge_gateway.reading import Reading
from edge_gateway.units import MGDL_PER_MMOLL

SAMPLE_LOCATIONS = {1: "finger", 2: "alternate_site_test", 3: "earlobe",
                    4: "control_solution", 15: "not_available"}
SENSOR_STATUS_BITS = {
    0: "device_battery_low", 1: "sensor_malfunction", 2: "sample_size_insufficient",
    3: "strip_insertion_error", 4: "strip_type_incorrect", 5: "result_too_high",
    6: "result_too_low", 7: "temperature_too_high", 8: "temperature_too_low",
    9: "read_interrupted", 10: "general_device_fault", 11: "time_fault",
}



def _type_location_check(v: tuple[int, int]) -> str | None:
    """GSS "Glucose Measurement": type 0 and 11–15, sample location 0 and 5–14 are reserved
    for future use (Core Vol 1 Part E §2.9: reject the structure)."""
    typ, loc = v
    if typ not in SAMPLE_TYPES:
        return f"type {typ} is reserved for future use (GSS Glucose Measurement: 0, 11-15 RFU)"
    if loc not in SAMPLE_LOCATIONS:
        return (f"sample location {loc} is reserved for future use "
                "(GSS Glucose Measurement: 0, 5-14 RFU)")
    return None


_F_OFFSET = 0x01
_F_CONC = 0x02
_F_MOL = 0x04
_F_STATUS = 0x08
_F_CONTEXT = 0x10
_F_RESERVED = 0xE0


def _scaled(v: SFloat, shift: int) -> float | None:
    """``v × 10^shift`` exactly (kg/L → mg/dL is 10^5, mol/L → mmol/L is 10^3)."""
    if v.value is None:
        return None
    return float(format_number(v.mantissa, v.exponent + shift))


@dataclass(frozen=True, slots=True)
class GlucoseMeasurement(TableCodec):
    """Glucose Measurement 0x2A18 (GLS §3.106 of GSS).

    Layout: flags (uint8); sequence number (uint16); base time (Date Time, 7); time offset
    (sint16 minutes, flag bit 0); concentration (SFLOAT in kg/L, or mol/L when flag bit 2)
    with type (low nibble) and sample location (high nibble) in one uint8 (flag bit 1);
    sensor status annunciation (16 bits, flag bit 3).  Flag bit 4: a Glucose Measurement
    Context with the same sequence number follows.
    """

    characteristic: ClassVar[str] = "2a18"
    name: ClassVar[str] = "Glucose Measurement"
    LAYOUT: ClassVar[Layout] = Layout((
        Field("sequence_number", "sequence number", U16),
        Field("base_time", "base time", DATE_TIME),
        Field("time_offset", "time offset", S16, _F_OFFSET),
        # Concentration and type/sample location share bit 1 (absent: type and location 0).
        Field("concentration", "glucose concentration", SFLOAT, _F_CONC),
        Field(("type", "sample_location"), "type/sample location", NIBBLES, _F_CONC,
              check=_type_location_check),
        Field("sensor_status", "sensor status annunciation", U16, _F_STATUS),
    ), {"mol_per_l": _F_MOL, "context_follows": _F_CONTEXT}, _F_RESERVED)

    sequence_number: int
    base_time: DateTime
    time_offset: int | None = None
    concentration: SFloat | None = None
    mol_per_l: bool = False
    type: int = 0
    sample_location: int = 0
    sensor_status: int | None = None
    context_follows: bool = False
    reserved_flags: int = 0

    def device_time(self) -> datetime | None:
        """Base time + time offset: the device's own (naive) clock at the measurement."""
        base = self.base_time.to_datetime()
        if base is None:
            return None
        try:
            return base + timedelta(minutes=self.time_offset or 0)
        except OverflowError:  # e.g. base 9999-12-31 + 22 days: not a real time
            return None

    @property
    def glucose_mg_dl(self) -> float | None:
        if self.concentration is None or self.mol_per_l:
            return None
        return _scaled(self.concentration, 5)

    @property
    def glucose_mmol_l(self) -> float | None:
        if self.concentration is None or not self.mol_per_l:
            return None
        return _scaled(self.concentration, 3)

    def to_json(self) -> dict[str, Any]:
        has_conc = self.concentration is not None
        out: dict[str, Any] = {
            "sequence_number": self.sequence_number,
            "base_time": self.base_time.to_json(),
            "time_offset_min": self.time_offset,
            "glucose_mg_dl": self.glucose_mg_dl,
            "glucose_mmol_l": self.glucose_mmol_l,
            "type": opt_name(self.type if has_conc else None, SAMPLE_TYPES),
            "sample_location": opt_name(self.sample_location if has_conc else None,
                                        SAMPLE_LOCATIONS),
            "sensor_status": opt_bits(self.sensor_status, SENSOR_STATUS_BITS),
            "context_follows": self.context_follows,
        }
        dev = self.device_time()
        out["measurement_time"] = None if dev is None else dev.isoformat()
        return json_tail(out, self.reserved_flags, glucose=self.concentration)


@measurement
def to_readings(m: GlucoseMeasurement, ctx: ReadingContext) -> list[Reading]:
    """One ``glucose`` reading in mg/dL keyed ``seq:<n>``.

    mol/L values are converted (×1000 → mmol/L, ×18.016 → mg/dL) and the original kept in
    ``extra``; a measurement without a concentration gives no reading.
    """
    if m.concentration is None:
        return []
    extra: dict[str, Any] = {"type": m.type, "sample_location": m.sample_location}
    if m.sensor_status is not None:
        extra["sensor_status"] = m.sensor_status
    if m.context_follows:
        extra["context_follows"] = True
    if m.mol_per_l:
        mmol = m.glucose_mmol_l
        extra["original_value"] = mmol
        extra["original_unit"] = "mmol/L"
        value = None if mmol is None else mmol * MGDL_PER_MMOLL
    else:
        value = m.glucose_mg_dl
    return [ctx.reading("glucose", value, "mg/dL", special=m.concentration.special,
                        record_key=f"seq:{m.sequence_number}", device_time=m.device_time(),
                        extra=extra)]


# -------------------------------------------------------------------------------------------
# Glucose Measurement Context 0x2A34
# -------------------------------------------------------------------------------------------

CARBOHYDRATE_IDS = {1: "breakfast", 2: "lunch", 3: "dinner", 4: "snack", 5: "drink",
                    6: "supper", 7: "brunch"}
MEALS = {1: "preprandial", 2: "postprandial", 3: "fasting", 4: "casual", 5: "bedtime"}
TESTERS = {1: "self", 2: "health_care_professional", 3: "lab_test", 15: "not_available"}
HEALTH = {1: "minor_health_issues", 2: "major_health_issues", 3: "during_menses",
          4: "under_stress", 5: "no_health_issues", 15: "not_available"}
MEDICATION_IDS = {1: "rapid_acting_insulin", 2: "short_acting_insulin",
                  3: "intermediate_acting_insulin", 4: "long_acting_insulin",
                  5: "pre_mixed_insulin"}



def _tester_health_check(v: tuple[int, int]) -> str | None:
    """GSS "Glucose Measurement Context": tester 1–3 and health 1–5 defined, 15 "not
    available"; 0 and the values between are reserved for future use (malformed).  A half the
    collector does not know is written as 15, never as the reserved 0."""
    tester, health = v
    if tester not in TESTERS:
        return f"tester {tester} is reserved for future use (GSS Glucose Measurement Context)"
    if health not in HEALTH:
        return f"health {health} is reserved for future use (GSS Glucose Measurement Context)"
    return None


_C_CARB = 0x01
_C_MEAL = 0x02
_C_TESTER = 0x04
_C_EXERCISE = 0x08
_C_MEDICATION = 0x10
_C_LITERS = 0x20
_C_HBA1C = 0x40
_C_EXTENDED = 0x80


@dataclass(frozen=True, slots=True)
class GlucoseMeasurementContext(TableCodec):
    """Glucose Measurement Context 0x2A34 (GLS, GSS "Glucose Measurement Context").

    Layout: flags (uint8); sequence number (uint16); extended flags (uint8, bit 7);
    carbohydrate ID (uint8) + carbohydrate (SFLOAT kg) (bit 0); meal (uint8, bit 1);
    tester (low nibble) / health (high nibble) (bit 2); exercise duration (uint16 s, 0xFFFF
    = overrun) + intensity (uint8 %) (bit 3); medication ID (uint8) + medication (SFLOAT, kg
    or litres when bit 5) (bit 4); HbA1c (SFLOAT %, bit 6).
    """

    characteristic: ClassVar[str] = "2a34"
    name: ClassVar[str] = "Glucose Measurement Context"
    # Pairs sharing a bit are both present or both left out.
    LAYOUT: ClassVar[Layout] = Layout((
        Field("sequence_number", "sequence number", U16),
        Field("extended_flags", "extended flags", U8, _C_EXTENDED),
        Field("carbohydrate_id", "carbohydrate ID", U8, _C_CARB, check=reserved_values(
            "carbohydrate ID", CARBOHYDRATE_IDS, "GSS Glucose Measurement Context: 0, 8-255 RFU")),
        Field("carbohydrate_kg", "carbohydrate", SFLOAT, _C_CARB),
        Field("meal", "meal", U8, _C_MEAL, check=reserved_values(
            "meal", MEALS, "GSS Glucose Measurement Context: 0, 6-255 RFU")),
        Field(("tester", "health"), "tester/health", NIBBLES, _C_TESTER, fill=15,
              check=_tester_health_check),
        Field("exercise_duration_s", "exercise duration", U16, _C_EXERCISE),
        Field("exercise_intensity_pct", "exercise intensity", U8, _C_EXERCISE),
        Field("medication_id", "medication ID", U8, _C_MEDICATION, check=reserved_values(
            "medication ID", MEDICATION_IDS, "GSS Glucose Measurement Context: 0, 6-255 RFU")),
        Field("medication", "medication", SFLOAT, _C_MEDICATION),
        Field("hba1c_pct", "HbA1c", SFLOAT, _C_HBA1C),
    ), {"medication_liters": _C_LITERS})

    sequence_number: int
    extended_flags: int | None = None
    carbohydrate_id: int | None = None
    carbohydrate_kg: SFloat | None = None
    meal: int | None = None
    tester: int | None = None
    health: int | None = None
    exercise_duration_s: int | None = None
    exercise_intensity_pct: int | None = None
    medication_id: int | None = None
    medication: SFloat | None = None
    medication_liters: bool = False
    hba1c_pct: SFloat | None = None


    def to_json(self) -> dict[str, Any]:
        med_unit = None if self.medication is None else ("L" if self.medication_liters
                                                         else "kg")
        return {
            "sequence_number": self.sequence_number,
            "extended_flags": self.extended_flags,
            "carbohydrate_id": opt_name(self.carbohydrate_id, CARBOHYDRATE_IDS),
            "carbohydrate_kg": value_of(self.carbohydrate_kg),
            "meal": opt_name(self.meal, MEALS),
            "tester": opt_name(self.tester, TESTERS),
            "health": opt_name(self.health, HEALTH),
            "exercise_duration_s": self.exercise_duration_s,
            "exercise_intensity_pct": self.exercise_intensity_pct,
            "medication_id": opt_name(self.medication_id, MEDICATION_IDS),
            "medication": value_of(self.medication),
            "medication_unit": med_unit,
            "hba1c_pct": value_of(self.hba1c_pct),
        }


FEATURE_BITS = {
    0: "low_battery_detection", 1: "sensor_malfunction_detection", 2: "sensor_sample_size",
    3: "sensor_strip_insertion_error_detection", 4: "sensor_strip_type_error_detection",
    5: "sensor_result_high_low_detection", 6: "sensor_temperature_high_low_detection",
    7: "sensor_read_interrupt_detection", 8: "general_device_fault", 9: "time_fault",
    10: "multiple_bond",
}


class GlucoseFeature(Feature16, uuid="2a51", label="Glucose Feature", bits=FEATURE_BITS):
    """Glucose Feature 0x2A51 (GLS, GSS "Glucose Feature"): 16 feature bits."""

    __slots__ = ()


PROFILE = Profile(
    name="glucose", service="1808",
    codecs=(GlucoseMeasurement, GlucoseMeasurementContext, GlucoseFeature,
            RecordAccessControlPoint),
    measurements={"2a18": to_readings},
    subscribe=("2a18", "2a34"),  # measurement, context (notify)
    read_once=("2a51",),
    needs_bond=True,  # GLS §5.1: records go to a bonded collector only
    racp=Racp(records="2a18", identity="sequence", also=("2a34",)),
)
