"""Record Access Control Point 0x2A52 (GLS §3.4 and the GSS "Record Access Control Point").

Shared by Glucose, CGM, PLX and Weight Scale sessions: one op code (uint8), one operator
(uint8) and an operand that depends on both:

* report/delete/report-number (1, 2, 4) with operator ≤ / ≥ (2, 3): filter type (uint8) + one
  value; with "within range" (4): filter type + min + max; other operators: no operand.
  Filter type 1 = sequence number (uint16; CGM: time offset, also uint16), 2 = user facing
  time (Date Time, 7 octets).
* number of stored records response (5): operator null (0), operand uint16 count.
* response code (6): operator null, operand = request op code (uint8) + response code (uint8).

Unknown op codes, operators or filter types keep their operand bytes (``operand_raw``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from edge_gateway.drivers.profiles.base import DateTime, Reader, enum_name, opt_name, p16

RACP_OPS = {1: "report_stored_records", 2: "delete_stored_records", 3: "abort_operation",
            4: "report_number_of_stored_records", 5: "number_of_stored_records_response",
            6: "response_code"}
RACP_OPERATORS = {0: "null", 1: "all_records", 2: "less_than_or_equal_to",
                  3: "greater_than_or_equal_to", 4: "within_range_of", 5: "first_record",
                  6: "last_record"}
RACP_FILTERS = {1: "sequence_number", 2: "user_facing_time"}
RACP_RESPONSES = {1: "success", 2: "op_code_not_supported", 3: "invalid_operator",
                  4: "operator_not_supported", 5: "invalid_operand", 6: "no_records_found",
                  7: "abort_unsuccessful", 8: "procedure_not_completed",
                  9: "operand_not_supported"}

_FILTERED_OPS = frozenset({1, 2, 4})
FilterValue = int | DateTime


@dataclass(frozen=True, slots=True)
class RecordAccessControlPoint:
    """Record Access Control Point 0x2A52 (GSS "Record Access Control Point")."""

    characteristic: ClassVar[str] = "2a52"
    name: ClassVar[str] = "Record Access Control Point"

    op_code: int
    operator: int = 0
    filter_type: int | None = None
    filter_min: FilterValue | None = None
    filter_max: FilterValue | None = None
    number_of_records: int | None = None
    request_op_code: int | None = None
    response_code: int | None = None
    operand_raw: bytes = b""

    # --- the requests a collector sends and the responses a server sends, by name ---
    @classmethod
    def report_all(cls) -> RecordAccessControlPoint:
        return cls(1, 1)

    @classmethod
    def report_from_sequence(cls, seq: int) -> RecordAccessControlPoint:
        """Report every record with sequence number ≥ ``seq`` (backfill after a gap)."""
        return cls(1, 3, 1, seq)

    @classmethod
    def number_response(cls, count: int) -> RecordAccessControlPoint:
        return cls(5, 0, number_of_records=count)

    @classmethod
    def response(cls, request_op_code: int, code: int) -> RecordAccessControlPoint:
        return cls(6, 0, request_op_code=request_op_code, response_code=code)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        r = Reader("2a52", raw)
        op = r.u8("op code")
        operator = r.u8("operator")
        if op == 5:
            count = r.u16("number of records")
            r.end()
            return cls(op, operator, number_of_records=count)
        if op == 6:
            req = r.u8("request op code")
            code = r.u8("response code value")
            r.end()
            return cls(op, operator, request_op_code=req, response_code=code)
        if op in _FILTERED_OPS or op == 3:
            if operator in (2, 3, 4) and op != 3:
                ftype = r.u8("filter type")
                if ftype == 1:
                    lo: FilterValue = r.u16("filter value")
                    hi: FilterValue | None = r.u16("filter maximum") if operator == 4 else None
                elif ftype == 2:
                    lo = r.datetime7("filter time")
                    hi = r.datetime7("filter maximum time") if operator == 4 else None
                else:
                    return cls(op, operator, ftype, operand_raw=r.rest())
                r.end()
                return cls(op, operator, ftype, lo, hi)
            if operator in RACP_OPERATORS:
                r.end()
                return cls(op, operator)
        return cls(op, operator, operand_raw=r.rest())

    def to_bytes(self) -> bytes:
        out = bytes((self.op_code, self.operator))
        if self.number_of_records is not None:
            out += p16(self.number_of_records)
        if self.request_op_code is not None:
            out += bytes((self.request_op_code,))
        if self.response_code is not None:
            out += bytes((self.response_code,))
        if self.filter_type is not None:
            out += bytes((self.filter_type,))
            for v in (self.filter_min, self.filter_max):
                if isinstance(v, DateTime):
                    out += v.to_bytes()
                elif v is not None:
                    out += p16(v)
        return out + self.operand_raw

    def to_json(self) -> dict[str, Any]:
        def fv(v: FilterValue | None) -> Any:
            return v.to_json() if isinstance(v, DateTime) else v

        out: dict[str, Any] = {
            "op_code": enum_name(self.op_code, RACP_OPS),
            "operator": enum_name(self.operator, RACP_OPERATORS),
            "request_op_code": opt_name(self.request_op_code, RACP_OPS),
            "response_code": opt_name(self.response_code, RACP_RESPONSES),
            "number_of_records": self.number_of_records,
        }
        if self.filter_type is not None:
            out["filter_type"] = enum_name(self.filter_type, RACP_FILTERS)
            out["filter_min"] = fv(self.filter_min)
            if self.filter_max is not None:
                out["filter_max"] = fv(self.filter_max)
        if self.operand_raw:
            out["operand_hex"] = self.operand_raw.hex()
        return out
