"""Pulse Oximeter profile codecs (service 0x1822).

Specifications: Pulse Oximeter Service v1.0.1 (PLXS) §3.1–3.3 and the GATT Specification
Supplement "PLX Spot-Check Measurement", "PLX Continuous Measurement", "PLX Features".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from edge_gateway.drivers.profiles.base import (
    DateTime,
    Profile,
    Reader,
    ReadingContext,
    bits,
    json_tail,
    measurement,
    opt_bits,
    p16,
    p24,
    timed_key,
    ts_json,
)
from edge_gateway.drivers.profiles.ieee11073 import SFloat, value_of
from edge_gateway.drivers.profiles.layout import (
    DATE_TIME,
    SFLOAT,
    SFLOAT_PAIR,
    U16,
    U24,
    Field,
    Layout,
    TableCodec,
)
from edge_gateway.reading import Reading

MEASUREMENT_STATUS_BITS = {
    5: "measurement_ongoing", 6: "early_estimated_data", 7: "validated_data",
    8: "fully_qualified_data", 9: "data_from_measurement_storage",
    10: "data_for_demonstration", 11: "data_for_testing", 12: "calibration_ongoing",
    13: "measurement_unavailable", 14: "questionable_measurement_detected",
    15: "invalid_measurement_detected",
}
DEVICE_STATUS_BITS = {
    0: "extended_display_update_ongoing", 1: "equipment_malfunction_detected",
    2: "signal_processing_irregularity_detected", 3: "inadequate_signal_detected",
    4: "poor_signal_detected", 5: "low_perfusion_detected", 6: "erratic_signal_detected",
    7: "nonpulsatile_signal_detected", 8: "questionable_pulse_detected",
    9: "signal_analysis_ongoing", 10: "sensor_interference_detected",
    11: "sensor_unconnected_to_user", 12: "unknown_sensor_connected", 13: "sensor_displaced",
    14: "sensor_malfunctioning", 15: "sensor_disconnected",
}
FEATURE_BITS = {
    0: "measurement_status_support", 1: "device_and_sensor_status_support",
    2: "spot_check_measurement_storage", 3: "spot_check_timestamp", 4: "spo2pr_fast",
    5: "spo2pr_slow", 6: "pulse_amplitude_index", 7: "multiple_bonds",
}


def _status_fields(bit: int) -> tuple[Field, ...]:
    """Both measurements end with the same three optional fields — measurement status
    (16 bits), device and sensor status (24 bits), pulse amplitude index (SFLOAT) — flagged
    by three consecutive bits starting at ``bit`` (Spot-Check 0x02, Continuous 0x04)."""
    return (Field("measurement_status", "measurement status", U16, bit),
            Field("device_status", "device and sensor status", U24, bit << 1),
            Field("pulse_amplitude_index", "pulse amplitude index", SFLOAT, bit << 2))


def _status_json(m: PLXSpotCheck | PLXContinuous) -> dict[str, Any]:
    return {
        "measurement_status": opt_bits(m.measurement_status, MEASUREMENT_STATUS_BITS),
        "device_and_sensor_status": opt_bits(m.device_status, DEVICE_STATUS_BITS),
        "pulse_amplitude_index_pct": value_of(m.pulse_amplitude_index),
    }


def _finish_json(out: dict[str, Any], m: PLXSpotCheck | PLXContinuous) -> dict[str, Any]:
    return json_tail(out, m.reserved_flags, spo2=m.spo2, pulse_rate=m.pulse_rate,
                     pulse_amplitude_index=m.pulse_amplitude_index)




@dataclass(frozen=True, slots=True)
class PLXSpotCheck(TableCodec):
    """PLX Spot-Check Measurement 0x2A5E (PLXS §3.1).

    Layout: flags (uint8: bit 0 timestamp, bit 1 measurement status, bit 2 device and sensor
    status, bit 3 pulse amplitude index, bit 4 device clock not set); SpO2 (SFLOAT %);
    PR (SFLOAT /min); timestamp (Date Time); measurement status (16 bits); device and
    sensor status (24 bits); pulse amplitude index (SFLOAT %).
    """

    characteristic: ClassVar[str] = "2a5e"
    name: ClassVar[str] = "PLX Spot-Check Measurement"
    LAYOUT: ClassVar[Layout] = Layout((
        Field("spo2", "SpO2", SFLOAT),
        Field("pulse_rate", "pulse rate", SFLOAT),
        Field("timestamp", "timestamp", DATE_TIME, 0x01),
        *_status_fields(0x02),
    ), {"clock_not_set": 0x10}, 0xE0)

    spo2: SFloat
    pulse_rate: SFloat
    timestamp: DateTime | None = None
    measurement_status: int | None = None
    device_status: int | None = None
    pulse_amplitude_index: SFloat | None = None
    clock_not_set: bool = False
    reserved_flags: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "spo2_pct": self.spo2.value,
            "pulse_rate_bpm": self.pulse_rate.value,
            "timestamp": ts_json(self.timestamp),
            **_status_json(self),
            "device_clock_not_set": self.clock_not_set,
        }
        return _finish_json(out, self)


@dataclass(frozen=True, slots=True)
class PLXContinuous(TableCodec):
    """PLX Continuous Measurement 0x2A5F (PLXS §3.2).

    Layout: flags (uint8: bit 0 SpO2PR-Fast, bit 1 SpO2PR-Slow, bit 2 measurement status,
    bit 3 device and sensor status, bit 4 pulse amplitude index); SpO2PR-Normal (SpO2 SFLOAT,
    PR SFLOAT); SpO2PR-Fast (2 SFLOAT); SpO2PR-Slow (2 SFLOAT); measurement status (16 bits);
    device and sensor status (24 bits); pulse amplitude index (SFLOAT %).
    """

    characteristic: ClassVar[str] = "2a5f"
    name: ClassVar[str] = "PLX Continuous Measurement"
    LAYOUT: ClassVar[Layout] = Layout((
        Field("spo2", "SpO2 (normal)", SFLOAT),
        Field("pulse_rate", "pulse rate (normal)", SFLOAT),
        Field("fast", ("SpO2 (fast)", "pulse rate (fast)"), SFLOAT_PAIR, 0x01),
        Field("slow", ("SpO2 (slow)", "pulse rate (slow)"), SFLOAT_PAIR, 0x02),
        *_status_fields(0x04),
    ), {}, 0xE0)

    spo2: SFloat
    pulse_rate: SFloat
    fast: tuple[SFloat, SFloat] | None = None
    slow: tuple[SFloat, SFloat] | None = None
    measurement_status: int | None = None
    device_status: int | None = None
    pulse_amplitude_index: SFloat | None = None
    reserved_flags: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "spo2_pct": self.spo2.value,
            "pulse_rate_bpm": self.pulse_rate.value,
            "spo2_fast_pct": None if self.fast is None else self.fast[0].value,
            "pulse_rate_fast_bpm": None if self.fast is None else self.fast[1].value,
            "spo2_slow_pct": None if self.slow is None else self.slow[0].value,
            "pulse_rate_slow_bpm": None if self.slow is None else self.slow[1].value,
            **_status_json(self),
        }
        return _finish_json(out, self)


@measurement
def to_readings(m: PLXSpotCheck | PLXContinuous, ctx: ReadingContext) -> list[Reading]:
    """``spo2`` (%) and ``pulse_rate`` (/min).  A spot-check with a timestamp is keyed by the
    device time — even when the device says its clock is not set: the time stamp is still
    the record's identity, and the measured clock offset still converts it; continuous
    measurements are keyed by receive time."""
    ts = m.timestamp if isinstance(m, PLXSpotCheck) else None
    key = timed_key(ts, ctx.received_at)
    dev = None if ts is None else ts.to_datetime()
    extra: dict[str, Any] = {}
    if isinstance(m, PLXSpotCheck) and m.clock_not_set:
        extra["device_clock_not_set"] = True
    if m.measurement_status is not None:
        extra["measurement_status"] = m.measurement_status
    if m.device_status is not None:
        extra["device_and_sensor_status"] = m.device_status
    if m.pulse_amplitude_index is not None:
        extra["pulse_amplitude_index_pct"] = m.pulse_amplitude_index.value
    return [ctx.mder("spo2", m.spo2, "%", record_key=key, device_time=dev, extra=extra),
            ctx.mder("pulse_rate", m.pulse_rate, "/min", record_key=key, device_time=dev,
                     extra=extra)]


@dataclass(frozen=True, slots=True)
class PLXFeatures:
    """PLX Features 0x2A60 (PLXS §3.3): supported features (16 bits), then the supported
    measurement status bits (16, when feature bit 0) and device and sensor status bits
    (24, when feature bit 1)."""

    characteristic: ClassVar[str] = "2a60"
    name: ClassVar[str] = "PLX Features"

    features: int
    measurement_status_support: int | None = None
    device_status_support: int | None = None

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        r = Reader("2a60", raw)
        f = r.u16("supported features")
        ms = r.u16("measurement status support") if f & 1 else None
        ds = r.u24("device and sensor status support") if f & 2 else None
        r.end()
        return cls(f, ms, ds)

    def to_bytes(self) -> bytes:
        f = self.features & ~3
        out = b""
        if self.measurement_status_support is not None:
            f |= 1
            out += p16(self.measurement_status_support)
        if self.device_status_support is not None:
            f |= 2
            out += p24(self.device_status_support)
        return p16(f) + out

    def to_json(self) -> dict[str, Any]:
        return {
            "features": bits(self.features, FEATURE_BITS),
            "measurement_status_support": opt_bits(self.measurement_status_support,
                                                   MEASUREMENT_STATUS_BITS),
            "device_and_sensor_status_support": opt_bits(self.device_status_support,
                                                         DEVICE_STATUS_BITS),
        }


PROFILE = Profile(
    name="pulse_oximeter", service="1822",
    codecs=(PLXSpotCheck, PLXContinuous, PLXFeatures),
    measurements={"2a5e": to_readings, "2a5f": to_readings},
    subscribe=("2a5f", "2a5e"),  # continuous (notify), spot-check (indicate)
    read_once=("2a60",),
    streams=("2a5f",),
)
