"""The server side of the Record Access Control Point (GLS 1.0 §3.4 / CGMS 1.0.2 §3.10).

Shared by the glucose meter and the CGM: a write to the RACP starts a procedure, whose
records go out as notifications on the measurement characteristic and whose end is a RACP
*indication* (a response code, or the number of records).  What the spec requires and the
gateway must cope with:

* the client must have enabled RACP indications first, else the write fails with ATT error
  0xFD (Client Characteristic Configuration Descriptor improperly configured);
* a second procedure while one runs fails with ATT error 0xFE (procedure already in
  progress) — except Abort, which stops the running one and is answered "success";
* operators: all (1), ≤ (2), ≥ (3), within range (4), first (5), last (6); filter type 1 is
  the sequence number (glucose) or time offset (CGM), 2 the user-facing time (glucose);
* an empty selection is answered "no records found" (6), an unknown op code "op code not
  supported" (2), a bad operator "invalid operator" (3) / "operator not supported" (4), a
  bad operand "invalid operand" (5) / "operand not supported" (9);
* records are deleted only by an explicit Delete Stored Records.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Generic, TypeVar

from edge_gateway.drivers.profiles.base import DateTime
from edge_gateway.drivers.profiles.racp import RecordAccessControlPoint as Racp
from edge_gateway.errors import MalformedPayload

from ..peripheral import AttError, Link, uuid128
from .base import pause

R = TypeVar("R")

RACP = 0x2A52
OP_REPORT, OP_DELETE, OP_ABORT, OP_NUMBER, OP_NUMBER_RESPONSE, OP_RESPONSE = 1, 2, 3, 4, 5, 6
SUCCESS, OP_NOT_SUPPORTED, INVALID_OPERATOR, OPERATOR_NOT_SUPPORTED = 1, 2, 3, 4
INVALID_OPERAND, NO_RECORDS, ABORT_UNSUCCESSFUL, NOT_COMPLETED, OPERAND_NOT_SUPPORTED = (
    5, 6, 7, 8, 9)
ALL, LE, GE, RANGE, FIRST, LAST = 1, 2, 3, 4, 5, 6


def select(
    records: Sequence[R],
    req: Racp,
    key: Callable[[R], int],
    user_time: Callable[[R], datetime] | None,
) -> list[R] | int:
    """The records ``req`` addresses (``records`` sorted by ``key``), or a response code."""
    op = req.operator
    if op == 0:
        return INVALID_OPERATOR
    if op > LAST:
        return OPERATOR_NOT_SUPPORTED
    if op in (ALL, FIRST, LAST):
        if req.operand_raw or req.filter_type is not None:
            return INVALID_OPERAND
        if not records:
            return list(records)
        return list(records) if op == ALL else [records[0] if op == FIRST else records[-1]]
    # ≤, ≥, within range: a filter is required.
    if req.filter_type is None:
        return INVALID_OPERAND
    if req.filter_type == 1:
        lo, hi = req.filter_min, req.filter_max
        if not isinstance(lo, int) or (op == RANGE and not isinstance(hi, int)):
            return INVALID_OPERAND

        def value(r: R) -> float:
            return key(r)

        lo_v, hi_v = float(lo), float(hi) if isinstance(hi, int) else 0.0
    elif req.filter_type == 2 and user_time is not None:
        lo_t, hi_t = req.filter_min, req.filter_max
        if not isinstance(lo_t, DateTime) or (op == RANGE and not isinstance(hi_t, DateTime)):
            return INVALID_OPERAND
        lo_dt = lo_t.to_datetime()
        hi_dt = hi_t.to_datetime() if isinstance(hi_t, DateTime) else lo_dt
        if lo_dt is None or hi_dt is None:
            return INVALID_OPERAND
        assert user_time is not None
        timer = user_time

        def value(r: R) -> float:
            return timer(r).timestamp()

        lo_v, hi_v = lo_dt.timestamp(), hi_dt.timestamp()
    else:
        return OPERAND_NOT_SUPPORTED
    if op == RANGE and lo_v > hi_v:
        return INVALID_OPERAND
    if op == LE:
        return [r for r in records if value(r) <= lo_v]
    if op == GE:
        return [r for r in records if value(r) >= lo_v]
    return [r for r in records if lo_v <= value(r) <= hi_v]


class RacpServer(Generic[R]):
    """Runs RACP procedures for one device.

    ``records()`` gives the stored records sorted by ``key``; ``send_record(link, batch)``
    notifies a batch of records (one per notification for glucose; CGM packs several);
    ``remove(records)`` deletes them from the device.
    """

    def __init__(
        self,
        *,
        records: Callable[[], Sequence[R]],
        key: Callable[[R], int],
        send_records: Callable[[Link, Sequence[R]], None],
        remove: Callable[[Sequence[R]], None],
        user_time: Callable[[R], datetime] | None = None,
        batch: int = 1,
        pace_s: float = 0.0,
        indicate_response: Callable[[Link, bytes], Awaitable[None]] | None = None,
    ) -> None:
        self.records = records
        self.key = key
        self.send_records = send_records
        self.remove = remove
        self.user_time = user_time
        self.batch = batch
        self.pace_s = pace_s
        self._indicate_response = indicate_response
        self.link: Link | None = None
        self.busy = False
        self._abort = False
        #: Every request received, for tests and the demo's status line.
        self.requests: list[Racp] = []

    def reset(self, link: Link | None) -> None:
        """A new connection (or none): a procedure does not survive the link."""
        self.link = link
        self.busy = False
        self._abort = False

    async def _respond(self, link: Link, value: Racp) -> None:
        data = value.to_bytes()
        if self._indicate_response is not None:
            await self._indicate_response(link, data)
        else:
            await link.indicate(uuid128(RACP), data)

    def on_write(self, data: bytes) -> Awaitable[None] | None:
        link = self.link
        if link is None:
            raise AttError(AttError.UNLIKELY_ERROR, "not connected")
        if not link.is_subscribed(uuid128(RACP)):
            raise AttError(AttError.CCCD_IMPROPERLY_CONFIGURED, "RACP indications are off")
        try:
            req = Racp.from_bytes(data)
        except MalformedPayload:
            # Too short to hold an op code and operator: answer like an unknown procedure.
            op = data[0] if data else 0
            return self._respond(link, Racp.response(op, INVALID_OPERAND))
        self.requests.append(req)
        if req.op_code == OP_ABORT:
            if req.operator != 0 or req.operand_raw:
                return self._respond(link, Racp.response(OP_ABORT, INVALID_OPERATOR))
            self._abort = self.busy
            return self._finish_abort(link)
        if self.busy:
            raise AttError(AttError.PROCEDURE_ALREADY_IN_PROGRESS, "RACP procedure running")
        if req.op_code not in (OP_REPORT, OP_DELETE, OP_NUMBER):
            return self._respond(link, Racp.response(req.op_code, OP_NOT_SUPPORTED))
        self.busy = True
        return self._procedure(link, req)

    async def _finish_abort(self, link: Link) -> None:
        while self.busy:
            await pause(0.001)
        self._abort = False
        await self._respond(link, Racp.response(OP_ABORT, SUCCESS))

    async def _procedure(self, link: Link, req: Racp) -> None:
        try:
            chosen = select(self.records(), req, self.key, self.user_time)
            if isinstance(chosen, int):
                await self._respond(link, Racp.response(req.op_code, chosen))
            elif req.op_code == OP_NUMBER:
                await self._respond(link, Racp.number_response(len(chosen)))
            elif not chosen:
                await self._respond(link, Racp.response(req.op_code, NO_RECORDS))
            elif req.op_code == OP_DELETE:
                self.remove(chosen)
                await self._respond(link, Racp.response(OP_DELETE, SUCCESS))
            else:
                for i in range(0, len(chosen), self.batch):
                    if self._abort:
                        return  # the Abort is answered; the report gets no response (GLS §3.4.3)
                    self.send_records(link, chosen[i : i + self.batch])
                    await pause(self.pace_s)
                await self._respond(link, Racp.response(OP_REPORT, SUCCESS))
        finally:
            self.busy = False
