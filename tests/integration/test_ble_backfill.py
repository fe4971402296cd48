"""RACP backfill after link loss, sequence resets, and device clock correction, end to end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

from ble_sim import RACP, GlucoseMeter, RecordCuff, Sink, decodes, scanned_session, until
from hardware_sim.bluez import VirtualBlueZ

from edge_gateway.drivers.backfill import MemoryLedger, recorded_mark
from edge_gateway.drivers.session import DeviceSession

ADDR = "D0:00:00:00:00:01"


@contextlib.asynccontextmanager
async def meter_session(meter: GlucoseMeter,
                        **kw: object) -> AsyncIterator[tuple[DeviceSession, Sink]]:
    """A running session to ``meter`` recording into a new sink, the sink its ledger too."""
    sink = Sink()
    async with scanned_session("1808", "meter", meter.address, sink, slots=3, ledger=sink,
                               **kw) as session:
        yield session, sink


def drop(device: GlucoseMeter | RecordCuff) -> None:
    """Lose the link to ``device`` (out of range, battery pulled)."""
    assert device.link is not None
    device.link.drop()


def seqs(sink: Sink, epoch: int = 0) -> list[int]:
    return [m.key for m in sink.glucose.get(("meter", epoch), [])]


def test_backfill_after_link_loss_has_no_gap_and_no_duplicate(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main() -> None:
        meter = GlucoseMeter(ADDR, records=20)
        async with virtual_bluez([meter]), meter_session(meter) as (session, sink):
            await until(lambda: len(seqs(sink)) == 20 and session.state == "streaming")
            meter.take(120)  # a live measurement while connected
            await until(lambda: len(seqs(sink)) == 21)
            drop(meter)  # out of range ...
            for v in (130, 140, 150):  # ... while the meter keeps measuring
                meter.take(v)
            await until(lambda: len(seqs(sink)) == 24)
        assert seqs(sink) == list(range(24))
        assert sink.resets == []
        assert session.stats.connects == 2 and session.stats.link_losses == 1
        assert sink.of(RACP)  # RACP responses are kept as raw frames too

    asyncio.run(main())


def test_sequence_reset_is_detected_not_mistaken_for_nothing_new(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main() -> None:
        meter = GlucoseMeter(ADDR, records=10)
        async with virtual_bluez([meter]) as bluez:
            async with meter_session(meter) as (session, sink):
                await until(lambda: len(seqs(sink)) == 10 and session.state == "streaming")
                # Battery change: counter back to 0, four new records (fewer than we hold).
                drop(meter)
                meter.reboot(4)
                await until(lambda: len(seqs(sink, 1)) == 4)
                # Another reboot, now with *more* records than we hold: seq 3 exists again
                # but is another record (other time) - still a reset.
                await until(lambda: session.state == "streaming")
                drop(meter)
                meter.reboot(12)
                await until(lambda: len(seqs(sink, 2)) == 12)
            assert bluez.device(ADDR).connect_attempts >= 3
        assert seqs(sink, 0) == list(range(10))
        assert seqs(sink, 1) == list(range(4))
        assert seqs(sink, 2) == list(range(12))
        assert len(sink.resets) == 2 and "sequence reset" in sink.resets[0]

    asyncio.run(main())


def test_device_clock_is_set_only_when_gateway_clock_is_trusted(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main(trusted: bool) -> tuple[list[tuple[float, bool]], float]:
        meter = GlucoseMeter(ADDR, records=1, clock_offset_s=3 * 3600 + 17)
        clocks: list[tuple[float, bool]] = []
        async with virtual_bluez([meter]), meter_session(
            meter, clock_trusted=lambda: trusted, max_drift_s=30,
            on_clock=lambda _d, off, fixed: clocks.append((off, fixed)),
        ) as (session, _):
            await until(lambda: session.state == "streaming")
        return clocks, meter.clock_offset.total_seconds()

    # on_clock reports device time - UTC; the meter keeps local time.
    zone = (datetime.now(UTC).astimezone().utcoffset() or timedelta()).total_seconds()
    # First the offset is measured (the stored records are stamped by the clock as it was,
    # so their UTC is derived with it), then - after the backfill - the clock is set.
    clocks, device_offset = asyncio.run(main(trusted=True))
    assert len(clocks) == 2
    assert clocks[0][1] is False and abs(clocks[0][0] - zone - (3 * 3600 + 17)) < 2
    assert clocks[1][1] is True and abs(clocks[1][0] - zone) < 2
    assert abs(device_offset) < 2
    clocks, device_offset = asyncio.run(main(trusted=False))
    assert [fixed for _, fixed in clocks] == [False, False]
    assert all(abs(off - zone - (3 * 3600 + 17)) < 2 for off, _ in clocks)
    assert device_offset > 3 * 3600


def test_damaged_records_are_asked_for_again(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main() -> None:
        meter = GlucoseMeter(ADDR, records=30)
        meter.damage_every = 4
        async with virtual_bluez([meter]), meter_session(meter) as (session, sink):
            await until(lambda: sorted(set(seqs(sink))) == list(range(30)))
            await until(lambda: session.state == "streaming")
            # Live: a damaged notification leaves a hole that is filled at once.
            meter.notified = 3  # the next notification is the 4th: damaged
            meter.take(99)
            meter.take(98)
            await until(lambda: sorted(set(seqs(sink))) == list(range(32)))
        assert session.stats.failures == 0 and session.stats.connects == 1
        damaged = [p for p in sink.of("2a18") if not decodes(p)]
        assert len(damaged) >= 8  # every damaged frame was handed on (kept as rejected)

    asyncio.run(main())


def test_bp_records_backfill_with_link_loss_and_reset(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main() -> None:
        cuff = RecordCuff("D0:00:00:00:00:02", records=6)
        sink = Sink()
        ledger = MemoryLedger()

        def records(char: str = "2b36") -> list[int]:
            return [m.key for p in sink.of(char) if (m := recorded_mark(p)) is not None]

        async with virtual_bluez([cuff]), scanned_session(
            "1810", "cuff", cuff.address, sink, ledger=ledger
        ) as session:
            await until(lambda: records() == list(range(6)))
            await until(lambda: session.state == "streaming")
            drop(cuff)
            cuff.take()
            cuff.take()
            await until(lambda: records() == list(range(8)))
            await until(lambda: session.state == "streaming")
            drop(cuff)
            cuff.reboot(3)  # fewer than we hold: the counter restarted
            await until(lambda: records() == [*range(8), 0, 1, 2])
        assert len(ledger.resets) == 1 and "sequence reset" in ledger.resets[0][2]

    asyncio.run(main())
