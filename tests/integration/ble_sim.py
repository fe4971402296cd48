"""Small simulated BLE peripherals for the BLE integration tests, and a recording sink.

They are deliberately simple and deterministic (the rich, physiological ones live in
hardware_sim.peripherals); the codecs' encoders make their bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hardware_sim.peripheral import AttError, Flag, Link, Peripheral, char, fixed, service

from edge_gateway.backoff import Backoff
from edge_gateway.config import BleSection
from edge_gateway.drivers import ble
from edge_gateway.drivers.backfill import RecordMark, sequence_mark
from edge_gateway.drivers.current_time import decode_current_time, encode_current_time
from edge_gateway.drivers.fleet import BleFleet
from edge_gateway.drivers.pipeline import FramePipeline
from edge_gateway.drivers.profiles.base import DateTime
from edge_gateway.drivers.profiles.blood_pressure import BloodPressureMeasurement
from edge_gateway.drivers.profiles.glucose import GlucoseMeasurement
from edge_gateway.drivers.profiles.heart_rate import HeartRateMeasurement
from edge_gateway.drivers.profiles.ieee11073 import SFloat
from edge_gateway.drivers.profiles.racp import RecordAccessControlPoint as Racp
from edge_gateway.drivers.session import DeviceSession
from edge_gateway.errors import MalformedPayload
from edge_gateway.runtime.demo import PROFILE_OF_KIND
from edge_gateway.store import BatchWriter, Store

HRM, GLM, GLC, RACP, CTS = "2a37", "2a18", "2a34", "2a52", "2a2b"


async def until(cond: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until ``cond()`` holds; conditions span processes and callbacks, so poll."""
    async with asyncio.timeout(within):
        while not cond():  # noqa: ASYNC110 - polls state changed by many callbacks
            await asyncio.sleep(0.02)


def ble_session(device_id: str, address: str, on_frame: Any, *, slots: int = 1,
                transport: dict[str, Any] | None = None, **kw: Any) -> DeviceSession:
    """A DeviceSession to ``address`` through real bleak (``slots`` connections at once),
    retrying after 0.05-0.2 s unless ``backoff`` says otherwise."""
    kw.setdefault("backoff", Backoff(0.05, 0.2))
    return DeviceSession(device_id, ble.BleTransport(address, **(transport or {})), on_frame,
                         asyncio.Semaphore(slots), **kw)


@contextlib.asynccontextmanager
async def running(session: DeviceSession) -> AsyncIterator[DeviceSession]:
    """Run ``session`` as a task for the body of the ``async with``, then stop it and wait."""
    async with asyncio.TaskGroup() as tg:
        tg.create_task(session.run(), name=f"session-{session.device_id}")
        yield session
        session.stop()


@contextlib.asynccontextmanager
async def scanned_session(service: str, device_id: str, address: str, on_frame: Any,
                          **kw: Any) -> AsyncIterator[DeviceSession]:
    """Scan for ``service`` (BlueZ knows a device only once discovery has seen it), then run a
    session to ``address`` (``ble_session``'s options) for the body of the ``async with``."""
    await ble.scan(0.3, [service])
    async with running(ble_session(device_id, address, on_frame, **kw)) as session:
        yield session


class Rig:
    """The gateway side of a BLE test: store, batch writer and pipeline, for a BleFleet.

    ``sleep`` is what the fleet polls with: it returns early (True) once ``stopping`` is set
    and commits the writer's batch when it is due (every time with ``flush_always``).
    """

    def __init__(self, db: Path, *, max_delay_s: float = 0.1, max_frames: int = 200,
                 flush_always: bool = False) -> None:
        self.store = Store.open(db)
        self.writer = BatchWriter(self.store, max_delay_s=max_delay_s, max_frames=max_frames)
        self.pipeline = FramePipeline(self.store, self.writer)
        self.stopping = asyncio.Event()
        self.flush_always = flush_always

    def add(self, address: str, profile: str) -> None:
        self.store.upsert_device(address, profile=profile, address=address)

    def add_scenario(self, sim: Any) -> None:
        """Every peripheral of a built hardware-sim scenario, with its kind's profile."""
        for p, table in zip(sim.peripherals, sim.spec.peripherals, strict=True):
            self.add(p.address, PROFILE_OF_KIND[str(table["kind"])])

    async def sleep(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stopping.wait()
        if self.flush_always or self.writer.due():
            self.writer.flush()
        return self.stopping.is_set()

    def fleet(self, section: BleSection, **kw: Any) -> BleFleet:
        """A fleet writing into this rig (settings refresh the pipeline; removal flushes)."""
        kw.setdefault("on_settings", self.pipeline.refresh)
        return BleFleet(self.store, self.pipeline.on_frame, section,
                        flush=self.writer.flush, **kw)


class HeartRateStrap(Peripheral):
    """Notifies a heart rate with RR intervals every ``period`` seconds while subscribed."""

    def __init__(self, address: str, name: str = "HR strap", period: float = 0.02,
                 **kw: object) -> None:
        super().__init__(address, name, services=[service(
            0x180D, char(0x2A37, Flag.NOTIFY), fixed(0x2A38, b"\x01"),
        )], **kw)  # type: ignore[arg-type]
        self.period = period
        self.sent = 0
        self.corrupt_every = 0

    async def run(self, link: Link) -> None:
        while True:
            await asyncio.sleep(self.period)
            if not link.is_subscribed(HRM):
                continue
            self.sent += 1
            frame = HeartRateMeasurement(60 + self.sent % 40, 3, None, (1000, 990)).to_bytes()
            if self.corrupt_every and self.sent % self.corrupt_every == 0:
                frame = frame[:1]  # truncated: a malformed frame
            link.notify(HRM, frame)


def glucose_record(seq: int, when: datetime, mgdl: int) -> bytes:
    m = GlucoseMeasurement(
        seq, DateTime(when.year, when.month, when.day, when.hour, when.minute, when.second),
        time_offset=0, concentration=SFloat(mgdl, -5), type=1, sample_location=1,
    )
    return m.to_bytes()


class _RecordKeeper(Peripheral):
    """A device holding numbered records (``take`` adds one), and the link it is on."""

    #: The value of the records a reboot leaves behind.
    reboot_value: int
    start: datetime
    next_seq: int
    records: list[Any]
    link: Link | None

    def take(self, value: int) -> int:
        raise NotImplementedError

    def reboot(self, records: int) -> None:
        """Memory and counter lost (battery change); ``records`` new ones since."""
        self.records.clear()
        self.next_seq = 0
        self.start += timedelta(days=30)
        for _ in range(records):
            self.take(self.reboot_value)

    def on_connect(self, link: Link) -> None:
        self.link = link

    def on_disconnect(self) -> None:
        self.link = None


class GlucoseMeter(_RecordKeeper):
    """A meter with stored records, RACP (report all / >= sequence), and Current Time."""

    reboot_value = 150

    def __init__(self, address: str, name: str = "Meter", records: int = 20,
                 start: datetime = datetime(2026, 11, 10, 7, 0), clock_offset_s: float = 0.0,
                 secure: bool = False, **kw: object) -> None:
        # GLS: records and the RACP need an encrypted (bonded) link on most real meters.
        notify = (Flag.NOTIFY, Flag.ENCRYPT_READ) if secure else (Flag.NOTIFY,)
        write = Flag.ENCRYPT_WRITE if secure else Flag.WRITE
        super().__init__(address, name, services=[
            service(0x1808,
                    char(0x2A18, *notify),
                    fixed(0x2A51, b"\x00\x00"),
                    char(0x2A52, write, Flag.INDICATE, on_write=self._racp)),
            service(0x1805, char(0x2A2B, Flag.READ, Flag.WRITE, Flag.NOTIFY,
                                 on_read=self._read_time, on_write=self._write_time)),
        ], **kw)  # type: ignore[arg-type]
        self.start = start
        self.next_seq = 0
        self.records: list[tuple[int, datetime, bytes]] = []
        self.clock_offset = timedelta(seconds=clock_offset_s)
        self.link: Link | None = None
        self.busy = False
        self.damage_every = 0  # every Nth measurement notification loses its last byte
        self.notified = 0
        for _ in range(records):
            self.take(100 + self.next_seq % 50)

    def take(self, mgdl: int) -> int:
        when = self.start + timedelta(hours=6 * self.next_seq)
        seq = self.next_seq
        self.records.append((seq, when, glucose_record(seq, when, mgdl)))
        self.next_seq += 1
        if self.link is not None:
            self._notify(self.link, self.records[-1][2])
        return seq

    def _notify(self, link: Link, frame: bytes) -> None:
        self.notified += 1
        if self.damage_every and self.notified % self.damage_every == 0:
            frame = frame[:-1]
        link.notify(GLM, frame)

    def on_disconnect(self) -> None:
        super().on_disconnect()
        self.busy = False

    @staticmethod
    def _local() -> datetime:
        return datetime.now(UTC).astimezone().replace(tzinfo=None)

    def _read_time(self) -> bytes:
        # The meter keeps local wall time, as consumer devices do.
        return encode_current_time(self._local() + self.clock_offset, 0)

    def _write_time(self, value: bytes) -> None:
        when = decode_current_time(value)
        if when is None:
            raise AttError(0x80, "data field ignored")
        self.clock_offset = when - self._local()

    def _racp(self, value: bytes) -> object:
        link = self.link
        assert link is not None
        if not link.is_subscribed(RACP):
            raise AttError(AttError.CCCD_IMPROPERLY_CONFIGURED)
        if self.busy:
            raise AttError(AttError.PROCEDURE_ALREADY_IN_PROGRESS)
        req = Racp.from_bytes(value)
        if req.op_code != 1:
            return self._respond(link, req.op_code, 2)
        if req.operator == 1:
            chosen = list(self.records)
        elif req.operator == 3 and req.filter_type == 1 and isinstance(req.filter_min, int):
            chosen = [r for r in self.records if r[0] >= req.filter_min]
        elif (req.operator == 4 and req.filter_type == 1 and isinstance(req.filter_min, int)
              and isinstance(req.filter_max, int)):
            lo, hi = req.filter_min, req.filter_max
            chosen = [r for r in self.records if lo <= r[0] <= hi]
        else:
            return self._respond(link, 1, 4)
        self.busy = True
        return self._report(link, chosen)

    async def _report(self, link: Link, chosen: list[tuple[int, datetime, bytes]]) -> None:
        for _seq, _when, frame in chosen:
            self._notify(link, frame)
            await asyncio.sleep(0)
        self.busy = False
        await link.indicate(RACP, Racp.response(1, 1 if chosen else 6).to_bytes())

    async def _respond(self, link: Link, op: int, code: int) -> None:
        await link.indicate(RACP, Racp.response(op, code).to_bytes())


def decodes(payload: bytes) -> bool:
    try:
        GlucoseMeasurement.from_bytes(payload)
    except MalformedPayload:
        return False
    return True


class RecordCuff(_RecordKeeper):
    """A BLS 1.1 cuff: Blood Pressure Records (0x2B36, notify) with a RACP by sequence."""

    reboot_value = 140

    def __init__(self, address: str, name: str = "Cuff", records: int = 10, **kw: object) -> None:
        super().__init__(address, name, services=[service(
            0x1810,
            char(0x2A35, Flag.INDICATE),
            fixed(0x2A49, b"\x00\x00"),
            char(0x2B36, Flag.NOTIFY),
            char(0x2A52, Flag.WRITE, Flag.INDICATE, on_write=self._racp),
        )], **kw)  # type: ignore[arg-type]
        self.start = datetime(2026, 11, 10, 8, 0)
        self.records: list[tuple[int, bytes]] = []
        self.next_seq = 0
        self.link: Link | None = None
        for _ in range(records):
            self.take()

    def take(self, systolic: int = 128) -> int:
        when = self.start + timedelta(hours=12 * len(self.records))
        m = BloodPressureMeasurement(
            SFloat(systolic, 0), SFloat(82, 0), SFloat(97, 0),
            timestamp=DateTime(when.year, when.month, when.day, when.hour, when.minute, 0),
            pulse_rate=SFloat(70, 0))
        seq = self.next_seq
        self.next_seq += 1
        record = bytes((0x03, seq & 0xFF, seq >> 8, 0x35, 0x2A)) + m.to_bytes()
        self.records.append((seq, record))
        return seq

    def _racp(self, value: bytes) -> object:
        link = self.link
        assert link is not None
        if not link.is_subscribed(RACP):
            raise AttError(AttError.CCCD_IMPROPERLY_CONFIGURED)
        req = Racp.from_bytes(value)
        if req.operator == 1:
            chosen = list(self.records)
        elif req.operator == 3 and isinstance(req.filter_min, int):
            chosen = [r for r in self.records if r[0] >= req.filter_min]
        elif req.operator == 4 and isinstance(req.filter_min, int) and isinstance(
                req.filter_max, int):
            lo, hi = req.filter_min, req.filter_max
            chosen = [r for r in self.records if lo <= r[0] <= hi]
        else:
            chosen = []
        return self._report(link, chosen)

    async def _report(self, link: Link, chosen: list[tuple[int, bytes]]) -> None:
        for _seq, record in chosen:
            link.notify("2b36", record)
            await asyncio.sleep(0)
        await link.indicate(RACP, Racp.response(1, 1 if chosen else 6).to_bytes())


@dataclass
class Sink:
    """Records on_frame calls; a RecordLedger over them, with reset epochs like the store."""

    frames: list[tuple[str, str, datetime, bytes]] = field(default_factory=list)
    epoch: dict[str, int] = field(default_factory=dict)
    glucose: dict[tuple[str, int], list[RecordMark]] = field(default_factory=dict)
    resets: list[str] = field(default_factory=list)

    def __call__(self, device_id: str, char: str, received_at: datetime, payload: bytes) -> None:
        self.frames.append((device_id, char, received_at, payload))
        if char == GLM and decodes(payload) and (mark := sequence_mark(payload)) is not None:
            key = (device_id, self.epoch.get(device_id, 0))
            self.glucose.setdefault(key, []).append(mark)

    def of(self, char: str, device_id: str | None = None) -> list[bytes]:
        return [p for d, c, _, p in self.frames if c == char and device_id in (None, d)]

    def last_record(self, device_id: str, characteristic: str) -> RecordMark | None:
        marks = self.glucose.get((device_id, self.epoch.get(device_id, 0)), [])
        return max(marks, key=lambda m: m.key) if marks else None

    def reset_detected(self, device_id: str, characteristic: str, reason: str) -> None:
        self.resets.append(reason)
        self.epoch[device_id] = self.epoch.get(device_id, 0) + 1
