"""The serial home sensor end to end over a real pty pair: simulator -> pyserial -> codec."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hardware_sim.serial_sensor import SerialFaults, SerialSensor

from edge_gateway.drivers.profiles.masimo_rad8 import CHARACTERISTIC, Rad8Record, to_readings
from edge_gateway.drivers.serial import SerialSession
from edge_gateway.errors import MalformedPayload

START = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)

Frame = tuple[str, str, datetime, bytes]


class Collector:
    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.states: list[str] = []
        self.event = asyncio.Event()

    def on_frame(self, device_id: str, characteristic: str, received_at: datetime,
                 payload: bytes) -> None:
        self.frames.append((device_id, characteristic, received_at, payload))
        self.event.set()

    def on_state(self, device_id: str, state: str) -> None:
        self.states.append(state)
        self.event.set()

    def session(self, device_id: str, port: str, **kw: Any) -> SerialSession:
        """A SerialSession reporting its frames and states here."""
        return SerialSession(device_id, port, self.on_frame, on_state=self.on_state, **kw)

    async def wait_for(self, n: int, connected: int = 0) -> None:
        """Until ``n`` frames arrived and ``connected`` "connected" states were seen."""
        async with asyncio.timeout(10):
            while len(self.frames) < n or self.states.count("connected") < connected:
                self.event.clear()
                await self.event.wait()


async def _run_session(session: SerialSession) -> asyncio.Task[None]:
    return asyncio.create_task(session.run(), name="serial-session")


async def _run(session: SerialSession, sensor: SerialSensor) -> tuple[asyncio.Task[None], ...]:
    """The gateway's session reading, then the simulated sensor writing: (reader, writer)."""
    reader = await _run_session(session)
    return reader, asyncio.create_task(sensor.run())


async def _stop(*tasks: asyncio.Task[None]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_lines_arrive_as_frames_and_decode() -> None:
    async def main() -> Collector:
        sensor = SerialSensor(START, seed=3, interval_s=0.02)
        got = Collector()
        session = got.session("rad8-1", sensor.open())
        reader, writer = await _run(session, sensor)
        await got.wait_for(20)
        await _stop(writer, reader)
        assert session.connects == 1
        return got

    got = asyncio.run(main())
    records = [Rad8Record.from_bytes(f[3]) for f in got.frames]
    assert {f[0] for f in got.frames} == {"rad8-1"}
    assert {f[1] for f in got.frames} == {CHARACTERISTIC}
    assert all(f[2].tzinfo is not None for f in got.frames)
    assert all(not f[3].endswith((b"\r", b"\n")) for f in got.frames)
    assert [r.device_time for r in records] == sorted(r.device_time for r in records)
    assert all(90 <= (r.spo2 or 0) <= 100 and 40 <= (r.pulse_rate or 0) <= 120 for r in records)
    readings = to_readings(records[0], device_id="rad8-1", characteristic=CHARACTERISTIC,
                           received_at=got.frames[0][2], device_clock_offset=timedelta(0))
    assert {r.kind for r in readings} == {"spo2", "pulse_rate", "perfusion_index"}
    assert readings[0].time == START
    assert "connected" in got.states


def test_damaged_lines_are_rejected_and_the_stream_goes_on() -> None:
    async def main() -> Collector:
        faults = SerialFaults(corrupt_share=0.25, truncate_share=0.25)
        sensor = SerialSensor(START, seed=5, interval_s=0.01, faults=faults)
        got = Collector()
        reader, writer = await _run(got.session("rad8-2", sensor.open()), sensor)
        await got.wait_for(80)
        await _stop(writer, reader)
        return got

    got = asyncio.run(main())
    good = bad = 0
    for _, _, _, payload in got.frames:
        try:
            Rad8Record.from_bytes(payload)
            good += 1
        except MalformedPayload as e:
            assert e.raw == payload
            bad += 1
    # Some corruptions land in the dashes of an optional field and still parse; most do not.
    assert bad >= 20 and good >= 30


def test_reconnects_after_the_port_disappears(tmp_path: Path) -> None:
    link = tmp_path / "ttyRAD8"

    async def main() -> tuple[Collector, SerialSession]:
        # Device time has whole seconds: unplug long enough for the gap to show in it.
        faults = SerialFaults(unplug_at=0.3, unplug_for=1.3)
        sensor = SerialSensor(START, seed=7, interval_s=0.1, link_path=link, faults=faults)
        got = Collector()
        session = got.session("rad8-3", str(link), backoff_initial=0.05, backoff_max=0.2)
        # The gateway starts first: the port is not there yet, so it waits and retries.
        reader = await _run_session(session)
        await asyncio.sleep(0.1)
        assert session.connects == 0
        writer = asyncio.create_task(sensor.run())
        await got.wait_for(5)
        await got.wait_for(0, connected=2)
        before = len(got.frames)
        await got.wait_for(before + 5)
        await _stop(writer, reader)
        return got, session

    got, session = asyncio.run(main())
    assert session.connects == 2
    assert got.states.count("connected") == 2 and "disconnected" in got.states
    times = [Rad8Record.from_bytes(f[3]).device_time for f in got.frames]
    # The device kept measuring while unplugged: a gap in device time, never a step back.
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0 and max(gaps) >= 1


def test_a_stream_without_newlines_is_cut_at_max_line() -> None:
    async def main() -> Collector:
        sensor = SerialSensor(START)
        got = Collector()
        reader = await _run_session(got.session("rad8-4", sensor.open(), max_line=64))
        # pyserial flushes the input buffer when it opens the port: write only after that.
        await got.wait_for(0, connected=1)
        assert sensor.write(b"\x55" * 200 + b"\r\n")
        await got.wait_for(4)
        await _stop(reader)
        sensor.close()
        return got

    got = asyncio.run(main())
    assert [len(f[3]) for f in got.frames] == [64, 64, 64, 8]
    with pytest.raises(MalformedPayload):
        Rad8Record.from_bytes(got.frames[0][3])


def test_stop_closes_the_port_and_returns() -> None:
    async def main() -> tuple[SerialSession, Collector]:
        sensor = SerialSensor(START, interval_s=0.02)
        got = Collector()
        session = got.session("rad8-5", sensor.open())
        reader, writer = await _run(session, sensor)
        await got.wait_for(3)
        session.stop()
        async with asyncio.timeout(2):
            await reader  # returns by itself, no cancellation needed
        await _stop(writer)
        return session, got

    session, got = asyncio.run(main())
    assert session.state == "stopped" and not session.connected
    assert got.states[-2:] == ["disconnected", "stopped"]
