"""Glucose records split across notifications: a Glucose Measurement (0x2A18) and its Glucose
Measurement Context (0x2A34) arrive as two notifications, and a link can drop between them.

End to end through bleak and the virtual BlueZ: whatever the link does, every context the
meter holds reaches the gateway exactly once, and a measurement that announces a context which
never comes is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ble_sim import GLC, GLM, RACP, Sink, scanned_session, until
from hardware_sim.bluez import VirtualBlueZ
from hardware_sim.peripheral import AttError, Flag, Link, Peripheral, char, fixed, service

from edge_gateway.drivers.profiles.base import DateTime
from edge_gateway.drivers.profiles.glucose import GlucoseMeasurement, GlucoseMeasurementContext
from edge_gateway.drivers.profiles.ieee11073 import SFloat
from edge_gateway.drivers.profiles.racp import RecordAccessControlPoint as Racp
from edge_gateway.drivers.registry import to_readings

ADDR = "D0:00:00:00:00:21"
START = datetime(2026, 11, 10, 7, 0)


class ContextMeter(Peripheral):
    """A meter whose records carry a context (meal), sent as a second notification."""

    def __init__(self, address: str, records: int) -> None:
        super().__init__(address, "Context meter", services=[service(
            0x1808,
            char(0x2A18, Flag.NOTIFY),
            char(0x2A34, Flag.NOTIFY),
            fixed(0x2A51, b"\x00\x00"),
            char(0x2A52, Flag.WRITE, Flag.INDICATE, on_write=self._racp),
        )])
        #: seq -> (measurement bytes, context bytes or None: announced but never sent)
        self.records: list[tuple[int, bytes, bytes | None]] = []
        self.link: Link | None = None
        for _ in range(records):
            self.take(110)

    def take(self, mgdl: int, *, live: str = "both", has_context: bool = True) -> int:
        """Store a record; while connected notify it: ``both`` notifications, ``measurement``
        only (the link is about to drop before the context), or ``none``."""
        seq = len(self.records)
        when = START + timedelta(hours=6 * seq)
        m = GlucoseMeasurement(
            seq, DateTime.of(when), time_offset=0, concentration=SFloat(mgdl, -5), type=1,
            sample_location=1, context_follows=True).to_bytes()
        ctx = GlucoseMeasurementContext(seq, meal=1 + seq % 5).to_bytes() if has_context else None
        self.records.append((seq, m, ctx))
        if self.link is not None and live != "none":
            self.link.notify(GLM, m)
            if live == "both" and ctx is not None:
                self.link.notify(GLC, ctx)
        return seq

    def on_connect(self, link: Link) -> None:
        self.link = link

    def on_disconnect(self) -> None:
        self.link = None

    def _racp(self, value: bytes) -> object:
        link = self.link
        assert link is not None
        if not link.is_subscribed(RACP):
            raise AttError(AttError.CCCD_IMPROPERLY_CONFIGURED)
        req = Racp.from_bytes(value)
        lo, hi = 0, 0xFFFF
        if req.operator == 3 and isinstance(req.filter_min, int):
            lo = req.filter_min
        elif req.operator == 4 and isinstance(req.filter_min, int) \
                and isinstance(req.filter_max, int):
            lo, hi = req.filter_min, req.filter_max
        return self._report(link, [r for r in self.records if lo <= r[0] <= hi])

    async def _report(self, link: Link, chosen: list[tuple[int, bytes, bytes | None]]) -> None:
        for _seq, m, ctx in chosen:
            link.notify(GLM, m)
            if ctx is not None:
                link.notify(GLC, ctx)
            await asyncio.sleep(0)
        await link.indicate(RACP, Racp.response(1, 1 if chosen else 6).to_bytes())


def keys(sink: Sink, char: str) -> list[int]:
    return sorted(p[1] | (p[2] << 8) for p in sink.of(char))


def test_context_cut_off_by_a_link_drop_comes_with_the_next_backfill(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main() -> None:
        meter = ContextMeter(ADDR, records=5)
        sink = Sink()
        async with virtual_bluez([meter]), scanned_session(
                "1808", "meter", ADDR, sink, slots=3, ledger=sink) as session:
            await until(lambda: len(sink.of(GLC)) == 5 and session.state == "streaming")
            meter.take(180, live="both")  # record 5 whole, live
            await until(lambda: len(sink.of(GLC)) == 6)
            meter.take(190, live="measurement")  # record 6: the link drops before its context
            await until(lambda: len(sink.of(GLM)) == 7)
            assert meter.link is not None
            meter.link.drop()
            await until(lambda: session.stats.connects == 2 and session.state == "streaming")
            await until(lambda: len(sink.of(GLC)) == 7)
            # Record 6 comes back as proof of identity; 5, whose context we hold, is not asked.
            meter.take(200, live="both")
            await until(lambda: len(sink.of(GLC)) == 8)
        assert keys(sink, GLM) == list(range(8))  # no measurement twice
        assert keys(sink, GLC) == list(range(8))  # every context exactly once
        assert sink.resets == []

    asyncio.run(main())


def test_context_is_not_lost_across_a_gateway_restart(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main() -> None:
        meter = ContextMeter(ADDR, records=3)
        sink = Sink()
        async with virtual_bluez([meter]):
            async with scanned_session("1808", "meter", ADDR, sink, slots=3,
                                       ledger=sink) as session:
                await until(lambda: len(sink.of(GLC)) == 3 and session.state == "streaming")
                meter.take(150, live="measurement")  # the gateway stops before the context
                await until(lambda: len(sink.of(GLM)) == 4)
            # A new process: the same store (the sink is the ledger), nothing in memory.
            async with scanned_session("1808", "meter", ADDR, sink, slots=3,
                                       ledger=sink) as session:
                await until(lambda: 3 in keys(sink, GLC) and session.state == "streaming")
        assert keys(sink, GLM) == list(range(4))
        assert keys(sink, GLC) == list(range(4))

    asyncio.run(main())


def test_measurement_whose_context_never_comes_is_kept(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main() -> None:
        meter = ContextMeter(ADDR, records=2)
        meter.take(61, has_context=False)  # flags say "context follows"; it never does
        meter.take(62)
        sink = Sink()
        async with virtual_bluez([meter]), scanned_session(
                "1808", "meter", ADDR, sink, slots=3, ledger=sink) as session:
            await until(lambda: len(sink.of(GLM)) == 4 and session.state == "streaming")
        assert keys(sink, GLM) == [0, 1, 2, 3]
        assert keys(sink, GLC) == [0, 1, 3]
        orphan = next(p for p in sink.of(GLM) if p[1] == 2)
        readings = to_readings(GLM, orphan, device_id="meter", received_at=datetime.now(UTC),
                               device_clock_offset=None)
        assert [(r.kind, r.value, r.record_key) for r in readings] == [("glucose", 61.0, "seq:2")]
        assert readings[0].extra["context_follows"] is True

    asyncio.run(main())
