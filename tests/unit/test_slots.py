"""The connection-slot policy: streams capped at size - 1, visits oldest first, no starvation."""

from __future__ import annotations

import asyncio

import pytest

from edge_gateway.drivers.slots import STREAM, VISIT, SlotPool, visit_bound_s


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def hold(pool: SlotPool, device: str, stream: bool | None, log: list[str],
               release: asyncio.Event) -> None:
    async with pool.slot(device, stream=stream) as slot:
        log.append(f"{device}:{slot.kind}")
        await release.wait()


def test_streams_never_take_the_last_slot_and_visits_rotate() -> None:
    async def main() -> None:
        pool = SlotPool(3)
        log: list[str] = []
        forever = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            streams = [tg.create_task(hold(pool, f"s{i}", True, log, forever)) for i in range(3)]
            await asyncio.sleep(0)
            visit_done = asyncio.Event()
            visit = tg.create_task(hold(pool, "m1", False, log, visit_done))
            await asyncio.sleep(0)
            # Two streams hold their share; the third waits; the meter got the last slot.
            assert log == ["s0:stream", "s1:stream", "m1:visit"]
            assert pool.waiting(STREAM) == 1
            visit_done.set()
            await visit
            # A visit's end does not hand the rotating slot to a stream beyond the share.
            assert pool.held == {STREAM: 2, VISIT: 0} and pool.waiting(STREAM) == 1
            forever.set()
            await asyncio.gather(*streams)
        assert log[-1] == "s2:stream"

    asyncio.run(main())


def test_visits_are_served_oldest_visit_first_and_maybe_streams_fall_back_to_visits() -> None:
    async def main() -> None:
        clock = Clock()
        pool = SlotPool(2, clock=clock)
        pool.last_visit.update({"old": 10.0, "new": 50.0})
        log: list[str] = []
        gate = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(hold(pool, "strap", True, log, gate))
            await asyncio.sleep(0)
            first = asyncio.Event()
            tg.create_task(hold(pool, "busy", False, log, first))
            await asyncio.sleep(0)
            for name, stream in (("new", False), ("cuff", None), ("old", False)):
                tg.create_task(hold(pool, name, stream, log, gate))
            await asyncio.sleep(0)
            clock.t = 100.0
            first.set()
            await asyncio.sleep(0.01)
            # Never visited comes first (the cuff, expected to stream but the streams' share
            # is full, queues as a visit), then the oldest visit.
            assert log[2:] == ["cuff:visit"]
            gate.set()
        assert log[2:] == ["cuff:visit", "old:visit", "new:visit"]
        assert pool.stats.visits_of == {"busy": 1, "cuff": 1, "old": 1, "new": 1}
        assert pool.last_visit["busy"] == 100.0

    asyncio.run(main())


def test_slot_kind_follows_what_the_device_offers() -> None:
    async def main() -> None:
        pool = SlotPool(3)
        async with pool.slot("a", stream=None) as a, pool.slot("b", stream=None) as b:
            assert (a.kind, b.kind) == (STREAM, STREAM)
            async with pool.slot("c", stream=False) as c:
                assert not c.to_stream()  # the streams' share (2) is held
                a.to_visit()  # a offers no stream after all
                assert c.to_stream() and pool.held == {STREAM: 2, VISIT: 1}

    asyncio.run(main())


def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    async def main() -> None:
        pool = SlotPool(1)
        async with pool.slot("a", stream=False):
            waiter = asyncio.create_task(hold(pool, "b", False, [], asyncio.Event()))
            await asyncio.sleep(0)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        assert pool.in_use == 0 and pool.waiting() == 0

    asyncio.run(main())


def test_visit_bound() -> None:
    # 44 store-only devices, one rotating slot, 5 s visits, revisited after 60 s:
    # 5 (the visit that just missed it) + 60 + 43 x 5 (everyone else once) + 5.
    assert visit_bound_s(44, 1, 5.0, 60.0) == 5 + 60 + 43 * 5 + 5
    assert visit_bound_s(44, 2, 5.0, 60.0) == 5 + 60 + 22 * 5 + 5
    assert visit_bound_s(0, 1, 5.0, 60.0) == 0.0
