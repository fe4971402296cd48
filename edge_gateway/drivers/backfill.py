"""Backfill over the Record Access Control Point: fetch every stored record the gateway lacks.

Glucose meters (GLS 1.0 §3.2/§4.9) are asked by sequence number; CGMs (CGMS 1.0.1 §4.12) by time
offset within the sensor session.  Both answer a "Report stored records" request (RACP op 0x01)
with one notification per record (CGM: one or more records per notification) on their
measurement characteristic, then indicate the result on the RACP (op 0x06 "Response Code":
0x01 success, 0x06 no records found).

Resets are detected, never mistaken for "nothing new":

* Glucose: we ask for records with sequence number *>= the last one we hold* (not > it), so the
  first record back must be that very record.  If the device has no such record, or its base time
  differs from ours, the meter's counter restarted (reboot, battery change, memory cleared):
  the reset is reported to the ledger (which bumps the device's reset epoch, so old and new
  ``seq:N`` never collide) and *all* records are fetched.
* Blood-pressure cuffs with Blood Pressure Records (0x2B36, BLS 1.1): as glucose, the recorded
  measurement bytes being the record's identity.  Older cuffs indicate their stored
  measurements on connect; subscribing is all they need.
* CGM: the Session Start Time identifies a sensor session; a new one restarts the time offsets.
  A different start time is a reset; all records are fetched.

Holes are refilled: a frame that does not decode (corrupt, truncated, bad E2E-CRC) leaves a hole
between the good records around it.  The hole is asked for again with "within range of"
(operator 0x04), a few passes at most, right away (also while streaming live) and again after
every reconnect until it is filled.  Open holes live in memory: a gateway restart forgets them
(their frames are kept as rejected raw frames, so nothing is silently lost).

Records are buffered until the RACP procedure ends and the reset check is done, then handed on
in order; nothing is ever deleted from a device here (RACP delete is not used).

Which characteristic holds a profile's records and how they are identified comes from its
``PROFILE.racp`` (:class:`~edge_gateway.drivers.profiles.base.Racp`); :data:`STRATEGIES` maps
that identity (``sequence``, ``time_offset``, ``recorded``) to the backfill class here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from edge_gateway.drivers import registry
from edge_gateway.drivers.profiles.base import Racp, RecordIdentity
from edge_gateway.drivers.profiles.racp import RecordAccessControlPoint
from edge_gateway.errors import DeviceError, MalformedPayload

#: The Record Access Control Point (GSS "Record Access Control Point").
RACP = RecordAccessControlPoint.characteristic

# RACP op codes / operators / filter types / response codes (GLS 1.0 Table 3.2, 3.3, 3.6).
OP_REPORT = 0x01
OP_RESPONSE = 0x06
OPER_ALL = 0x01
OPER_GE = 0x03
OPER_RANGE = 0x04
FILTER_SEQUENCE = 0x01  # GLS: sequence number; CGMS: time offset (same value)
RSP_SUCCESS = 0x01
RSP_NO_RECORDS = 0x06
#: Refill passes per backfill; each pass only asks for what is still missing.
MAX_REFILL_PASSES = 4
_TOP = 0xFFFF
#: How many companion (context) keys a backfill remembers: the newest record's is the one
#: that matters (it comes back as proof of identity), a few more cover a burst.
_COMPANIONS_KEPT = 16

Frame = tuple[str, datetime, bytes]  # (characteristic, received_at, payload)
Hole = tuple[int, int]  # inclusive key range


_HALF = 0x8000


def seq_after(a: int, b: int) -> bool:
    """Whether uint16 sequence number ``a`` comes after ``b`` (serial-number arithmetic,
    RFC 1982): GLS §3.106.2 and the BLS 1.1 Record count on from 65535 to 0, so 0 follows
    65535.  A record up to 32767 ahead is newer, one further ahead is older."""
    d = (a - b) & _TOP
    return 0 < d < _HALF


def report_all() -> bytes:
    return RecordAccessControlPoint.report_all().to_bytes()


def report_from(value: int, filter_type: int = FILTER_SEQUENCE) -> bytes:
    """Report stored records with key >= ``value`` (uint16)."""
    return RecordAccessControlPoint(OP_REPORT, OPER_GE, filter_type, value & _TOP).to_bytes()


def report_range(lo: int, hi: int, filter_type: int = FILTER_SEQUENCE) -> bytes:
    """Report stored records with ``lo`` <= key <= ``hi``."""
    return RecordAccessControlPoint(OP_REPORT, OPER_RANGE, filter_type, lo & _TOP,
                                    hi & _TOP).to_bytes()


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


def sequence_mark(payload: bytes) -> RecordMark | None:
    """Sequence number and base time (+ time offset) of a GLS-style record (Glucose
    Measurement, GLS §3.106: flags, uint16 sequence number, Date Time base time, optional
    sint16 time offset): the ``sequence`` record identity."""
    if len(payload) < 10:
        return None
    seq = payload[1] | (payload[2] << 8)
    end = 12 if payload[0] & 0x01 and len(payload) >= 12 else 10
    return RecordMark(seq, bytes(payload[3:end]))


def companion_key(payload: bytes) -> int | None:
    """The sequence number a companion frame belongs to (Glucose Measurement Context, GSS:
    flags uint8, then the uint16 sequence number of its measurement); None when too short."""
    if len(payload) < 3:
        return None
    return payload[1] | (payload[2] << 8)


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


class HoleFinder:
    """Finds the key ranges lost to bad frames, from frames in arrival order."""

    def __init__(self, before: int | None) -> None:
        self.prev = before  # newest good key so far (None: nothing yet)
        self.bad = False
        self.holes: list[Hole] = []

    def good(self, keys: Sequence[int]) -> None:
        first = min(keys)
        if self.bad:
            lo = 0 if self.prev is None else self.prev + 1
            if first > lo:
                self.holes.append((lo, first - 1))
            self.bad = False
        self.prev = max(keys) if self.prev is None else max(self.prev, max(keys))

    def finish(self, upto: int = _TOP) -> list[Hole]:
        """The holes; a bad frame after the last good one leaves the rest (to ``upto``) open."""
        if self.bad:
            lo = 0 if self.prev is None else self.prev + 1
            if lo <= upto:
                self.holes.append((lo, upto))
            self.bad = False
        holes, self.holes = self.holes, []
        return holes


class RacpBackfill:
    """What glucose and CGM backfills share: keys per frame, holes, the mark."""

    def __init__(self, ledger: RecordLedger | None, spec: Racp) -> None:
        self.ledger = ledger
        self.spec = spec
        #: The characteristic the records arrive on.
        self.characteristic = spec.records
        self.mark: RecordMark | None = None
        self.holes: list[Hole] = []
        self._live = HoleFinder(None)
        #: Keys of the newest records whose companion frame (``spec.also``: a glucose
        #: context) this process handed on, live or backfilled.
        self.companions: deque[int] = deque(maxlen=_COMPANIONS_KEPT)

    def keys(self, payload: bytes) -> list[int] | None:
        """The record keys in a frame of :attr:`characteristic`; None when it is malformed."""
        raise NotImplementedError

    def identity(self, payload: bytes, key: int) -> bytes:
        raise NotImplementedError

    #: Keys are uint16 sequence numbers that wrap (GLS/BLS); CGM time offsets do not.
    wraps = False

    def _later(self, a: int, b: int) -> bool:
        return seq_after(a, b) if self.wraps else a > b

    def _advance(self, payload: bytes, keys: list[int]) -> None:
        top = keys[-1] if self.wraps else max(keys)
        if self.mark is None or self._later(top, self.mark.key):
            self.mark = RecordMark(top, self.identity(payload, top))

    def companion(self, char: str, payload: bytes) -> None:
        """A companion frame (``spec.also``) was handed on: note its record's key."""
        if char in self.spec.also and (key := companion_key(payload)) is not None:
            self.companions.append(key)

    def observe(self, char: str, payload: bytes) -> bool:
        """A live frame; True when it revealed a hole worth refilling now."""
        if char != self.characteristic:
            self.companion(char, payload)
            return False
        if self._live.prev is None and self.mark is not None:
            self._live.prev = self.mark.key
        keys = self.keys(payload)
        if keys is None:
            self._live.bad = True
            return False
        self._live.good(keys)
        found = self._live.finish()
        self.holes = sorted(self.holes + found)
        self._advance(payload, keys)
        return bool(found)

    def _take(self, port: RacpPort, frames: list[Frame], before: int | None,
              skip: int | None = None, upto: int = _TOP) -> int:
        """Hand frames on, track holes and the mark; returns records handed on."""
        finder = HoleFinder(before)
        keep: list[Frame] = []
        n = 0
        for frame in frames:
            char, _, payload = frame
            if char != self.characteristic:
                if skip is not None and char in self.spec.also \
                        and companion_key(payload) == skip and skip in self.companions:
                    continue  # the context of that same record, which we hold too
                # A context we never got (the link dropped between the record and its
                # context, or the gateway restarted since) is handed on: kept, not lost.
                keep.append(frame)
                self.companion(char, payload)
                continue
            keys = self.keys(payload)
            if keys is None:
                finder.bad = True
                keep.append(frame)  # kept as a rejected frame by the daemon
                continue
            if skip is not None and keys == [skip]:
                continue  # the record we already hold, sent back as proof of identity
            finder.good(keys)
            keep.append(frame)
            n += len(keys)
        port.deliver(keep)
        self.holes = sorted(self.holes + finder.finish(upto))
        for char, _, payload in keep:
            if char == self.characteristic and (keys := self.keys(payload)) is not None:
                self._advance(payload, keys)
        self._live = HoleFinder(None)
        return n

    async def fill(self, port: RacpPort, chars: Sequence[str]) -> int:
        """Ask again for the open holes, a few passes at most; returns records handed on."""
        n = 0
        for _ in range(MAX_REFILL_PASSES):
            if not self.holes:
                break
            holes, self.holes = self.holes, []
            for lo, hi in holes:
                request = report_from(lo) if hi >= _TOP else report_range(lo, hi)
                _code, frames = await port.racp(request, chars)
                n += self._take(port, frames, lo - 1 if lo else None, upto=hi)
        return n  # holes still open are asked for again after the next (re)connect


class SequenceBackfill(RacpBackfill):
    """Backfill by sequence number, with the ">= the newest held" reset check (see above).

    Sequence numbers wrap from 65535 to 0; the RACP filters by value, so ">= mark" misses
    the records numbered from 0 again: when the half of the number space after the mark
    crosses the top, those (0 .. mark + 32767 − 65536) are asked for too (:func:`seq_after`).
    After a wrap ">= mark" also returns the old records numbered up to 65535: records (and
    their contexts) behind the mark are dropped, not handed on again.
    """

    wraps = True

    async def _wrapped(self, port: RacpPort, chars: Sequence[str], mark: int,
                       frames: list[Frame]) -> list[Frame]:
        """``frames`` plus the records numbered after the wrap, when one can have happened."""
        end = mark + _HALF - 1
        if end <= _TOP:
            return frames
        _code, more = await port.racp(report_range(0, end & _TOP), chars)
        return frames + more

    def _ahead(self, frames: list[Frame], mark: int) -> list[Frame]:
        """``frames`` without the records (and contexts) numbered behind ``mark``."""
        out: list[Frame] = []
        for frame in frames:
            char, _, payload = frame
            if (char == self.characteristic or char in self.spec.also) and len(payload) >= 3:
                m = self.mark_of(payload) if char == self.characteristic else None
                key = m.key if m is not None else payload[1] | (payload[2] << 8)
                if char == self.characteristic and m is None:
                    out.append(frame)  # damaged: kept, the daemon stores it as rejected
                    continue
                if key != mark and not seq_after(key, mark):
                    continue
            out.append(frame)
        return out

    def mark_of(self, payload: bytes) -> RecordMark | None:
        keys = self.keys(payload)
        return None if keys is None else RecordMark(keys[0], self.identity(payload, keys[0]))

    def _start_mark(self, device_id: str) -> RecordMark | None:
        # What this process saw is never older than what the store has committed (the batch
        # writer lags); the ledger is for the first connection after a start.
        if self.mark is not None:
            return self.mark
        return self.ledger.last_record(device_id, self.characteristic) if self.ledger else None

    async def run(self, port: RacpPort, chars: Sequence[str]) -> int:
        """Fetch what is missing (and refill holes); returns the number of records handed on."""
        mark = self._start_mark(port.device_id)
        if mark is None:
            _code, frames = await port.racp(report_all(), chars)
            return self._take(port, frames, None) + await self.fill(port, chars)
        code, frames = await port.racp(report_from(mark.key), chars)
        if any((m := self.mark_of(p)) is not None and m.key != mark.key
                and not seq_after(m.key, mark.key)
                for c, _, p in frames if c == self.characteristic):
            frames = self._ahead(frames, mark.key)
        # Judge by the first record that decodes: a damaged frame must not look like a reset.
        first = next((m for c, _, p in frames
                      if c == self.characteristic and (m := self.mark_of(p)) is not None), None)
        if first is not None and (first.key > mark.key or first == mark):
            frames = await self._wrapped(port, chars, mark.key, frames)
        if first is not None and first.key > mark.key:
            # Our newest record is gone from the device (or came damaged) but the counter went
            # on: no reset.
            return self._take(port, frames, mark.key) + await self.fill(port, chars)
        if first is not None and first == mark:
            return self._take(port, frames, mark.key, skip=mark.key) + await self.fill(
                port, chars)
        if first is None and any(c == self.characteristic for c, _, _ in frames):
            port.deliver(frames)  # only damaged records: no verdict, ask again next time
            raise DeviceError(port.device_id, "RACP: every record came damaged")
        reason = (
            f"sequence reset: device has no record {mark.key} (RACP code {code})"
            if first is None else f"sequence reset: record {mark.key} is another record now"
        )
        if self.ledger is not None:
            self.ledger.reset_detected(port.device_id, self.characteristic, reason)
        self.mark, self.holes = None, []
        _code, frames = await port.racp(report_all(), chars)
        return self._take(port, frames, None) + await self.fill(port, chars)


def _decoded(char: str, payload: bytes) -> Any:
    """The record decoded by its profile's codec, or None when it is malformed."""
    try:
        return registry.decode(char, payload)
    except MalformedPayload:
        return None


class GlucoseBackfill(SequenceBackfill):
    """Backfill by sequence number (``sequence``; identity: the record's base time), as a
    glucose meter does it."""

    def keys(self, payload: bytes) -> list[int] | None:
        record = _decoded(self.characteristic, payload)
        return None if record is None else [record.sequence_number]

    def identity(self, payload: bytes, key: int) -> bytes:
        mark = sequence_mark(payload)
        return mark.identity if mark is not None else b""


def _recorded_char(payload: bytes) -> str:
    return f"{payload[4]:02x}{payload[3]:02x}"


def recorded_mark(payload: bytes) -> RecordMark | None:
    """A Record of the ``recorded`` identity (Blood Pressure Record 0x2B36, BLS 1.1):
    segmentation header (uint8, bit 0 first segment, bit 1 last), sequence number (uint16),
    UUID of the recorded characteristic (uint16, e.g. 0x2A35), the recorded value.  Only whole
    (single-segment) records of a measurement characteristic count; the recorded value itself
    is the record's identity."""
    if len(payload) < 6 or payload[0] & 0x03 != 0x03 \
            or _recorded_char(payload) not in registry.READINGS:
        return None
    return RecordMark(payload[1] | (payload[2] << 8), bytes(payload[5:]))


class BpRecordBackfill(SequenceBackfill):
    """Backfill of Records (``recorded``) by sequence number, as a BLS 1.1 cuff keeps them."""

    def keys(self, payload: bytes) -> list[int] | None:
        mark = recorded_mark(payload)
        if mark is None or _decoded(_recorded_char(payload), mark.identity) is None:
            return None
        return [mark.key]

    def identity(self, payload: bytes, key: int) -> bytes:
        mark = recorded_mark(payload)
        return mark.identity if mark is not None else b""


class CgmBackfill(RacpBackfill):
    """Backfill of a CGM by time offset within its sensor session."""

    def __init__(self, ledger: RecordLedger | None, spec: Racp) -> None:
        super().__init__(ledger, spec)
        self.session: bytes | None = None

    def keys(self, payload: bytes) -> list[int] | None:
        m = _decoded(self.characteristic, payload)
        if m is None or not m.records or any(r.crc_ok is False for r in m.records):
            return None
        return [r.time_offset for r in m.records]

    def identity(self, payload: bytes, key: int) -> bytes:
        return self.session or b""

    def observe(self, char: str, payload: bytes) -> bool:
        return self.session is not None and super().observe(char, payload)

    async def run(self, port: RacpPort, chars: Sequence[str]) -> int:
        assert self.spec.session is not None, "a time_offset RACP names its session"
        session = await port.read(self.spec.session)
        held = self.ledger.last_record(port.device_id, self.characteristic) if self.ledger else None
        seen = self.session if self.session is not None else (
            held.identity if held is not None else None)
        if seen is not None and seen != session:
            if self.ledger is not None:
                self.ledger.reset_detected(
                    port.device_id, self.characteristic, "new CGM sensor session")
            self.mark, self.holes, held = None, [], None
        self.session = session
        if held is not None and (self.mark is None or held.key > self.mark.key):
            self.mark = held
        mark = self.mark
        request = report_all() if mark is None else report_from(mark.key + 1)
        _code, frames = await port.racp(request, chars)
        return self._take(port, frames, None if mark is None else mark.key) + await self.fill(
            port, chars)


Backfill = GlucoseBackfill | CgmBackfill | BpRecordBackfill

#: The backfill for each record identity a profile's ``Racp`` can declare.
STRATEGIES: Mapping[RecordIdentity, type[Backfill]] = {
    "sequence": GlucoseBackfill,
    "time_offset": CgmBackfill,
    "recorded": BpRecordBackfill,
}


def backfills(ledger: RecordLedger | None) -> dict[str, Backfill]:
    """One backfill per profile with stored records, keyed by its records characteristic."""
    return {char: STRATEGIES[spec.identity](ledger, spec)
            for char, spec in registry.current().racp.items()}
