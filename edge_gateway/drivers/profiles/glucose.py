"""Glucose profile codecs (service 0x1808).

Specifications: Glucose Service v1.0.1 (GLS) §3.106–3.109 of the GATT Specification Supplement
("Glucose Measurement", "Glucose Measurement Context", "Glucose Feature") and GLS §3.4 with
the GSS "Record Access Control Point" (RACP, in racp.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Self

from edge_gateway.drivers.profiles.base import (
    SAMPLE_TYPES,
    DateTime,
    Feature16,
    FlagWriter,
    Profile,
    Racp,
    Reader,
    ReadingContext,
    json_tail,
    measurement,
    opt_bits,
    opt_name,
    p16,
    pnib,
    ps16,
    psf,
    u8,
)
from edge_gateway.drivers.profiles.ieee11073 import SFloat, format_number, value_of
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
class GlucoseMeasurement:
    """Glucose Measurement 0x2A18 (GLS §3.106 of GSS).

    Layout: flags (uint8); sequence number (uint16); base time (Date Time, 7); time offset
    (sint16 minutes, flag bit 0); concentration (SFLOAT in kg/L, or mol/L when flag bit 2)
    with type (low nibble) and sample location (high nibble) in one uint8 (flag bit 1);
    sensor status annunciation (16 bits, flag bit 3).  Flag bit 4: a Glucose Measurement
    Context with the same sequence number follows.
    """

    characteristic: ClassVar[str] = "2a18"
    name: ClassVar[str] = "Glucose Measurement"

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

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        r = Reader("2a18", raw)
        flags = r.u8("flags")
        seq = r.u16("sequence number")
        base = r.datetime7("base time")
        offset = r.s16("time offset") if flags & _F_OFFSET else None
        conc = None
        gtype = loc = 0
        if flags & _F_CONC:
            conc = r.sfloat("glucose concentration")
            gtype, loc = r.nibbles("type/sample location")
        status = r.u16("sensor status annunciation") if flags & _F_STATUS else None
        r.end()
        return cls(seq, base, offset, conc, bool(flags & _F_MOL), gtype, loc, status,
                   bool(flags & _F_CONTEXT), flags & _F_RESERVED)

    def to_bytes(self) -> bytes:
        w = FlagWriter((self.reserved_flags & _F_RESERVED) | (_F_MOL if self.mol_per_l else 0)
                       | (_F_CONTEXT if self.context_follows else 0),
                       p16(self.sequence_number) + self.base_time.to_bytes())
        w.add(_F_OFFSET, self.time_offset, ps16)
        w.add_bytes(_F_CONC, None if self.concentration is None
                    else psf(self.concentration) + pnib(self.type, self.sample_location))
        w.add(_F_STATUS, self.sensor_status, p16)
        return w.done()

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

_C_CARB = 0x01
_C_MEAL = 0x02
_C_TESTER = 0x04
_C_EXERCISE = 0x08
_C_MEDICATION = 0x10
_C_LITERS = 0x20
_C_HBA1C = 0x40
_C_EXTENDED = 0x80


@dataclass(frozen=True, slots=True)
class GlucoseMeasurementContext:
    """Glucose Measurement Context 0x2A34 (GLS, GSS "Glucose Measurement Context").

    Layout: flags (uint8); sequence number (uint16); extended flags (uint8, bit 7);
    carbohydrate ID (uint8) + carbohydrate (SFLOAT kg) (bit 0); meal (uint8, bit 1);
    tester (low nibble) / health (high nibble) (bit 2); exercise duration (uint16 s, 0xFFFF
    = overrun) + intensity (uint8 %) (bit 3); medication ID (uint8) + medication (SFLOAT, kg
    or litres when bit 5) (bit 4); HbA1c (SFLOAT %, bit 6).
    """

    characteristic: ClassVar[str] = "2a34"
    name: ClassVar[str] = "Glucose Measurement Context"

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

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        r = Reader("2a34", raw)
        flags = r.u8("flags")
        seq = r.u16("sequence number")
        ext = r.u8("extended flags") if flags & _C_EXTENDED else None
        carb_id = carb = meal = tester = health = dur = inten = med_id = med = hba1c = None
        if flags & _C_CARB:
            carb_id = r.u8("carbohydrate ID")
            carb = r.sfloat("carbohydrate")
        if flags & _C_MEAL:
            meal = r.u8("meal")
        if flags & _C_TESTER:
            tester, health = r.nibbles("tester/health")
        if flags & _C_EXERCISE:
            dur = r.u16("exercise duration")
            inten = r.u8("exercise intensity")
        if flags & _C_MEDICATION:
            med_id = r.u8("medication ID")
            med = r.sfloat("medication")
        if flags & _C_HBA1C:
            hba1c = r.sfloat("HbA1c")
        r.end()
        return cls(seq, ext, carb_id, carb, meal, tester, health, dur, inten, med_id, med,
                   bool(flags & _C_LITERS), hba1c)

    def to_bytes(self) -> bytes:
        # Paired fields share one flag: both present or the pair is left out.
        w = FlagWriter(_C_LITERS if self.medication_liters else 0, p16(self.sequence_number))
        w.add(_C_EXTENDED, self.extended_flags, u8)
        w.add_bytes(_C_CARB, None if self.carbohydrate_id is None or self.carbohydrate_kg is None
                    else u8(self.carbohydrate_id) + psf(self.carbohydrate_kg))
        w.add(_C_MEAL, self.meal, u8)
        w.add_bytes(_C_TESTER, None if self.tester is None and self.health is None
                    else pnib(self.tester or 0, self.health or 0))
        w.add_bytes(_C_EXERCISE, None if self.exercise_duration_s is None
                    or self.exercise_intensity_pct is None
                    else p16(self.exercise_duration_s) + u8(self.exercise_intensity_pct))
        w.add_bytes(_C_MEDICATION, None if self.medication_id is None or self.medication is None
                    else u8(self.medication_id) + psf(self.medication))
        w.add(_C_HBA1C, self.hba1c_pct, psf)
        return w.done()

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
