"""CGM Specific Ops Control Point 0x2AAC (CGMS §3.6), kept apart from cgm.py for size.

A helper module of the CGM profile (``cgm.PROFILE`` lists its codec): it declares no profile.

Every op code has a fixed operand, so an extra two bytes after it can only be the E2E-CRC
(present when the CGM Feature says so).  Unknown op codes are kept with their operand bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from edge_gateway.drivers.profiles.base import (
    SAMPLE_TYPES,
    Reader,
    bits,
    enum_name,
    opt_name,
    p16,
    pnib,
    psf,
)
from edge_gateway.drivers.profiles.e2e_crc import end_with_crc, with_crc
from edge_gateway.drivers.profiles.ieee11073 import SFloat

#: CGM Sample Location (CGMS §3.2; types are base.SAMPLE_TYPES), shared with cgm.py.
CGM_LOCATIONS = {1: "finger", 2: "alternate_site_test", 3: "earlobe", 4: "control_solution",
                 5: "subcutaneous_tissue", 15: "not_available"}
SOCP_OPS = {
    1: "set_communication_interval", 2: "get_communication_interval",
    3: "communication_interval_response", 4: "set_glucose_calibration_value",
    5: "get_glucose_calibration_value", 6: "glucose_calibration_value_response",
    7: "set_patient_high_alert_level", 8: "get_patient_high_alert_level",
    9: "patient_high_alert_level_response", 10: "set_patient_low_alert_level",
    11: "get_patient_low_alert_level", 12: "patient_low_alert_level_response",
    13: "set_hypo_alert_level", 14: "get_hypo_alert_level", 15: "hypo_alert_level_response",
    16: "set_hyper_alert_level", 17: "get_hyper_alert_level",
    18: "hyper_alert_level_response", 19: "set_rate_of_decrease_alert_level",
    20: "get_rate_of_decrease_alert_level", 21: "rate_of_decrease_alert_level_response",
    22: "set_rate_of_increase_alert_level", 23: "get_rate_of_increase_alert_level",
    24: "rate_of_increase_alert_level_response", 25: "reset_device_specific_alert",
    26: "start_session", 27: "stop_session", 28: "response_code",
}
SOCP_RESPONSES = {1: "success", 2: "op_code_not_supported", 3: "invalid_operand",
                  4: "procedure_not_completed", 5: "parameter_out_of_range"}
CALIBRATION_STATUS_BITS = {0: "calibration_data_rejected", 1: "calibration_data_out_of_range",
                           2: "calibration_process_pending"}

_INTERVAL_OPS = frozenset({1, 3})
_LEVEL_OPS = frozenset({7, 9, 10, 12, 13, 15, 16, 18, 19, 21, 22, 24})
_CALIBRATION_OPS = frozenset({4, 6})
_EMPTY_OPS = frozenset({2, 8, 11, 14, 17, 20, 23, 25, 26, 27})


@dataclass(frozen=True, slots=True)
class Calibration:
    """Calibration Value operand (CGMS §3.6.2.4): glucose (SFLOAT mg/dL), calibration time
    (uint16 min), type/location nibbles, next calibration time (uint16 min), record number
    (uint16), status (8 bits)."""

    glucose: SFloat
    time_min: int
    type: int
    sample_location: int
    next_time_min: int
    record_number: int
    status: int

    def to_bytes(self) -> bytes:
        return (psf(self.glucose) + p16(self.time_min)
                + pnib(self.type, self.sample_location)
                + p16(self.next_time_min) + p16(self.record_number)
                + bytes((self.status & 0xFF,)))

    def to_json(self) -> dict[str, Any]:
        return {
            "glucose_mg_dl": self.glucose.value, "calibration_time_min": self.time_min,
            "type": enum_name(self.type, SAMPLE_TYPES),
            "sample_location": enum_name(self.sample_location, CGM_LOCATIONS),
            "next_calibration_time_min": self.next_time_min,
            "record_number": self.record_number,
            "status": bits(self.status, CALIBRATION_STATUS_BITS),
        }


@dataclass(frozen=True, slots=True)
class CGMSpecificOpsControlPoint:
    """CGM Specific Ops Control Point 0x2AAC (CGMS §3.6): op code (uint8) + operand + CRC."""

    characteristic: ClassVar[str] = "2aac"
    name: ClassVar[str] = "CGM Specific Ops Control Point"

    op_code: int
    interval_min: int | None = None
    level: SFloat | None = None
    calibration: Calibration | None = None
    record_number: int | None = None
    request_op_code: int | None = None
    response_code: int | None = None
    #: Operand of an op code this codec does not know (kept as sent, CRC included).
    operand_raw: bytes = b""
    crc: int | None = None
    crc_ok: bool | None = field(default=None, compare=False)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        r = Reader("2aac", raw)
        op = r.u8("op code")
        interval = level = cal = rec = req = resp = None
        if op in _INTERVAL_OPS:
            interval = r.u8("communication interval")
        elif op in _LEVEL_OPS:
            level = r.sfloat("alert level")
        elif op in _CALIBRATION_OPS:
            g = r.sfloat("calibration glucose concentration")
            t = r.u16("calibration time")
            kind, location = r.nibbles("calibration type/sample location")
            nxt = r.u16("next calibration time")
            num = r.u16("calibration data record number")
            st = r.u8("calibration status")
            cal = Calibration(g, t, kind, location, nxt, num, st)
        elif op == 5:
            rec = r.u16("calibration data record number")
        elif op == 28:
            req = r.u8("request op code")
            resp = r.u8("response code value")
        elif op not in _EMPTY_OPS:
            return cls(op, operand_raw=r.rest())
        return cls(op, interval, level, cal, rec, req, resp, b"", *end_with_crc(r))

    def to_bytes(self, add_crc: bool = False) -> bytes:
        body = bytearray((self.op_code,))
        if self.interval_min is not None:
            body.append(self.interval_min)
        if self.level is not None:
            body += psf(self.level)
        if self.calibration is not None:
            body += self.calibration.to_bytes()
        if self.record_number is not None:
            body += p16(self.record_number)
        if self.request_op_code is not None:
            body.append(self.request_op_code)
        if self.response_code is not None:
            body.append(self.response_code)
        body += self.operand_raw
        return with_crc(bytes(body), self.crc, add_crc)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "op_code": enum_name(self.op_code, SOCP_OPS),
            "request_op_code": opt_name(self.request_op_code, SOCP_OPS),
            "response_code": opt_name(self.response_code, SOCP_RESPONSES),
            "crc_ok": self.crc_ok,
        }
        if self.interval_min is not None:
            out["communication_interval_min"] = self.interval_min
        if self.level is not None:
            out["level"] = self.level.value
            if self.level.special:
                out["level_special"] = self.level.special
        if self.calibration is not None:
            out["calibration"] = self.calibration.to_json()
        if self.record_number is not None:
            out["record_number"] = self.record_number
        if self.operand_raw:
            out["operand_hex"] = self.operand_raw.hex()
        return out
