"""The hardware-sim devices (14 days of history, CGM sessions) through real bleak and sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ble_sim import Sink, ble_session, running, until
from hardware_sim.bluez import VirtualBlueZ
from hardware_sim.peripherals.base import FrameFaults
from hardware_sim.peripherals.cgm import CgmSensor
from hardware_sim.peripherals.glucose_meter import GlucoseMeter

from edge_gateway.drivers import ble, registry
from edge_gateway.drivers.backfill import CgmBackfill, MemoryLedger, RecordMark

START = datetime.now(UTC) - timedelta(minutes=1)


class CgmLedger(MemoryLedger):
    """Marks from what was delivered, as the store would hold them."""

    def __init__(self) -> None:
        super().__init__()
        self.offsets: list[list[int]] = [[]]
        self.session: bytes | None = None

    def __call__(self, device_id: str, char: str, _at: datetime, payload: bytes) -> None:
        if char == "2aaa":
            self.session = payload
        spec = registry.current().racp.get(char)
        keys = CgmBackfill(None, spec).keys(payload) if spec is not None \
            and spec.identity == "time_offset" else None
        if keys is not None and self.session is not None:  # as the store: whole frames only
            self.offsets[-1].extend(keys)
            self.note(device_id, char, RecordMark(max(self.offsets[-1]), self.session))

    def reset_detected(self, device_id: str, characteristic: str, reason: str) -> None:
        super().reset_detected(device_id, characteristic, reason)
        self.offsets.append([])


def test_sim_glucose_meter_backfills_two_weeks_after_pairing(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main() -> None:
        meter = GlucoseMeter("A1:00:00:00:00:01", start=START, seed=7)
        held = len(meter.stored)
        assert held > 30
        sink = Sink()
        async with virtual_bluez([meter]):
            await ble.scan(0.3, ["1808"])
            await ble.pair(meter.address, None, within=10)  # Just Works
            session = ble_session("meter", meter.address, sink, ledger=sink)
            async with running(session):
                await until(lambda: session.state == "streaming")
        got = [m.key for m in sink.glucose[("meter", 0)]]
        assert got == [r.sequence for r in meter.stored][: len(got)] and len(got) >= held
        assert len(sink.of("2a34")) == len(got)  # each record's context came along

    asyncio.run(main())


def test_sim_cgm_backfill_by_time_offset_and_new_session(
    virtual_bluez: Callable[..., VirtualBlueZ],
) -> None:
    async def main() -> None:
        cgm = CgmSensor("A1:00:00:00:00:02", start=START, seed=3,
                        session_age=timedelta(hours=6))
        ledger = CgmLedger()
        async with virtual_bluez([cgm]):
            await ble.scan(0.3, ["181f"])
            session = ble_session("cgm", cgm.address, ledger, ledger=ledger)
            async with running(session):
                await until(lambda: session.state == "streaming")
                first = list(ledger.offsets[0])
                assert first == sorted(set(first)) and len(first) >= 50  # 5-min, after warm-up
                # A new sensor: offsets restart; the gateway must notice, not skip them.
                assert cgm.racp.link is not None
                cgm.racp.link.drop()
                cgm.new_session(cgm.now() - timedelta(hours=3))
                await until(lambda: len(ledger.offsets) == 2 and session.state == "streaming")
        assert ledger.resets and "session" in ledger.resets[0][2]
        second = ledger.offsets[1]
        assert second == sorted(set(second)) and second[0] < 100 and len(second) >= 20

    asyncio.run(main())


def test_sim_cgm_damaged_frames_are_refilled(virtual_bluez: Callable[..., VirtualBlueZ]) -> None:
    async def main() -> None:
        cgm = CgmSensor("A1:00:00:00:00:03", start=START, seed=5, session_age=timedelta(hours=8),
                        frame_faults=FrameFaults(truncate_every=9))
        ledger = CgmLedger()
        async with virtual_bluez([cgm]):
            await ble.scan(0.3, ["181f"])
            session = ble_session("cgm", cgm.address, ledger, ledger=ledger)
            want = {int(cgm.series.offset_min[i]) for i in cgm._available()}
            async with running(session):
                await until(lambda: session.state == "streaming")
                await until(lambda: want <= set(ledger.offsets[0]), within=10)
        assert ledger.resets == []
        assert not session.backfills["2aa7"].holes

    asyncio.run(main())
