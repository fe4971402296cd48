"""Devices that store spot measurements and indicate the untransferred ones on connect.

Older blood-pressure cuffs (BLS 1.0), thermometers (HTS) and scales (WSS) have no RACP: they
keep what was measured while nobody listened and, once a central enables indications on the
measurement characteristic, send every measurement not yet transferred, oldest first, one
indication at a time.  A measurement counts as transferred only when its indication was
confirmed, so a link lost half-way leaves the rest for next time — and the one in flight may
arrive twice, which is why the gateway's inserts are idempotent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from ..peripheral import Link, uuid128
from .base import PLAN_AHEAD, SimPeripheral


class Timed(Protocol):
    """A generated measurement: it knows when (true time, aware UTC) the user took it."""

    @property
    def time(self) -> datetime: ...


T = TypeVar("T", bound=Timed)


@dataclass(frozen=True, slots=True)
class Stored(Generic[T]):
    taken_at: datetime  # true time (aware UTC)
    device_time: datetime  # the device clock's reading then (naive)
    item: T


class StoringDevice(SimPeripheral, Generic[T]):
    """Subclasses set ``measurement_uuid`` and ``stream_name`` and implement :meth:`plan_day`
    and :meth:`encode`; the device holds ``history`` of measurements when the run starts."""

    measurement_uuid: int = 0
    #: Names the day's random stream (see ``days``): part of what a seed replays.
    stream_name: str = ""
    #: Seconds between checks for new measurements while connected.
    poll_s: float = 0.5

    def __init__(self, address: str, name: str, *, history: timedelta = timedelta(days=14),
                 **kw: Any) -> None:
        self.history = history
        self.stored: list[Stored[T]] = []
        self.transferred = 0  # stored[:transferred] went out and were confirmed
        self._plan: list[tuple[datetime, T]] = []
        self._planned_until = 0
        super().__init__(address, name, **kw)
        self._plan = sorted(self.plan(), key=lambda p: p[0])
        self.catch_up()

    def plan(self) -> list[tuple[datetime, T]]:
        """Every measurement the user will take: (true time, item), a day at a time."""
        first = self.start - self.history
        out: list[tuple[datetime, T]] = []
        for day, rng in self.days(first, self.start + PLAN_AHEAD, self.stream_name):
            out += [(item.time, item) for item in self.plan_day(day, rng)]
        return [(t, item) for t, item in out if t >= first]

    def plan_day(self, day: datetime, rng: np.random.Generator) -> list[T]:
        """The measurements of the day from UTC midnight ``day``, drawn from ``rng``."""
        raise NotImplementedError

    def encode(self, stored: Stored[T]) -> bytes:
        raise NotImplementedError

    def catch_up(self) -> int:
        """Store the planned measurements whose time has come; returns how many."""
        now = self.now()
        n = 0
        while self._planned_until < len(self._plan) and self._plan[self._planned_until][0] <= now:
            t, item = self._plan[self._planned_until]
            self.stored.append(Stored(t, self.device_time(t), item))
            self._planned_until += 1
            n += 1
        return n

    @property
    def pending(self) -> list[Stored[T]]:
        return self.stored[self.transferred :]

    def on_reboot(self) -> None:
        # Memory lost with the power: whatever was not transferred is gone.
        self.stored.clear()
        self.transferred = 0

    async def transfer(self, link: Link) -> int:
        """Indicate every pending measurement (if subscribed); returns how many went out."""
        uuid = uuid128(self.measurement_uuid)
        n = 0
        while self.transferred < len(self.stored) and link.is_subscribed(uuid):
            await self.send_indication(link, self.measurement_uuid,
                                       self.encode(self.stored[self.transferred]))
            self.transferred += 1
            n += 1
        return n

    async def run(self, link: Link) -> None:
        while True:
            self.catch_up()
            await self.transfer(link)
            await asyncio.sleep(self.poll_s)
