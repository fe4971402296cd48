"""Weight Scale profile codecs (service 0x181D).

Specifications: Weight Scale Service v1.0 (WSS) §3.1–3.2 and the GATT Specification
Supplement "Weight Measurement", "Weight Scale Feature".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from edge_gateway.drivers.profiles.base import (
    DateTime,
    Profile,
    ReadingContext,
    UIntField,
    bits,
    json_tail,
    measurement,
    timed_key,
    ts_json,
)
from edge_gateway.drivers.profiles.layout import DATE_TIME, U8, U16, Field, Layout, TableCodec
from edge_gateway.reading import Reading

#: Weight 0xFFFF means "measurement unsuccessful" (WSS §3.1.1.2).
WEIGHT_UNSUCCESSFUL = 0xFFFF


def _scaled(raw: int, step: str) -> float:
    # Integer × decimal resolution, rounded to the resolution's digits so 0.005 × 14001
    # prints as 70.005 and not 70.00500000000001.
    digits = len(step.split(".")[1]) if "." in step else 0
    return round(raw * float(step), digits)


@dataclass(frozen=True, slots=True)
class WeightMeasurement(TableCodec):
    """Weight Measurement 0x2A9D (WSS §3.1, GSS "Weight Measurement").

    Layout: flags (uint8: bit 0 units 0=SI 1=imperial, bit 1 time stamp, bit 2 user id,
    bit 3 BMI and height); weight (uint16: 0.005 kg or 0.01 lb; 0xFFFF = unsuccessful);
    time stamp (Date Time, 7); user id (uint8, 255 = unknown); BMI (uint16, 0.1 kg/m²);
    height (uint16: 0.001 m or 0.1 in).
    """

    characteristic: ClassVar[str] = "2a9d"
    name: ClassVar[str] = "Weight Measurement"
    LAYOUT: ClassVar[Layout] = Layout((
        Field("weight_raw", "weight", U16),
        Field("timestamp", "time stamp", DATE_TIME, 0x02),
        Field("user_id", "user id", U8, 0x04),
        Field("bmi_raw", "BMI", U16, 0x08),  # BMI and height share bit 3
        Field("height_raw", "height", U16, 0x08),
    ), {"imperial": 0x01}, 0xF0)

    weight_raw: int
    imperial: bool = False
    timestamp: DateTime | None = None
    user_id: int | None = None
    bmi_raw: int | None = None
    height_raw: int | None = None
    reserved_flags: int = 0

    @property
    def weight(self) -> float | None:
        if self.weight_raw == WEIGHT_UNSUCCESSFUL:
            return None
        return _scaled(self.weight_raw, "0.01" if self.imperial else "0.005")

    @property
    def weight_unit(self) -> str:
        return "[lb_av]" if self.imperial else "kg"

    @property
    def height(self) -> float | None:
        if self.height_raw is None:
            return None
        return _scaled(self.height_raw, "0.1" if self.imperial else "0.001")

    @property
    def height_unit(self) -> str | None:
        if self.height_raw is None:
            return None
        return "[in_i]" if self.imperial else "m"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "weight": self.weight,
            "weight_unit": self.weight_unit,
            "timestamp": ts_json(self.timestamp),
            "user_id": self.user_id,
            "bmi": None if self.bmi_raw is None else _scaled(self.bmi_raw, "0.1"),
            "height": self.height,
            "height_unit": self.height_unit,
        }
        if self.weight_raw == WEIGHT_UNSUCCESSFUL:
            out["weight_special"] = "measurement_unsuccessful"
        return json_tail(out, self.reserved_flags)


@measurement
def to_readings(m: WeightMeasurement, ctx: ReadingContext) -> list[Reading]:
    """One ``weight`` reading (kg or [lb_av]); an unsuccessful measurement has value None
    and ``special="nan"``; BMI and height go to ``extra``."""
    user = None if m.user_id in (None, 255) else m.user_id
    extra: dict[str, Any] = {}
    if m.user_id is not None:
        extra["user_id"] = m.user_id
    if m.bmi_raw is not None:
        extra["bmi_kg_m2"] = _scaled(m.bmi_raw, "0.1")
        extra["height"] = m.height
        extra["height_unit"] = m.height_unit
    w = m.weight
    return [ctx.reading("weight", w, m.weight_unit, special=None if w is not None else "nan",
                        record_key=timed_key(m.timestamp, ctx.received_at, user),
                        device_time=None if m.timestamp is None
                        else m.timestamp.to_datetime(), extra=extra)]


FEATURE_BITS = {0: "time_stamp", 1: "multiple_users", 2: "bmi"}
WEIGHT_RESOLUTIONS = {0: None, 1: "0.5 kg / 1 lb", 2: "0.2 kg / 0.5 lb", 3: "0.1 kg / 0.2 lb",
                      4: "0.05 kg / 0.1 lb", 5: "0.02 kg / 0.05 lb", 6: "0.01 kg / 0.02 lb",
                      7: "0.005 kg / 0.01 lb"}
HEIGHT_RESOLUTIONS = {0: None, 1: "0.01 m / 1 in", 2: "0.005 m / 0.5 in",
                      3: "0.001 m / 0.1 in"}


@dataclass(frozen=True, slots=True)
class WeightScaleFeature(UIntField, uuid="2a9e", label="Weight Scale Feature",
                         what="features", size=4):
    """Weight Scale Feature 0x2A9E (WSS §3.2): 32 bits — bits 0–2 supported fields,
    bits 3–6 weight resolution, bits 7–9 height resolution."""

    features: int

    def to_json(self) -> dict[str, Any]:
        wres = (self.features >> 3) & 0xF
        hres = (self.features >> 7) & 0x7
        return {
            "features": bits(self.features & 0x7, FEATURE_BITS),
            "weight_resolution": WEIGHT_RESOLUTIONS.get(wres, wres),
            "height_resolution": HEIGHT_RESOLUTIONS.get(hres, hres),
            "reserved_bits": self.features >> 10,
        }


PROFILE = Profile(
    name="weight", service="181d", codecs=(WeightMeasurement, WeightScaleFeature),
    measurements={"2a9d": to_readings},
    subscribe=("2a9d",),  # indicate
    read_once=("2a9e",),
)
