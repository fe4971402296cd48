"""Soak: the serial sensor unplugged again and again, with line noise, for half a minute."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hardware_sim.serial_sensor import SerialFaults, SerialSensor

from edge_gateway.drivers.profiles.masimo_rad8 import Rad8Record
from edge_gateway.drivers.serial import SerialSession
from edge_gateway.errors import MalformedPayload


@pytest.mark.soak
def test_serial_survives_repeated_unplugs_and_noise(tmp_path: Path) -> None:
    faults = SerialFaults(corrupt_share=0.05, truncate_share=0.05, unplug_at=2.0,
                          unplug_for=0.5, unplug_every=3.0)
    sensor = SerialSensor(datetime.now(UTC), seed=11, interval_s=0.02,
                          link_path=tmp_path / "ttyRAD8", faults=faults)
    frames: list[bytes] = []

    async def main() -> SerialSession:
        session = SerialSession("rad8", str(tmp_path / "ttyRAD8"),
                                lambda _d, _c, _t, payload: frames.append(payload),
                                backoff_initial=0.05, backoff_max=0.5)
        reader = asyncio.create_task(session.run())
        await sensor.run(duration=30.0)
        await asyncio.sleep(0.2)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        return session

    session = asyncio.run(main())
    bad = 0
    for payload in frames:
        try:
            Rad8Record.from_bytes(payload)
        except MalformedPayload:
            bad += 1
    assert sensor.unplugs >= 8
    assert session.connects >= sensor.unplugs  # reopened after every unplug
    # Lines written while the port was open mostly arrive; a few are lost around each unplug.
    assert len(frames) >= 0.8 * sensor.lines_written
    assert 0.03 * len(frames) <= bad <= 0.2 * len(frames)
