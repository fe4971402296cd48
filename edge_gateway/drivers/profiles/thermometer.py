"""Health Thermometer profile codecs (service 0x1809).

Specifications: Health Thermometer Service v1.0 (HTS) §3.1–3.4 and the GATT Specification
Supplement "Temperature Measurement", "Temperature Type", "Intermediate Temperature",
"Measurement Interval".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from edge_gateway.drivers.profiles.base import (
    DateTime,
    Profile,
    ReadingContext,
    UIntField,
    json_tail,
    measurement,
    opt_name,
    reserved_values,
    timed_key,
    ts_json,
)
from edge_gateway.drivers.profiles.ieee11073 import Float32
from edge_gateway.drivers.profiles.layout import DATE_TIME, FLOAT, U8, Field, Layout, TableCodec
from edge_gateway.reading import Reading

TEMPERATURE_TYPES = {1: "armpit", 2: "body", 3: "ear", 4: "finger",
                     5: "gastro_intestinal_tract", 6: "mouth", 7: "rectum", 8: "toe",
                     9: "tympanum"}
#: GSS "Temperature Type": 0x00 and 0x0A–0xFF are reserved for future use (malformed).
_TYPE_CHECK = reserved_values("temperature type", TEMPERATURE_TYPES,
                              "GSS Temperature Type: 0 and 10-255 RFU")


@dataclass(frozen=True, slots=True)
class TemperatureMeasurement(TableCodec):
    """Temperature Measurement 0x2A1C (HTS §3.1, GSS "Temperature Measurement").

    Layout: flags (uint8: bit 0 unit 0=Celsius 1=Fahrenheit, bit 1 time stamp, bit 2
    temperature type); temperature (IEEE 11073 32-bit FLOAT); time stamp (Date Time, 7);
    temperature type (uint8).  Intermediate Temperature 0x2A1E has the same layout.
    """

    characteristic: ClassVar[str] = "2a1c"
    name: ClassVar[str] = "Temperature Measurement"
    LAYOUT: ClassVar[Layout] = Layout((
        Field("temperature", "temperature", FLOAT),
        Field("timestamp", "time stamp", DATE_TIME, 0x02),
        Field("temperature_type", "temperature type", U8, 0x04, check=_TYPE_CHECK),
    ), {"fahrenheit": 0x01}, 0xF8)

    temperature: Float32
    fahrenheit: bool = False
    timestamp: DateTime | None = None
    temperature_type: int | None = None
    reserved_flags: int = 0

    @property
    def unit(self) -> str:
        return "[degF]" if self.fahrenheit else "Cel"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "temperature": self.temperature.value,
            "temperature_unit": self.unit,
            "timestamp": ts_json(self.timestamp),
            "temperature_type": opt_name(self.temperature_type, TEMPERATURE_TYPES),
        }
        return json_tail(out, self.reserved_flags, temperature=self.temperature)


@dataclass(frozen=True, slots=True)
class IntermediateTemperature(TemperatureMeasurement):
    """Intermediate Temperature 0x2A1E (HTS §3.3): the Temperature Measurement layout."""

    characteristic: ClassVar[str] = "2a1e"
    name: ClassVar[str] = "Intermediate Temperature"


@measurement
def to_readings(m: TemperatureMeasurement, ctx: ReadingContext) -> list[Reading]:
    """One ``temperature`` reading (Cel or [degF]); intermediate values give none."""
    if isinstance(m, IntermediateTemperature):
        return []
    extra: dict[str, Any] = {}
    if m.temperature_type is not None:
        extra["temperature_type"] = m.temperature_type
    return [ctx.mder("temperature", m.temperature, m.unit,
                     record_key=timed_key(m.timestamp, ctx.received_at),
                     device_time=None if m.timestamp is None else m.timestamp.to_datetime(),
                     extra=extra)]


@dataclass(frozen=True, slots=True)
class TemperatureType(UIntField, uuid="2a1d", label="Temperature Type",
                      what="temperature type", key="temperature_type",
                      names=TEMPERATURE_TYPES, check=_TYPE_CHECK):
    """Temperature Type 0x2A1D (HTS §3.2): uint8 enumeration 1–9; reserved values are
    malformed."""

    temperature_type: int


@dataclass(frozen=True, slots=True)
class MeasurementInterval(UIntField, uuid="2a21", label="Measurement Interval",
                          what="measurement interval", size=2, key="measurement_interval_s"):
    """Measurement Interval 0x2A21 (HTS §3.4): uint16 seconds, 0 = no periodic measurement."""

    interval_s: int


PROFILE = Profile(
    name="thermometer", service="1809",
    codecs=(TemperatureMeasurement, IntermediateTemperature, TemperatureType,
            MeasurementInterval),
    measurements={"2a1c": to_readings},
    subscribe=("2a1c", "2a1e"),  # measurement (indicate), intermediate (notify)
    read_once=("2a1d",),
    streams=("2a1e",),
)
