"""Connection slots shared by every BLE session: streams stay, store-only devices take turns.

An adapter holds a handful of links (3–7; a pending connect uses one too), and a clinic hub
sees far more devices than that: a few streaming ones (heart-rate straps, CGMs, continuous
oximeters) beside dozens of meters, cuffs, thermometers, scales and spot-check oximeters that
connect only to hand over what they stored.  :class:`SlotPool` replaces a plain semaphore with
a policy that starves neither kind:

* **Streams get at most** ``stream_slots`` (default ``size - 1``) slots, and have priority
  for a free slot up to that cap: a stream that lost its link waits for at most one visit
  to end before it is back.  Streams beyond the cap wait (logged by the session) — one slot
  always rotates.
* **Visits** (store-only devices: connect, read the clock, backfill, drop) use every slot
  streams do not hold, and are served **oldest visit first**: the waiting device whose last
  visit ended longest ago (never visited: first of all) gets the next free slot.  A failed
  attempt counts as a visit, so a device out of range goes to the back of the queue instead
  of blocking the slot at its head.

With ``V`` store-only devices, ``k`` slots free for visits (at least ``size - stream_slots``)
and visits of at most ``T`` seconds, a device waits at most ``(V - 1) · T / k`` once it
wants a slot; it wants one again ``revisit`` seconds after its last visit.  So a record stored
just after a visit began reaches the gateway within :func:`visit_bound_s`.

A device not connected before is only *expected* to stream (``stream=None``, from its
profile): it gets a stream's slot while the streams' share has room, else it queues as a visit
— so a cuff whose profile also declares a stream never waits for a stream slot.  Once
connected, a slot's kind follows what the device offers: a device that offers no stream
becomes a visit (``to_visit``); one that streams becomes a stream if the share allows
(``to_stream`` returns False otherwise: it must leave).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

STREAM, VISIT, MAYBE = "stream", "visit", "maybe"


def visit_bound_s(store_only: int, visit_slots: int, visit_s: float, revisit_s: float) -> float:
    """Longest time from a record being stored on a device in range to it being fetched.

    The record may be stored just after a visit fetched the device's records (``visit_s``);
    the device asks for a slot again ``revisit_s`` after that visit ended, may wait behind
    every other store-only device once (``ceil((V - 1) / k)`` visits), and its next visit
    fetches the record (``visit_s``).
    """
    if store_only <= 0:
        return 0.0
    rounds = math.ceil((store_only - 1) / max(1, visit_slots))
    return visit_s + revisit_s + rounds * visit_s + visit_s


@dataclass(eq=False)
class _Waiter:
    device_id: str
    kind: str
    order: int
    granted: asyncio.Future[None] = field(repr=False)


@dataclass
class PoolStats:
    """Counts for status lines, tests and benchmarks."""

    visits: int = 0
    stream_grants: int = 0
    #: Visits (and failed attempts) per store-only device.
    visits_of: dict[str, int] = field(default_factory=dict)
    #: Longest and total time a visit held its slot, in seconds.
    longest_visit: float = 0.0
    visit_seconds: float = 0.0
    #: Longest wait for a slot, in seconds, per kind.
    longest_wait: dict[str, float] = field(default_factory=lambda: {STREAM: 0.0, VISIT: 0.0})


class Slot:
    """One granted (or awaited) connection slot: ``async with pool.slot(id, stream=...)``."""

    def __init__(self, pool: SlotPool, device_id: str, kind: str) -> None:
        self.pool = pool
        self.device_id = device_id
        self.kind = kind
        self._held = False
        self.granted_at = 0.0

    async def __aenter__(self) -> Slot:
        await self.pool._acquire(self)
        self._held = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._held:
            self._held = False
            self.pool._release(self)

    def to_stream(self) -> bool:
        """Hold this slot as a stream; False when the streams' share is used up."""
        return self.pool._convert(self, STREAM)

    def to_visit(self) -> None:
        """Hold this slot as a visit (always allowed: it frees a stream's share)."""
        self.pool._convert(self, VISIT)


class SlotPool:
    """``size`` connection slots, shared by streams (capped) and visits (oldest first)."""

    def __init__(self, size: int, *, stream_slots: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if size < 1:
            raise ValueError("a slot pool needs at least one slot")
        # One slot: nothing can rotate; a stream may hold it (as a plain semaphore would).
        cap = size - 1 if stream_slots is None else stream_slots
        self.size = size
        self.stream_slots = max(1, min(cap, size)) if size == 1 else max(0, min(cap, size - 1))
        self.clock = clock
        self.held = {STREAM: 0, VISIT: 0}
        #: device id -> when its last visit (or failed attempt) ended, by ``clock``.
        self.last_visit: dict[str, float] = {}
        self.stats = PoolStats()
        self._waiters: list[_Waiter] = []
        self._order = itertools.count()

    def slot(self, device_id: str, *, stream: bool | None) -> Slot:
        """``stream``: True (it streams), False (store-only), None (expected to stream, not
        connected yet)."""
        return Slot(self, device_id, MAYBE if stream is None else STREAM if stream else VISIT)

    @property
    def in_use(self) -> int:
        return self.held[STREAM] + self.held[VISIT]

    def waiting(self, kind: str | None = None) -> int:
        return sum(1 for w in self._waiters if kind in (None, w.kind))

    # -- the policy ----------------------------------------------------------------------------

    def _pick(self) -> tuple[_Waiter, str] | None:
        if self.held[STREAM] < self.stream_slots:
            for kind in (STREAM, MAYBE):  # known streams before expected ones
                streams = [w for w in self._waiters if w.kind == kind]
                if streams:
                    return min(streams, key=lambda w: w.order), STREAM
        visits = [w for w in self._waiters if w.kind in (VISIT, MAYBE)]
        if not visits:
            return None
        oldest = min(visits, key=lambda w: (self.last_visit.get(w.device_id, -math.inf),
                                            w.order))
        return oldest, VISIT

    def _dispatch(self) -> None:
        while self.in_use < self.size:
            picked = self._pick()
            if picked is None:
                return
            w, kind = picked
            self._waiters.remove(w)
            w.kind = kind
            self.held[kind] += 1
            w.granted.set_result(None)

    async def _acquire(self, slot: Slot) -> None:
        started = self.clock()
        w = _Waiter(slot.device_id, slot.kind, next(self._order),
                    asyncio.get_running_loop().create_future())
        self._waiters.append(w)
        self._dispatch()
        try:
            await w.granted
        except asyncio.CancelledError:
            if w in self._waiters:
                self._waiters.remove(w)
            elif w.granted.done() and not w.granted.cancelled():
                # Granted while being cancelled: hand the slot on.
                self.held[w.kind] -= 1
                self._dispatch()
            raise
        slot.kind = w.kind
        slot.granted_at = self.clock()
        waited = slot.granted_at - started
        longest = self.stats.longest_wait
        longest[w.kind] = max(longest[w.kind], waited)
        if w.kind == STREAM:
            self.stats.stream_grants += 1

    def _release(self, slot: Slot) -> None:
        self.held[slot.kind] -= 1
        if slot.kind == VISIT:
            now = self.last_visit[slot.device_id] = self.clock()
            st = self.stats
            st.visits += 1
            st.visits_of[slot.device_id] = st.visits_of.get(slot.device_id, 0) + 1
            st.longest_visit = max(st.longest_visit, now - slot.granted_at)
            st.visit_seconds += now - slot.granted_at
        self._dispatch()

    def _convert(self, slot: Slot, kind: str) -> bool:
        if slot.kind == kind:
            return True
        if kind == STREAM and self.held[STREAM] >= self.stream_slots:
            return False
        self.held[slot.kind] -= 1
        self.held[kind] += 1
        slot.kind = kind
        if kind == STREAM:
            self.stats.stream_grants += 1
        self._dispatch()
        return True
