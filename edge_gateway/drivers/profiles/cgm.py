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
    json_tail,
    measurement,
    opt_bits,
)
from edge_gateway.drivers.profiles.cgm_socp import (
    CGM_LOCATIONS,
    CGMSpecificOpsControlPoint,
)
from edge_gateway.drivers.profiles.e2e_crc import crc16_mcrf4xx, crc_ok, with_crc
from edge_gateway.drivers.profiles.ieee11073 import _SFLOAT_CACHE, SFloat, value_of
from edge_gateway.drivers.profiles.layout import (
    DATE_TIME,
    NIBBLES,
    P8,
    S8,
    SFLOAT,
    U8,
    U16,
    U24,
    Field,
    Layout,
    TableCodec,
    TableCodecWithCrc,
)
from edge_gateway.drivers.profiles.racp import RecordAccessControlPoint
from edge_gateway.errors import MalformedPayload
from edge_gateway.reading import Reading

# -------------------------------------------------------------------------------------------
# Sensor Status Annunciation (CGMS §3.1.1.5): 24 bits numbered Status (0-7), Cal/Temp (8-15),
# Warning (16-23); on the wire in a CGM Measurement each octet is optional and they come in
# flag-bit order: Warning (bit 5), Cal/Temp (bit 6), Status (bit 7) — see CGMRecord.
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


#: A record after its size octet (flags first): the checked decoder and the encoder work from
#: this table; the fast path in :func:`_decode_record` is the same table unrolled.
_RECORD = Layout((
    Field("glucose", "glucose concentration", SFLOAT),
    Field("time_offset", "time offset", U16),
    Field("warning_octet", "warning octet", U8, _F_WARNING),
    Field("cal_temp_octet", "cal/temp octet", U8, _F_CAL_TEMP),
    Field("status_octet", "status octet", U8, _F_STATUS),
    Field("trend", "trend", SFLOAT, _F_TREND),
    Field("quality", "quality", SFLOAT, _F_QUALITY),
), reserved=_F_RESERVED)


@dataclass(frozen=True)
class CGMRecord:
    """One CGM Measurement record (CGMS §3.1.1, GSS "CGM Measurement").

    Layout: size (uint8, counts itself and the CRC), flags (uint8), glucose (SFLOAT mg/dL),
    time offset (uint16 minutes since session start), then — only the octets flagged — the
    Sensor Status Annunciation octets in the order of the specification's field table and
    flag bits: Warning octet (flag bit 5), Cal/Temp octet (bit 6), Status octet (bit 7);
    trend (SFLOAT (mg/dL)/min, bit 0); quality (SFLOAT %, bit 1); E2E-CRC (uint16) when the
    size says so.  The old SIG characteristic XML showed the annunciation as one 24-bit
    field, Status octet first; a stack that follows it is read in the text's order (its
    status bits look wrong, never its glucose value) — docs/ble.md "CGM status octets".
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

    def to_bytes(self, add_crc: bool = False) -> bytes:
        """Encode; ``add_crc`` computes the E2E-CRC when ``crc`` is ``None``."""
        body = _RECORD.encode(self)
        # The size octet counts itself, the flags, the fields and the CRC when there is one.
        size = len(body) + 1 + (2 if self.crc is not None or add_crc else 0)
        return with_crc(bytes((size,)) + body, self.crc, add_crc)

    def to_json(self) -> dict[str, Any]:
        status = self.sensor_status
        out: dict[str, Any] = {
            "glucose_mg_dl": self.glucose.value,
            "time_offset_min": self.time_offset,
            "trend_mg_dl_per_min": value_of(self.trend),
            "quality_pct": value_of(self.quality),
            "sensor_status": opt_bits(status, STATUS_BITS),
            "crc_ok": self.crc_ok,
        }
        return json_tail(out, self.reserved_flags, glucose=self.glucose, trend=self.trend,
                         quality=self.quality)


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
        if flags & _F_WARNING:
            warning = raw[p]
            p += 1
        if flags & _F_CAL_TEMP:
            cal_temp = raw[p]
            p += 1
        if flags & _F_STATUS:
            status = raw[p]
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
    values = _RECORD.read_fields(r, flags)
    body_len = r.pos - start
    crc = None
    if size == body_len + 2:
        crc = r.u16("E2E-CRC")
    elif size != body_len:
        raise MalformedPayload(
            "2aa7", start, f"size field says {size} bytes but the flags 0x{flags:02x} give "
            f"{body_len} (or {body_len + 2} with E2E-CRC)", raw)
    return CGMRecord(**values, crc=crc, crc_ok=crc_ok(raw, start, start + body_len, crc),
                     reserved_flags=flags & _F_RESERVED), r.pos


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


@measurement
def to_readings(m: CGMMeasurement, ctx: ReadingContext) -> list[Reading]:
    """One ``cgm_glucose`` (mg/dL) per record.

    ``time`` is session start + time offset.  ``session_start`` is the device's Session Start
    Time: naive (the device's clock, converted with ``device_clock_offset``) or aware (already
    UTC).  Without it the receive time stands in and ``extra["time_estimated"]`` says so.
    A record whose E2E-CRC does not match makes the whole frame malformed (the stored raw
    frame and a later RACP fetch recover it) — a corrupted glucose value is never stored.
    """
    session_start = ctx.session_start
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
            raise MalformedPayload(ctx.characteristic, pos, f"record {i + 1}: E2E-CRC mismatch "
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
class CGMFeature(TableCodec):
    """CGM Feature 0x2AA8 (CGMS §3.2): features (24 bits), type/location nibbles, E2E-CRC.

    The CRC field is always there: 0xFFFF when E2E-CRC is not supported (bit 12 clear).
    """

    characteristic: ClassVar[str] = "2aa8"
    name: ClassVar[str] = "CGM Feature"
    LAYOUT: ClassVar[Layout] = Layout.fixed(
        Field("features", "features", U24),
        Field(("type", "sample_location"), "type/sample location", NIBBLES),
        Field("crc", "E2E-CRC", U16),
    )

    features: int
    type: int
    sample_location: int
    crc: int = 0xFFFF

    @property
    def e2e_crc_supported(self) -> bool:
        return bool(self.features >> 12 & 1)

    def to_json(self) -> dict[str, Any]:
        body = self.to_bytes()[:4]
        return {
            "features": bits(self.features, FEATURE_BITS),
            "type": enum_name(self.type, SAMPLE_TYPES),
            "sample_location": enum_name(self.sample_location, CGM_LOCATIONS),
            "crc_ok": crc16_mcrf4xx(body) == self.crc if self.e2e_crc_supported else None,
        }


@dataclass(frozen=True, slots=True)
class CGMStatus(TableCodecWithCrc):
    """CGM Status 0x2AA9 (CGMS §3.3): time offset (uint16 min), status (24 bits, the
    annunciation's structure, always 3 octets), optional E2E-CRC."""

    characteristic: ClassVar[str] = "2aa9"
    name: ClassVar[str] = "CGM Status"
    LAYOUT: ClassVar[Layout] = Layout.fixed(
        Field("time_offset", "time offset", U16),
        Field("status", "status", U24),
        crc_tail=True,
    )

    time_offset: int
    status: int
    crc: int | None = None
    crc_ok: bool | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"time_offset_min": self.time_offset,
                "sensor_status": bits(self.status, STATUS_BITS), "crc_ok": self.crc_ok}


DST_OFFSETS = {0: "standard_time", 2: "half_hour_daylight", 4: "daylight_time",
               8: "double_daylight_time", 255: "unknown"}


@dataclass(frozen=True, slots=True)
class CGMSessionStartTime(TableCodecWithCrc):
    """CGM Session Start Time 0x2AAA (CGMS §3.4): Date Time (7), Time Zone (sint8, 15-minute
    steps, −128 unknown), DST Offset (uint8: 0, 2, 4, 8 quarter-hours; 255 unknown),
    optional E2E-CRC."""

    characteristic: ClassVar[str] = "2aaa"
    name: ClassVar[str] = "CGM Session Start Time"
    LAYOUT: ClassVar[Layout] = Layout.fixed(
        Field("start", "session start time", DATE_TIME),
        Field("time_zone", "time zone", S8),
        Field("dst_offset", "DST offset", P8),
        crc_tail=True,
    )

    start: DateTime
    time_zone: int
    dst_offset: int
    crc: int | None = None
    crc_ok: bool | None = field(default=None, compare=False)

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
class CGMSessionRunTime(TableCodecWithCrc):
    """CGM Session Run Time 0x2AAB (CGMS §3.5): uint16 hours, optional E2E-CRC."""

    characteristic: ClassVar[str] = "2aab"
    name: ClassVar[str] = "CGM Session Run Time"
    LAYOUT: ClassVar[Layout] = Layout.fixed(
        Field("run_time_h", "session run time", U16), crc_tail=True)

    run_time_h: int
    crc: int | None = None
    crc_ok: bool | None = field(default=None, compare=False)

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
