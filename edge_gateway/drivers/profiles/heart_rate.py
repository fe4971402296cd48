"""Heart Rate profile codecs (service 0x180D).

Specifications: Heart Rate Service 1.0 (HRS_SPEC) §3.1–3.3 and the GATT Specification
Supplement §3.113 (Heart Rate Measurement), §3.37 (Body Sensor Location), §3.114 (Heart Rate
Control Point).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from edge_gateway.drivers.profiles.base import (
    Profile,
    ReadingContext,
    UIntField,
    measurement,
    reserved_values,
    rx_key,
)
from edge_gateway.errors import MalformedPayload
from edge_gateway.reading import Reading

_U16 = struct.Struct("<H")
#: Unpackers for 0..31 RR intervals (a 512-byte ATT value holds at most 255).
_RR_UNPACK = tuple(struct.Struct(f"<{i}H").unpack_from for i in range(32))
_new = object.__new__

# Heart Rate Measurement flags (GSS §3.113.1)
_F_UINT16 = 0x01
_F_CONTACT_MASK = 0x06  # bits 1-2: sensor contact status
_F_ENERGY = 0x08
_F_RR = 0x10
_F_RESERVED = 0xE0


@dataclass(frozen=True)
class HeartRateMeasurement:
    """Heart Rate Measurement 0x2A37 (HRS §3.1, GSS §3.113).

    Layout: flags (uint8); heart rate (uint8, or uint16 when flag bit 0); energy expended
    (uint16 kJ, flag bit 3); RR intervals (uint16 each, 1/1024 s, flag bit 4, as many as
    remain — at least one: a set flag with no interval after it is malformed, as the field
    it announces is missing; the Nordic Android BLE library's parser refuses it too).
    Sensor contact (bits 1-2): 0 or 1 = not supported, 2 = supported but not detected,
    3 = supported and detected — kept as the raw 2-bit value so 0 and 1 survive a
    round trip.  ``reserved_flags`` keeps bits 5-7 as sent.
    """

    characteristic: ClassVar[str] = "2a37"
    name: ClassVar[str] = "Heart Rate Measurement"

    heart_rate: int
    sensor_contact: int = 0
    energy_expended: int | None = None
    rr_intervals: tuple[int, ...] = ()
    #: True when the value was sent as uint16 (always so for values above 255).
    wide: bool = False
    reserved_flags: int = 0

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        n = len(raw)
        if n == 0:
            raise MalformedPayload("2a37", 0, "flags truncated: needs 1 byte, 0 left", raw)
        flags = raw[0]
        wide = bool(flags & _F_UINT16)
        # Fast path with explicit checks: this runs for every notification (~1/s per device).
        if wide:
            if n < 3:
                raise MalformedPayload("2a37", 1, f"heart rate (uint16) truncated: needs 2 "
                                       f"bytes, {n - 1} left", raw)
            hr = raw[1] | (raw[2] << 8)
            pos = 3
        else:
            if n < 2:
                raise MalformedPayload("2a37", 1, "heart rate (uint8) truncated: needs 1 byte,"
                                       " 0 left", raw)
            hr = raw[1]
            pos = 2
        energy = None
        if flags & _F_ENERGY:
            if n - pos < 2:
                raise MalformedPayload("2a37", pos, f"energy expended (uint16) truncated: "
                                       f"needs 2 bytes, {n - pos} left", raw)
            energy = raw[pos] | (raw[pos + 1] << 8)
            pos += 2
        rr: tuple[int, ...] = ()
        left = n - pos
        if flags & _F_RR:
            if left == 0:
                raise MalformedPayload("2a37", pos, "RR interval (uint16) truncated: needs 2"
                                       " bytes, 0 left", raw)
            if left & 1:
                raise MalformedPayload("2a37", n - 1, "RR interval (uint16) truncated: needs 2"
                                       " bytes, 1 left", raw)
            if left:
                count = left >> 1
                unpack = _RR_UNPACK[count] if count < len(_RR_UNPACK) else \
                    struct.Struct(f"<{count}H").unpack_from
                rr = unpack(raw, pos)
        elif left:
            raise MalformedPayload("2a37", pos, f"{left} trailing byte{'s' if left > 1 else ''}"
                                   " after the last field", raw)
        # A frozen dataclass __init__ costs one object.__setattr__ per field; this runs for
        # every notification, so the instance dict is filled in one step instead.
        obj = _new(cls)
        obj.__dict__.update(
            heart_rate=hr, sensor_contact=(flags & _F_CONTACT_MASK) >> 1,
            energy_expended=energy, rr_intervals=rr, wide=wide,
            reserved_flags=flags & _F_RESERVED)
        return obj

    def to_bytes(self) -> bytes:
        wide = self.wide or self.heart_rate > 0xFF
        flags = (self.reserved_flags & _F_RESERVED) | ((self.sensor_contact & 3) << 1)
        if wide:
            flags |= _F_UINT16
        if self.energy_expended is not None:
            flags |= _F_ENERGY
        if self.rr_intervals:
            flags |= _F_RR
        out = bytearray((flags,))
        out += _U16.pack(self.heart_rate) if wide else bytes((self.heart_rate,))
        if self.energy_expended is not None:
            out += _U16.pack(self.energy_expended)
        if self.rr_intervals:
            out += struct.pack(f"<{len(self.rr_intervals)}H", *self.rr_intervals)
        return bytes(out)

    @property
    def sensor_contact_supported(self) -> bool:
        return self.sensor_contact >= 2

    @property
    def sensor_contact_detected(self) -> bool | None:
        return self.sensor_contact == 3 if self.sensor_contact >= 2 else None

    @property
    def rr_intervals_ms(self) -> list[float]:
        # raw/1024 s in ms: exact in binary floating point, so nothing is truncated.
        return [r * 1000 / 1024 for r in self.rr_intervals]

    def to_json(self) -> dict[str, Any]:
        return {
            "heart_rate_bpm": self.heart_rate,
            "sensor_contact_supported": self.sensor_contact_supported,
            "sensor_contact_detected": self.sensor_contact_detected,
            "energy_expended_kj": self.energy_expended,
            "rr_intervals_ms": self.rr_intervals_ms,
            "value_format": "uint16" if self.wide else "uint8",
            "reserved_flags": self.reserved_flags,
        }


@measurement
def to_readings(m: HeartRateMeasurement, ctx: ReadingContext) -> list[Reading]:
    """One ``heart_rate`` (/min) and one ``rr_interval`` (ms) per RR value, keyed by receive
    time (heart-rate notifications carry no record identity of their own)."""
    key = rx_key(ctx.received_at)
    extra: dict[str, Any] = {"sensor_contact": m.sensor_contact}
    if m.energy_expended is not None:
        extra["energy_expended_kj"] = m.energy_expended
    out = [ctx.reading("heart_rate", float(m.heart_rate), "/min", record_key=key, extra=extra)]
    out.extend(
        ctx.reading("rr_interval", ms, "ms", record_key=f"{key}:rr{i}", extra={"index": i})
        for i, ms in enumerate(m.rr_intervals_ms)
    )
    return out


BODY_SENSOR_LOCATIONS = {0: "other", 1: "chest", 2: "wrist", 3: "finger", 4: "hand",
                         5: "ear_lobe", 6: "foot"}


@dataclass(frozen=True, slots=True)
class BodySensorLocation(UIntField, uuid="2a38", label="Body Sensor Location",
                         what="body sensor location", key="body_sensor_location",
                         names=BODY_SENSOR_LOCATIONS,
                         check=reserved_values("body sensor location", BODY_SENSOR_LOCATIONS,
                                               "GSS Body Sensor Location: 7-255 RFU")):
    """Body Sensor Location 0x2A38 (HRS §3.2, GSS §3.37): one uint8 0–6; 7–255 are reserved
    for future use (malformed)."""

    location: int


HR_CONTROL_OPS = {1: "reset_energy_expended"}


@dataclass(frozen=True, slots=True)
class HeartRateControlPoint(UIntField, uuid="2a39", label="Heart Rate Control Point",
                            what="op code", key="op_code", names=HR_CONTROL_OPS):
    """Heart Rate Control Point 0x2A39 (HRS §3.3, GSS §3.114): uint8 op code (1 = reset
    energy expended; others reserved, kept)."""

    op_code: int


PROFILE = Profile(
    name="heart_rate", service="180d",
    codecs=(HeartRateMeasurement, BodySensorLocation, HeartRateControlPoint),
    measurements={"2a37": to_readings},
    subscribe=("2a37",),  # notify
    read_once=("2a38",),
    streams=("2a37",),
)
