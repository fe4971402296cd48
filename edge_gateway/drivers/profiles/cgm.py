"""Continuous Glucose Monitoring profile codecs (service 0x181F).

Specifications: Continuous Glucose Monitoring Service v1.0.2 (CGMS) §3.1–3.6 and the GATT
Specification Supplement (GSS) sections "CGM Measurement", "CGM Feature", "CGM Status",
"CGM Session Start Time", "CGM Session Run Time", "CGM Specific Ops Control Point".

E2E-CRC (CGMS §2.4 / GSS "CRC calculation"): CRC-CCITT polynomial x^16+x^12+x^5+1, seed 0xFFFF,
bits processed LSB first, no final XOR — the variant catalogued as CRC-16/MCRF4XX — over all
fields before the CRC, sent little-endian.  Whether a CRC is present is announced by the CGM
Feature characteristic, not by the frame; the codecs infer it from the length (every layout
here is fixed once the flags or op code are known) and report it rather than guessing a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self

from edge_gateway.drivers.profiles.base import (
    SAMPLE_TYPES,
    DateTime,
    Profile,
    Racp,
    Reader,
    ReadingContext,
    bits,
    enum_name,
    p16,
    p24,
    pnib,
    psf,
)
from edge_gateway.drivers.profiles.cgm_socp import (
    CGM_LOCATIONS,
    CGMSpecificOpsControlPoint,
)
from edge_gateway.drivers.profiles.e2e_crc import crc16_mcrf4xx, end_with_crc, with_crc
from edge_gateway.drivers.profiles.ieee11073 import _SFLOAT_CACHE, SFloat
from edge_gateway.drivers.profiles.racp import RecordAccessControlPoint
from edge_gateway.errors import MalformedPayload
from edge_gateway.reading import Reading

# -------------------------------------------------------------------------------------------
# Sensor Status Annunciation (CGMS §3.1.1.5; 24 bits, LSO first: Status, Cal/Temp, Warning)
# -------------------------------------------------------------------------------------------

STATUS_BITS = {
    0: "session_stopped", 1: "device_battery_low", 2: "sensor_type_incorrect_for_device",
    3: "sensor_malfunction", 4: "device_specific_alert", 5: "general_device_fault",
    8: "time_synchronization_required", 9: "calibration_not_allowed",
    10: "calibration_recommended", 11: "calibration_required",
    12: "sensor_temperature_too_high", 13: "sensor_temperature_too_low",
    14: "calibration_pending",
    16: "result_lower_than_patient_low", 17: "result_higher_than_patient_high",
    18: "result_lower_than_hypo", 19: "result_higher_than_hyper",
    20: "rate_of_decrease_exceeded", 21: "rate_of_increase_exceeded",
    22: "result_lower_than_device_can_process", 23: "result_higher_than_device_can_process",
}

_F_TREND = 0x01
_F_QUALITY = 0x02
_F_RESERVED = 0x1C
_F_WARNING = 0x20
_F_CAL_TEMP = 0x40
_F_STATUS = 0x80


@dataclass(frozen=True)
class CGMRecord:
    """One CGM Measurement record (CGMS §3.1.1, GSS "CGM Measurement").

    Layout: size (uint8, counts itself and the CRC), flags (uint8), glucose (SFLOAT mg/dL),
    time offset (uint16 minutes since session start), then — only the octets flagged — the
    Sensor Status Annunciation in LSO-first order: Status octet (flag bit 7), Cal/Temp octet
    (bit 6), Warning octet (bit 5); trend (SFLOAT (mg/dL)/min, bit 0); quality (SFLOAT %,
    bit 1); E2E-CRC (uint16) when the size says so.  The SIG's characteristic XML numbers the
    annunciation as one 24-bit field LSO→MSO, which fixes that octet order (note: some
    vendor stacks send Warning first; a device doing so shows up as wrong-looking status
    bits, never as a wrong glucose value).
    """

    glucose: SFloat
    time_offset: int
    status_octet: int | None = None
    cal_temp_octet: int | None = None
    warning_octet: int | None = None
    trend: SFloat | None = None
    quality: SFloat | None = None
    crc: int | None = None
    #: Set by the decoder: whether ``crc`` matched the record (``None`` without a CRC).
    crc_ok: bool | None = field(default=None, compare=False)
    reserved_flags: int = 0

    @property
    def sensor_status(self) -> int | None:
        """The annunciation as one 24-bit number (absent octets count as 0), or ``None``."""
        if self.status_octet is None and self.cal_temp_octet is None \
                and self.warning_octet is None:
            return None
        return ((self.status_octet or 0) | (self.cal_temp_octet or 0) << 8
                | (self.warning_octet or 0) << 16)

    def flags(self) -> int:
        f = self.reserved_flags & _F_RESERVED
        if self.trend is not None:
            f |= _F_TREND
        if self.quality is not None:
            f |= _F_QUALITY
        if self.warning_octet is not None:
            f |= _F_WARNING
        if self.cal_temp_octet is not None:
            f |= _F_CAL_TEMP
        if self.status_octet is not None:
            f |= _F_STATUS
        return f

    def to_bytes(self, add_crc: bool = False) -> bytes:
        """Encode; ``add_crc`` computes the E2E-CRC when ``crc`` is ``None``."""
        body = bytearray((self.flags(),))
        body += psf(self.glucose) + p16(self.time_offset)
        for octet in (self.status_octet, self.cal_temp_octet, self.warning_octet):
            if octet is not None:
                body.append(octet)
        if self.trend is not None:
            body += psf(self.trend)
        if self.quality is not None:
            body += psf(self.quality)
        has_crc = self.crc is not None or add_crc
        size = len(body) + 1 + (2 if has_crc else 0)
        out = bytes((size,)) + bytes(body)
        return with_crc(out, self.crc, add_crc)

    def to_json(self) -> dict[str, Any]:
        status = self.sensor_status
        out: dict[str, Any] = {
            "glucose_mg_dl": self.glucose.value,
            "time_offset_min": self.time_offset,
            "trend_mg_dl_per_min": None if self.trend is None else self.trend.value,
            "quality_pct": None if self.quality is None else self.quality.value,
            "sensor_status": None if status is None else bits(status, STATUS_BITS),
            "crc_ok": self.crc_ok,
        }
        for name, v in (("glucose", self.glucose), ("trend", self.trend),
                        ("quality", self.quality)):
            if v is not None and v.special is not None:
                out[f"{name}_special"] = v.special
        if self.reserved_flags:
            out["reserved_flags"] = self.reserved_flags
        return out


def _body_length(flags: int) -> int:
    return (6 + (flags >> 7 & 1) + (flags >> 6 & 1) + (flags >> 5 & 1)
            + (2 if flags & _F_TREND else 0) + (2 if flags & _F_QUALITY else 0))


#: Record length (without CRC) for every flags value: the layout is fixed by the flags.
_BODY_LEN = tuple(_body_length(f) for f in range(256))
_SF = SFloat.from_raw
_SF_CACHE = _SFLOAT_CACHE
_new = object.__new__


def _decode_record(raw: bytes, start: int) -> tuple[CGMRecord, int]:
    """Decode the record at ``start``; return it and the offset after it.

    The fast path checks the whole record's length once (size field against the flags and
    the bytes left) and then reads fields without further checks; anything that does not fit
    goes through the field-by-field :func:`_decode_record_checked`, which names the field.
    """
    n = len(raw)
    if n - start < 6:
        return _decode_record_checked(raw, start)
    size = raw[start]
    flags = raw[start + 1]
    body = _BODY_LEN[flags]
    if (size != body and size != body + 2) or start + size > n:
        return _decode_record_checked(raw, start)
    p = start + 6
    status = cal_temp = warning = None
    if flags & 0xE0:
        if flags & _F_STATUS:
            status = raw[p]
            p += 1
        if flags & _F_CAL_TEMP:
            cal_temp = raw[p]
            p += 1
        if flags & _F_WARNING:
            warning = raw[p]
            p += 1
    trend = quality = None
    if flags & _F_TREND:
        w = raw[p] | raw[p + 1] << 8
        trend = _SF_CACHE.get(w) or _SF(w)
        p += 2
    if flags & _F_QUALITY:
        w = raw[p] | raw[p + 1] << 8
        quality = _SF_CACHE.get(w) or _SF(w)
        p += 2
    crc = crc_ok = None
    if size != body:
        crc = raw[p] | raw[p + 1] << 8
        crc_ok = crc16_mcrf4xx(raw[start:p]) == crc
    # A frozen dataclass __init__ costs one object.__setattr__ per field; a notification
    # can carry many records, so the instance dict is filled in one step instead.
    w = raw[start + 2] | raw[start + 3] << 8
    rec = _new(CGMRecord)
    rec.__dict__.update(
        glucose=_SF_CACHE.get(w) or _SF(w),
        time_offset=raw[start + 4] | raw[start + 5] << 8,
        status_octet=status, cal_temp_octet=cal_temp, warning_octet=warning, trend=trend,
        quality=quality, crc=crc, crc_ok=crc_ok, reserved_flags=flags & _F_RESERVED)
    return rec, start + size


def _decode_record_checked(raw: bytes, start: int) -> tuple[CGMRecord, int]:
    """The slow path: field by field, so the error names the field and its offset."""
    r = Reader("2aa7", raw)
    r.pos = start
    size = r.u8("size")
    flags = r.u8("flags")
    glucose = r.sfloat("glucose concentration")
    offset = r.u16("time offset")
    status = r.u8("status octet") if flags & _F_STATUS else None
    cal_temp = r.u8("cal/temp octet") if flags & _F_CAL_TEMP else None
    warning = r.u8("warning octet") if flags & _F_WARNING else None
    trend = r.sfloat("trend") if flags & _F_TREND else None
    quality = r.sfloat("quality") if flags & _F_QUALITY else None
    body_len = r.pos - start
    crc = None
    crc_ok = None
    if size == body_len + 2:
        crc = r.u16("E2E-CRC")
        crc_ok = crc16_mcrf4xx(raw[start:start + body_len]) == crc
    elif size != body_len:
        raise MalformedPayload(
            "2aa7", start, f"size field says {size} bytes but the flags 0x{flags:02x} give "
            f"{body_len} (or {body_len + 2} with E2E-CRC)", raw)
    return CGMRecord(glucose, offset, status, cal_temp, warning, trend, quality, crc,
                     crc_ok, flags & _F_RESERVED), r.pos


@dataclass(frozen=True, slots=True)
class CGMMeasurement:
    """CGM Measurement 0x2AA7 (CGMS §3.1): one notification, one or more records."""

    characteristic: ClassVar[str] = "2aa7"
    name: ClassVar[str] = "CGM Measurement"

    records: tuple[CGMRecord, ...]

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        if not raw:
            raise MalformedPayload("2aa7", 0, "size truncated: needs 1 byte, 0 left", raw)
        records = []
        pos = 0
        n = len(raw)
        while pos < n:
            rec, pos = _decode_record(raw, pos)
            records.append(rec)
        return cls(tuple(records))

    def to_bytes(self, add_crc: bool = False) -> bytes:
        return b"".join(rec.to_bytes(add_crc) for rec in self.records)

    def to_json(self) -> dict[str, Any]:
        return {"records": [rec.to_json() for rec in self.records]}


def to_readings(m: CGMMeasurement, *, device_id: str, characteristic: str,
                received_at: datetime, device_clock_offset: timedelta | None,
                reset_epoch: int = 0, session_start: datetime | None = None,
                ) -> list[Reading]:
    """One ``cgm_glucose`` (mg/dL) per record.

    ``time`` is session start + time offset.  ``session_start`` is the device's Session Start
    Time: naive (the device's clock, converted with ``device_clock_offset``) or aware (already
    UTC).  Without it the receive time stands in and ``extra["time_estimated"]`` says so.
    A record whose E2E-CRC does not match makes the whole frame malformed (the stored raw
    frame and a later RACP fetch recover it) — a corrupted glucose value is never stored.
    """
    ctx = ReadingContext(device_id, characteristic, received_at, device_clock_offset,
                         reset_epoch)
    if session_start is None:
        sess_text = "unknown"
    else:
        naive = session_start if session_start.tzinfo is None else \
            session_start.astimezone(UTC).replace(tzinfo=None)
        sess_text = naive.isoformat()
    out = []
    pos = 0
    for i, rec in enumerate(m.records):
        if rec.crc_ok is False:
            raise MalformedPayload(characteristic, pos, f"record {i + 1}: E2E-CRC mismatch "
                                   f"(sent 0x{rec.crc or 0:04x})", m.to_bytes())
        pos += len(rec.to_bytes())
        extra: dict[str, Any] = {"time_offset_min": rec.time_offset}
        if rec.trend is not None:
            extra["trend_mg_dl_per_min"] = rec.trend.value
        if rec.quality is not None:
            extra["quality_pct"] = rec.quality.value
        if rec.sensor_status is not None:
            extra["sensor_status"] = rec.sensor_status
        key = f"sess:{sess_text}:off:{rec.time_offset}"
        minutes = timedelta(minutes=rec.time_offset)
        try:
            start_plus = None if session_start is None else session_start + minutes
        except OverflowError:
            start_plus = None
            extra["device_time_out_of_range"] = True
        if session_start is None or start_plus is None:
            extra["time_estimated"] = True
            out.append(ctx.mder("cgm_glucose", rec.glucose, "mg/dL", record_key=key,
                                extra=extra))
        elif session_start.tzinfo is None:
            out.append(ctx.mder("cgm_glucose", rec.glucose, "mg/dL", record_key=key,
                                device_time=start_plus, extra=extra))
        else:
            out.append(ctx.mder("cgm_glucose", rec.glucose, "mg/dL", record_key=key,
                                time=start_plus, extra=extra))
    return out


# -------------------------------------------------------------------------------------------
# Feature, Status, Session Start Time, Session Run Time
# -------------------------------------------------------------------------------------------

FEATURE_BITS = {
    0: "calibration", 1: "patient_high_low_alerts", 2: "hypo_alerts", 3: "hyper_alerts",
    4: "rate_of_increase_decrease_alerts", 5: "device_specific_alert",
    6: "sensor_malfunction_detection", 7: "sensor_temperature_high_low_detection",
    8: "sensor_result_high_low_detection", 9: "low_battery_detection",
    10: "sensor_type_error_detection", 11: "general_device_fault", 12: "e2e_crc",
    13: "multiple_bond", 14: "multiple_sessions", 15: "cgm_trend_information",
    16: "cgm_quality",
}
@dataclass(frozen=True, slots=True)
class CGMFeature:
    """CGM Feature 0x2AA8 (CGMS §3.2): features (24 bits), type/location nibbles, E2E-CRC.

    The CRC field is always there: 0xFFFF when E2E-CRC is not supported (bit 12 clear).
    """

    characteristic: ClassVar[str] = "2aa8"
    name: ClassVar[str] = "CGM Feature"

    features: int
    type: int
    sample_location: int
    crc: int = 0xFFFF

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        r = Reader("2aa8", raw)
        features = r.u24("features")
        kind, location = r.nibbles("type/sample location")
        crc = r.u16("E2E-CRC")
        r.end()
        return cls(features, kind, location, crc)

    @property
    def e2e_crc_supported(self) -> bool:
        return bool(self.features >> 12 & 1)

    def to_bytes(self) -> bytes:
        return p24(self.features) + pnib(self.type, self.sample_location) + p16(self.crc)

    def to_json(self) -> dict[str, Any]:
        body = self.to_bytes()[:4]
        return {
            "features": bits(self.features, FEATURE_BITS),
            "type": enum_name(self.type, SAMPLE_TYPES),
            "sample_location": enum_name(self.sample_location, CGM_LOCATIONS),
            "crc_ok": crc16_mcrf4xx(body) == self.crc if self.e2e_crc_supported else None,
        }


@dataclass(frozen=True, slots=True)
class CGMStatus:
    """CGM Status 0x2AA9 (CGMS §3.3): time offset (uint16 min), status (24 bits, the
    annunciation's structure, always 3 octets), optional E2E-CRC."""

    characteristic: ClassVar[str] = "2aa9"
    name: ClassVar[str] = "CGM Status"

    time_offset: int
    status: int
    crc: int | None = None
    crc_ok: bool | None = field(default=None, compare=False)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        r = Reader("2aa9", raw)
        offset = r.u16("time offset")
        status = r.u24("status")
        return cls(offset, status, *end_with_crc(r))

    def to_bytes(self, add_crc: bool = False) -> bytes:
        return with_crc(p16(self.time_offset) + p24(self.status), self.crc, add_crc)

    def to_json(self) -> dict[str, Any]:
        return {"time_offset_min": self.time_offset,
                "sensor_status": bits(self.status, STATUS_BITS), "crc_ok": self.crc_ok}


DST_OFFSETS = {0: "standard_time", 2: "half_hour_daylight", 4: "daylight_time",
               8: "double_daylight_time", 255: "unknown"}


@dataclass(frozen=True, slots=True)
class CGMSessionStartTime:
    """CGM Session Start Time 0x2AAA (CGMS §3.4): Date Time (7), Time Zone (sint8, 15-minute
    steps, −128 unknown), DST Offset (uint8: 0, 2, 4, 8 quarter-hours; 255 unknown),
    optional E2E-CRC."""

    characteristic: ClassVar[str] = "2aaa"
    name: ClassVar[str] = "CGM Session Start Time"

    start: DateTime
    time_zone: int
    dst_offset: int
    crc: int | None = None
    crc_ok: bool | None = field(default=None, compare=False)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        r = Reader("2aaa", raw)
        start = r.datetime7("session start time")
        tz = r.s8("time zone")
        dst = r.u8("DST offset")
        return cls(start, tz, dst, *end_with_crc(r))

    def to_bytes(self, add_crc: bool = False) -> bytes:
        body = self.start.to_bytes() + bytes((self.time_zone & 0xFF, self.dst_offset & 0xFF))
        return with_crc(body, self.crc, add_crc)

    def utc_start(self) -> datetime | None:
        """The start in UTC when time zone and DST are known (local − zone − DST)."""
        local = self.start.to_datetime()
        if local is None or self.time_zone == -128 or self.dst_offset not in (0, 2, 4, 8):
            return None
        shift = timedelta(minutes=15 * (self.time_zone + self.dst_offset))
        try:
            return (local - shift).replace(tzinfo=UTC)
        except OverflowError:
            return None

    def to_json(self) -> dict[str, Any]:
        utc_start = self.utc_start()
        return {
            "session_start_time": self.start.to_json(),
            "time_zone_min": None if self.time_zone == -128 else 15 * self.time_zone,
            "dst_offset": enum_name(self.dst_offset, DST_OFFSETS),
            "session_start_utc": None if utc_start is None else
            utc_start.isoformat().replace("+00:00", "Z"),
            "crc_ok": self.crc_ok,
        }


@dataclass(frozen=True, slots=True)
class CGMSessionRunTime:
    """CGM Session Run Time 0x2AAB (CGMS §3.5): uint16 hours, optional E2E-CRC."""

    characteristic: ClassVar[str] = "2aab"
    name: ClassVar[str] = "CGM Session Run Time"

    run_time_h: int
    crc: int | None = None
    crc_ok: bool | None = field(default=None, compare=False)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        r = Reader("2aab", raw)
        hours = r.u16("session run time")
        return cls(hours, *end_with_crc(r))

    def to_bytes(self, add_crc: bool = False) -> bytes:
        return with_crc(p16(self.run_time_h), self.crc, add_crc)

    def to_json(self) -> dict[str, Any]:
        return {"session_run_time_h": self.run_time_h, "crc_ok": self.crc_ok}


PROFILE = Profile(
    name="cgm", service="181f",
    codecs=(CGMMeasurement, CGMFeature, CGMStatus, CGMSessionStartTime, CGMSessionRunTime,
            CGMSpecificOpsControlPoint, RecordAccessControlPoint),
    measurements={"2aa7": to_readings},
    subscribe=("2aa7",),  # notify
    # Feature, then Session Start Time: CGM measurements are timed from the session start.
    read_once=("2aa8", "2aaa"),
    streams=("2aa7",),
    racp=Racp(records="2aa7", identity="time_offset", session="2aaa"),
)


__all__ = [
    "PROFILE", "CGMFeature", "CGMMeasurement", "CGMRecord", "CGMSessionRunTime",
    "CGMSessionStartTime", "CGMStatus", "to_readings",
]
