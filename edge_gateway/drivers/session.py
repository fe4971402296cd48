"""One supervised session per device: connect, subscribe, backfill, stream, reconnect, stop.

A :class:`DeviceSession` runs until cancelled (the daemon's TaskGroup cancels it at shutdown) or
:meth:`DeviceSession.stop` is called.  Each round it waits for a connection slot (a semaphore
shared by all sessions: adapters hold 3–7 links, and a pending connect uses one too), connects
through the :class:`~edge_gateway.drivers.transport.Transport`, then:

1. reads the static characteristics it knows (sensor location, features, CGM session start);
2. reads the device's Current Time and sets it when it drifted beyond the threshold, but only
   while ``clock_trusted()`` says the gateway clock is NTP-synchronised;
3. subscribes to every measurement characteristic the device offers (notify or indicate);
4. backfills stored records over RACP (glucose by sequence number, CGM by time offset; cuffs
   without RACP indicate their stored measurements on connect by themselves);
5. streams until the link is lost, then releases the slot, waits a full-jitter exponential
   backoff (reset after a stable connection) and starts again.  A device that offers no
   stream (meters, cuffs, thermometers, scales) is left as soon as its transfer is done —
   nothing came for ``idle_disconnect_s`` — and visited again ``revisit_s`` later.

The slots are an ``asyncio.Semaphore`` (every session alike) or a
:class:`~edge_gateway.drivers.slots.SlotPool`, which keeps streams connected within their
share and serves store-only visits oldest first (the fleet uses one).

Every value received — measurement, context, RACP response, time — goes to
``on_frame(device_id, characteristic, received_at, payload)`` untouched; decoding, storing and
rejecting malformed frames is the daemon's job.  ``on_frame`` is called on the event loop and must
not block (the daemon queues to a batch writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge_gateway.backoff import Backoff
from edge_gateway.drivers import registry
from edge_gateway.drivers.backfill import (
    RACP,
    Backfill,
    Frame,
    RecordLedger,
    backfills,
    response_code,
)
from edge_gateway.drivers.current_time import CURRENT_TIME, sync_clock
from edge_gateway.drivers.slots import Slot, SlotPool
from edge_gateway.drivers.transport import FrameCallback, GattError, Transport
from edge_gateway.errors import DeviceError

log = logging.getLogger(__name__)

# What is read, subscribed to and streamed comes from the profiles (``PROFILE.read_once``,
# ``read_first``, ``subscribe``, ``streams``), through ``registry.current()``.

StateCallback = Callable[[str, str], None]
ClockCallback = Callable[[str, float, bool], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class SessionStats:
    connects: int = 0
    failures: int = 0
    link_losses: int = 0
    frames: int = 0
    backfilled: int = 0
    last_error: str | None = None


class _Plain:
    """A plain semaphore as a slot without a policy (tests, benchmarks, single sessions)."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self.semaphore = semaphore

    async def __aenter__(self) -> None:
        await self.semaphore.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.semaphore.release()


class _Collect:
    def __init__(self, chars: Sequence[str]) -> None:
        self.chars = frozenset(chars)
        self.frames: list[Frame] = []
        self.activity = asyncio.Event()
        self.response: asyncio.Future[int] = asyncio.get_running_loop().create_future()


class DeviceSession:
    """Keeps one device connected and its data flowing.  ``await session.run()``."""

    def __init__(
        self,
        device_id: str,
        transport: Transport,
        on_frame: FrameCallback,
        limiter: asyncio.Semaphore | SlotPool,
        *,
        ledger: RecordLedger | None = None,
        clock_trusted: Callable[[], bool] = lambda: False,
        max_drift_s: float = 60.0,
        set_clock: bool = True,
        backoff: Backoff | None = None,
        racp_idle_s: float = 10.0,
        idle_disconnect_s: float | None = None,
        revisit_s: float = 60.0,
        visit_max_s: float = 60.0,
        expect_streams: bool = False,
        on_state: StateCallback | None = None,
        on_clock: ClockCallback | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.device_id = device_id
        self.transport = transport
        self.on_frame = on_frame
        self.limiter = limiter
        self.ledger = ledger
        self.clock_trusted = clock_trusted
        self.max_drift_s = max_drift_s
        self.set_clock = set_clock
        # Reset after 30 s connected (Backoff.stable_s): a link that held starts over short.
        self.backoff = backoff or Backoff()
        self.idle_disconnect_s = idle_disconnect_s
        self.revisit_s = revisit_s
        self.visit_max_s = visit_max_s
        #: Whether the device streams, once a connection told (a SlotPool serves streams and
        #: store-only visits differently); before that, ``expect_streams`` (its profile).
        self.streams: bool | None = None
        self.expect_streams = expect_streams
        self.racp_idle_s = racp_idle_s
        self.on_state = on_state
        self.on_clock = on_clock
        self.now = now
        self.state = "idle"
        self.stats = SessionStats()
        #: Records characteristic -> its backfill (profiles that declare ``racp``).
        self.backfills: dict[str, Backfill] = backfills(ledger)
        #: Companion characteristic (a glucose context) -> the backfills whose records it
        #: belongs to: they must know which contexts came live (see ``Backfill.companion``).
        self._companions: dict[str, list[Backfill]] = {}
        for fill in self.backfills.values():
            for also in fill.spec.also:
                self._companions.setdefault(also, []).append(fill)
        self._lost = asyncio.Event()
        self._stopping = False
        self._collect: _Collect | None = None
        self._backfilled = False
        self._fill_wanted = asyncio.Event()
        self._went_idle = False
        self._last_frame = 0.0

    # -- supervision ---------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        self.state = state
        if self.on_state is not None:
            self.on_state(self.device_id, state)

    def stop(self) -> None:
        """Ask ``run`` to disconnect and return (cancelling the task works as well)."""
        self._stopping = True
        self._lost.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping:
                self._set_state("waiting")
                connected_at: float | None = None
                needs_pairing = False
                async with self._slot() as slot:
                    if self._stopping:
                        break
                    try:
                        self._set_state("connecting")
                        self._lost.clear()
                        self._went_idle = False
                        self.transport.set_disconnected_callback(self._lost.set)
                        await self.transport.connect()
                        connected_at = loop.time()
                        self.stats.connects += 1
                        await self._serve(slot)
                    except DeviceError as err:
                        self.stats.failures += 1
                        self.stats.last_error = str(err)
                        log.info("%s: %s", self.device_id, err)
                        if isinstance(err, GattError) and err.needs_pairing:
                            needs_pairing = True
                            self.backoff.to_cap()  # retrying soon won't help
                    except Exception:
                        # A bug must not take the other sessions down: log, back off, retry.
                        self.stats.failures += 1
                        log.exception("%s: session failed", self.device_id)
                    finally:
                        await self._close()
                if self._stopping:
                    break
                if connected_at is not None:
                    self.backoff.ran(loop.time() - connected_at)
                if self._went_idle:
                    self.backoff.reset()
                    delay = self.revisit_s
                else:
                    delay = self.backoff.next()
                # "idle": left on purpose; "needs-pairing": says what a caregiver must do.
                self._set_state("needs-pairing" if needs_pairing else
                                "idle" if self._went_idle else "backoff")
                log.debug("%s: reconnecting in %.1f s", self.device_id, delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wait_stop()
        finally:
            self._set_state("stopped")

    def _slot(self) -> contextlib.AbstractAsyncContextManager[Slot | None]:
        if isinstance(self.limiter, SlotPool):
            expected = None if self.expect_streams else False
            stream = expected if self.streams is None else self.streams
            return self.limiter.slot(self.device_id, stream=stream)
        return _Plain(self.limiter)

    async def _wait_stop(self) -> None:
        while not self._stopping:
            self._lost.clear()
            await self._lost.wait()

    async def _close(self) -> None:
        self.transport.set_disconnected_callback(None)
        if self._collect is not None and not self._collect.response.done():
            self._collect.response.cancel()
        self._collect = None
        # Runs during cancellation too (shutdown): disconnect, but never hang the daemon.
        try:
            async with asyncio.timeout(5):
                await self.transport.disconnect()
        except (TimeoutError, DeviceError) as err:
            log.debug("%s: disconnect: %s", self.device_id, err)

    async def _quiet(self, quiet_s: float, limit_s: float) -> None:
        """Wait until no frame arrived for ``quiet_s`` (at most ``limit_s``) or the link is lost."""
        loop = asyncio.get_running_loop()
        end = loop.time() + limit_s
        while not self._lost.is_set() and loop.time() < end:
            left = self._last_frame + quiet_s - loop.time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), min(left, end - loop.time()))

    async def _serve(self, slot: Slot | None = None) -> None:
        t = self.transport
        self._backfilled = False
        self._went_idle = False
        self._last_frame = asyncio.get_running_loop().time()
        self._set_state("connected")
        reg = registry.current()
        for uuid in reg.read_once + (reg.read_first if self.stats.connects == 1 else ()):
            if t.has(uuid):
                self._deliver_one(uuid, self.now(), await t.read(uuid))
        if t.has(CURRENT_TIME):
            # Measure only: the stored records about to arrive were stamped by the device's
            # clock as it is now, so their UTC must be derived with this offset.  The clock is
            # set (if it drifted) once they are in.
            await sync_clock(self, may_set=False)
        subscribed: list[str] = []
        for uuid in reg.subscribe:
            if t.has(uuid):
                await t.start_notify(uuid, self._handler(uuid))
                subscribed.append(uuid)
        streams = bool(reg.streams.intersection(subscribed))
        self.streams = streams
        if slot is not None and not streams:
            slot.to_visit()  # a store-only device never holds one of the streams' slots
        collect: dict[str, list[str]] = {}
        if t.has(RACP):
            await t.start_notify(RACP, self._handler(RACP))
            self._set_state("backfilling")
            for char, backfill in self.backfills.items():
                if char in subscribed:
                    wanted = [char, *backfill.spec.also]
                    collect[char] = [c for c in wanted if c in subscribed]
                    n = await backfill.run(self, collect[char])
                    self.stats.backfilled += n
                    log.info("%s: backfilled %d records", self.device_id, n)
        self._backfilled = True
        # A store-only device (meter, cuff, thermometer, scale) is left as soon as its
        # transfer is done: it would hold a connection slot that the others take turns on.
        visit = not streams and self.idle_disconnect_s is not None
        if visit or (t.has(CURRENT_TIME) and self.set_clock):
            # Cuffs, thermometers and scales without RACP indicate what they stored on
            # connect, one confirmed indication at a time: the transfer is over once they
            # fall quiet (a visit gives up after visit_max_s; the rest comes next time).
            quiet_s = self.idle_disconnect_s if visit and self.idle_disconnect_s else 2.0
            await self._quiet(quiet_s, limit_s=self.visit_max_s if visit else 30.0)
            if t.has(CURRENT_TIME) and self.set_clock and not self._lost.is_set():
                await sync_clock(self)
        self._set_state("streaming")
        if visit:
            # Many meters and cuffs switch off once they handed their records over: that ends
            # the visit as well (what was not confirmed stays on the device for next time).
            log.info("%s: transfer done, %s (back in %.0f s)", self.device_id,
                     "the device left" if self._lost.is_set() else "disconnecting to free the "
                     "slot", self.revisit_s)
            self._went_idle = True
            return
        if slot is not None and streams and not slot.to_stream():
            log.warning("%s: streams hold %d of %d connection slots; leaving so that one slot "
                        "keeps rotating among store-only devices (back in %.0f s)",
                        self.device_id, slot.pool.stream_slots, slot.pool.size, self.revisit_s)
            self._went_idle = True
            return
        while not self._lost.is_set():
            await self._wait_lost_or_fill()
            self._fill_wanted.clear()
            for char, chars in collect.items():
                backfill = self.backfills[char]
                if backfill.holes and not self._lost.is_set():
                    # A bad live frame left a hole: ask the device for it again now.
                    self.stats.backfilled += await backfill.fill(self, chars)
        if not self._stopping:
            self.stats.link_losses += 1
            self._set_state("disconnected")

    async def _wait_lost_or_fill(self) -> None:
        """Until the link is lost or a live frame left a hole to fill."""
        lost = asyncio.ensure_future(self._lost.wait())
        fill = asyncio.ensure_future(self._fill_wanted.wait())
        try:
            await asyncio.wait([lost, fill], return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            fill.cancel()

    # -- frames --------------------------------------------------------------------------------

    def _handler(self, uuid: str) -> Callable[[bytes], None]:
        def on_value(payload: bytes) -> None:
            received_at = self.now()
            collect = self._collect
            if uuid == RACP and collect is not None and not collect.response.done():
                # Any indication on the RACP ends the procedure (records come before it); a
                # damaged one gives code 0, "unknown", rather than a 10 s wait for nothing.
                answer = response_code(payload)
                collect.response.set_result(0 if answer is None else answer[1])
            if collect is not None and uuid in collect.chars:
                collect.frames.append((uuid, received_at, payload))
                collect.activity.set()
                return
            for owner in self._companions.get(uuid, ()):
                owner.companion(uuid, payload)
            backfill = self.backfills.get(uuid)
            if backfill is not None and self._backfilled and backfill.observe(uuid, payload):
                # Only after this connection's backfill: a live record that arrives before it
                # must not move the mark past the gap the backfill is about to fill.
                self._fill_wanted.set()
            self._deliver_one(uuid, received_at, payload)

        return on_value

    def _deliver_one(self, uuid: str, received_at: datetime, payload: bytes) -> None:
        self.stats.frames += 1
        self._last_frame = asyncio.get_running_loop().time()
        try:
            self.on_frame(self.device_id, uuid, received_at, payload)
        except Exception:
            # on_frame must not raise; if it does, the frame is logged and the session goes on.
            log.exception("%s: on_frame failed for %s %s", self.device_id, uuid, payload.hex())

    def deliver(self, frames: Sequence[Frame]) -> None:
        for uuid, received_at, payload in frames:
            self._deliver_one(uuid, received_at, payload)

    # -- the RacpPort used by backfills ----------------------------------------------------------

    async def read(self, uuid: str) -> bytes:
        value = await self.transport.read(uuid)
        self._deliver_one(uuid, self.now(), value)
        return value

    async def write(self, uuid: str, data: bytes) -> None:
        await self.transport.write(uuid, data, response=True)

    async def racp(self, request: bytes, collect: Sequence[str]) -> tuple[int, list[Frame]]:
        if self._collect is not None:
            raise DeviceError(self.device_id, "RACP procedure already running", retryable=True)
        job = _Collect(collect)
        self._collect = job
        lost: asyncio.Future[object] = asyncio.ensure_future(self._lost.wait())
        try:
            await self.transport.write(RACP, request, response=True)
            while not job.response.done():
                job.activity.clear()
                activity: asyncio.Future[object] = asyncio.ensure_future(job.activity.wait())
                waiters: list[asyncio.Future[Any]] = [job.response, activity, lost]
                # A long backlog is fine as long as records keep coming; silence is not.
                done, _pending = await asyncio.wait(
                    waiters,
                    timeout=self.racp_idle_s, return_when=asyncio.FIRST_COMPLETED,
                )
                activity.cancel()
                if lost.done():
                    raise DeviceError(self.device_id, "link lost during backfill")
                if not done:
                    raise DeviceError(self.device_id, "RACP: no answer", retryable=True)
            return job.response.result(), job.frames
        finally:
            lost.cancel()
            self._collect = None
