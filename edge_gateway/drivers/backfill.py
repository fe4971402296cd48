"""Backfill over the Record Access Control Point: fetch every stored record the gateway lacks.

Glucose meters (GLS 1.0 §3.2/§4.9) are asked by sequence number; CGMs (CGMS 1.0.1 §4.12) by time
offset within the sensor session.  Both answer a "Report stored records" request (RACP op 0x01)
with one notification per record on their measurement characteristic, then indicate the result
on the RACP (op 0x06 "Response Code": 0x01 success, 0x06 no records found).

Resets are detected, never mistaken for "nothing new":

* Glucose: we ask for records with sequence number *>= the last one we hold* (not > it), so the
  first record back must be that very record.  If the device has no such record, or its base time
  differs from ours, the meter's counter restarted (reboot, battery change, memory cleared):
  the reset is reported to the ledger (which bumps the device's reset epoch, so old and new
  ``seq:N`` never collide) and *all* records are fetched.
* CGM: the Session Start Time identifies a sensor session; a new one restarts the time offsets.
  A different start time (or offsets that went backwards) is a reset; all records are fetched.

Records are buffered until the RACP procedure ends and the reset check is done, then handed on
in order; nothing is ever deleted from a device here (RACP delete is not used).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..errors import MalformedPayload
from .racp import RecordAccessControlPoint

GLUCOSE_MEASUREMENT = "2a18"
GLUCOSE_CONTEXT = "2a34"
CGM_MEASUREMENT = "2aa7"
CGM_SESSION_START = "2aaa"
RACP = "2a52"

# RACP op codes / operators / filter types / response codes (GLS 1.0 Table 3.2, 3.3, 3.6).
OP_REPORT = 0x01
OP_RESPONSE = 0x06
OPER_ALL = 0x01
OPER_GE = 0x03
OPER_LAST = 0x06
FILTER_SEQUENCE = 0x01  # GLS: sequence number
FILTER_TIME_OFFSET = 0x01  # CGMS: time offset (same value, different meaning per service)
RSP_SUCCESS = 0x01
RSP_NO_RECORDS = 0x06

Frame = tuple[str, datetime, bytes]  # (characteristic, received_at, payload)


def report_all() -> bytes:
    return RecordAccessControlPoint.report_all().to_bytes()


def report_from(value: int, filter_type: int = FILTER_SEQUENCE) -> bytes:
    """Report stored records with ``filter_type`` value >= ``value`` (uint16)."""
    return RecordAccessControlPoint(OP_REPORT, OPER_GE, filter_type, value & 0xFFFF).to_bytes()


def response_code(payload: bytes) -> tuple[int, int] | None:
    """``(request op, response code)`` of a RACP Response Code indication, else None."""
    try:
        racp = RecordAccessControlPoint.from_bytes(payload)
    except MalformedPayload:
        return None
    if racp.op_code != OP_RESPONSE or racp.request_op_code is None or racp.response_code is None:
        return None
    return racp.request_op_code, racp.response_code


@dataclass(frozen=True, slots=True)
class RecordMark:
    """The newest record the gateway holds for one device characteristic.

    ``key`` is the sequence number (glucose) or the time offset in minutes (CGM); ``identity``
    ties it to one record for certain: the record's base time bytes (glucose) or the CGM's
    session start time bytes.
    """

    key: int
    identity: bytes


class RecordLedger(Protocol):
    """What the gateway holds; the daemon implements it over the store."""

    def last_record(self, device_id: str, characteristic: str) -> RecordMark | None: ...

    def reset_detected(self, device_id: str, characteristic: str, reason: str) -> None:
        """The device restarted its record identities: new records go to a new reset epoch."""


class MemoryLedger:
    """A :class:`RecordLedger` in memory (tests, benchmarks, a gateway without a store)."""

    def __init__(self) -> None:
        self.marks: dict[tuple[str, str], RecordMark] = {}
        self.resets: list[tuple[str, str, str]] = []

    def last_record(self, device_id: str, characteristic: str) -> RecordMark | None:
        return self.marks.get((device_id, characteristic))

    def reset_detected(self, device_id: str, characteristic: str, reason: str) -> None:
        self.resets.append((device_id, characteristic, reason))
        self.marks.pop((device_id, characteristic), None)

    def note(self, device_id: str, characteristic: str, mark: RecordMark) -> None:
        self.marks[(device_id, characteristic)] = mark


class RacpPort(Protocol):
    """What a backfill needs from the session."""

    device_id: str

    async def racp(self, request: bytes, collect: Sequence[str]) -> tuple[int, list[Frame]]:
        """Write ``request`` to the RACP; return the response code and the frames received on
        the ``collect`` characteristics until the response, in order (not yet delivered)."""

    async def read(self, uuid: str) -> bytes: ...

    def deliver(self, frames: Sequence[Frame]) -> None: ...


def glucose_mark(payload: bytes) -> RecordMark | None:
    """Sequence number and base time (+ time offset) of a Glucose Measurement (GLS §3.106)."""
    if len(payload) < 10:
        return None
    seq = payload[1] | (payload[2] << 8)
    end = 12 if payload[0] & 0x01 and len(payload) >= 12 else 10
    return RecordMark(seq, bytes(payload[3:end]))


def cgm_offsets(payload: bytes) -> list[int]:
    """Time offsets of the records packed in one CGM Measurement notification (CGMS §3.1)."""
    out: list[int] = []
    pos = 0
    while pos + 6 <= len(payload):
        size = payload[pos]
        if size < 6 or pos + size > len(payload):
            break
        out.append(payload[pos + 4] | (payload[pos + 5] << 8))
        pos += size
    return out


class GlucoseBackfill:
    """Backfill of a glucose meter by sequence number."""

    characteristic = GLUCOSE_MEASUREMENT

    def __init__(self, ledger: RecordLedger | None) -> None:
        self.ledger = ledger
        self.mark: RecordMark | None = None

    def observe(self, char: str, payload: bytes) -> None:
        """A live measurement arrived: it is the newest record now."""
        if char == GLUCOSE_MEASUREMENT and (mark := glucose_mark(payload)) is not None:
            self.mark = mark

    def _start_mark(self, device_id: str) -> RecordMark | None:
        held = self.ledger.last_record(device_id, self.characteristic) if self.ledger else None
        if self.mark is None:
            return held
        if held is None or self.mark.key >= held.key:
            return self.mark
        return held

    async def run(self, port: RacpPort, chars: Sequence[str]) -> int:
        """Fetch what is missing; returns the number of records handed on."""
        mark = self._start_mark(port.device_id)
        if mark is None:
            return self._take(port, await port.racp(report_all(), chars), skip=None)
        code, frames = await port.racp(report_from(mark.key), chars)
        first = next((glucose_mark(p) for c, _, p in frames if c == GLUCOSE_MEASUREMENT), None)
        if code == RSP_SUCCESS and first is not None and first.key > mark.key:
            # Our newest record is gone from the meter but the counter went on: no reset.
            return self._take(port, (code, frames), skip=None)
        if code == RSP_SUCCESS and first is not None and first == mark:
            return self._take(port, (code, frames), skip=mark.key)
        reason = (
            f"sequence reset: meter has no record {mark.key}" if first is None
            else f"sequence reset: record {mark.key} now has another time"
        )
        if self.ledger is not None:
            self.ledger.reset_detected(port.device_id, self.characteristic, reason)
        self.mark = None
        return self._take(port, await port.racp(report_all(), chars), skip=None)

    def _take(self, port: RacpPort, answer: tuple[int, list[Frame]], skip: int | None) -> int:
        _code, frames = answer
        keep: list[Frame] = []
        for frame in frames:
            char, _, payload = frame
            seq = payload[1] | (payload[2] << 8) if len(payload) >= 3 else None
            if skip is not None and seq == skip and char in (GLUCOSE_MEASUREMENT,
                                                             GLUCOSE_CONTEXT):
                continue  # the record we already hold, sent back as proof of identity
            keep.append(frame)
            if char == GLUCOSE_MEASUREMENT:
                self.observe(char, payload)
        port.deliver(keep)
        return sum(1 for c, _, _ in keep if c == GLUCOSE_MEASUREMENT)


class CgmBackfill:
    """Backfill of a CGM by time offset within its sensor session."""

    characteristic = CGM_MEASUREMENT

    def __init__(self, ledger: RecordLedger | None) -> None:
        self.ledger = ledger
        self.mark: RecordMark | None = None
        self.session: bytes | None = None

    def observe(self, char: str, payload: bytes) -> None:
        if char == CGM_MEASUREMENT and self.session is not None:
            offsets = cgm_offsets(payload)
            if offsets:
                self.mark = RecordMark(max(offsets), self.session)

    async def run(self, port: RacpPort, chars: Sequence[str]) -> int:
        self.session = await port.read(CGM_SESSION_START)
        held = self.ledger.last_record(port.device_id, self.characteristic) if self.ledger else None
        mark = self.mark if self.mark is not None else held
        if held is not None and mark is not None and held.identity == mark.identity:
            mark = max(mark, held, key=lambda m: m.key)
        if mark is not None and mark.identity != self.session:
            if self.ledger is not None:
                self.ledger.reset_detected(
                    port.device_id, self.characteristic, "new CGM sensor session")
            mark = None
        request = report_all() if mark is None else report_from(mark.key + 1, FILTER_TIME_OFFSET)
        _code, frames = await port.racp(request, chars)
        for char, _, payload in frames:
            self.observe(char, payload)
        port.deliver(frames)
        return sum(len(cgm_offsets(p)) for c, _, p in frames if c == CGM_MEASUREMENT)


Backfill = GlucoseBackfill | CgmBackfill
