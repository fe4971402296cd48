"""A simulated serial home sensor: a Masimo Rad-8 pulse oximeter on a pty pair.

The device protocol is the Rad-8's "ASCII 1" serial output (Masimo, *Rad-8 Operator's Manual*,
section 4 "Serial Interface"); the line format and its codec live in
:mod:`edge_gateway.drivers.profiles.masimo_rad8`, and every line written here is built with that
codec's ``to_bytes`` so the simulator and the gateway cannot drift apart.

The simulator owns the pty's master side and writes one line per ``interval_s``; the gateway
opens the slave side with pyserial as it would open ``/dev/ttyUSB0``.  ``link_path`` (if set)
is a symlink to the current slave, re-pointed after a replug, like a udev
``/dev/serial/by-id/`` name: the kernel gives a new pty another number each time.

Faults: ``corrupt_share`` / ``truncate_share`` damage that share of lines (line noise, a
half-sent line); ``unplug_at`` / ``unplug_for`` (/ ``unplug_every``) close the port for a while
(the gateway's reads fail with EIO) and reopen it; ``clock_offset`` shifts the device's clock;
``sensor_off`` spans send dashes with the "sensor off" exception bit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tty
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from edge_gateway.drivers.profiles.masimo_rad8 import Rad8Record

from .generators import Episode, Spo2Series, spo2_series, stream

EXC_SET_MODE = 0x800
EXC_SENSOR_OFF = 0x020
_OTHERS = (("SPCO", "--.-%"), ("SPMET", "--.-%"), ("DESAT", "--"), ("PIDELTA", "+--"))
_CHUNK = timedelta(minutes=10)


@dataclass
class SerialFaults:
    corrupt_share: float = 0.0
    truncate_share: float = 0.0
    #: Seconds after :meth:`SerialSensor.run` starts when the port vanishes (None: never).
    unplug_at: float | None = None
    unplug_for: float = 2.0
    #: Unplug again this many seconds after each replug (None: once).
    unplug_every: float | None = None
    clock_offset: timedelta = timedelta(0)
    #: Seconds (from start) during which the probe is off the finger.
    sensor_off: tuple[tuple[float, float], ...] = ()


class SerialSensor:
    """A Rad-8 writing ASCII 1 lines to the master side of a pty."""

    def __init__(
        self,
        start: datetime,
        *,
        seed: int = 0,
        name: str = "rad8",
        serial_number: str = "0000093112",
        interval_s: float = 1.0,
        pulse_bpm: float = 68.0,
        episodes: tuple[Episode, ...] = (),
        link_path: str | os.PathLike[str] | None = None,
        faults: SerialFaults | None = None,
    ) -> None:
        self.start = start
        self.name = name
        self.serial_number = serial_number
        self.interval_s = interval_s
        self.pulse_bpm = pulse_bpm
        self.episodes = episodes
        self.link_path = Path(link_path) if link_path is not None else None
        self.faults = faults if faults is not None else SerialFaults()
        self._rng = stream(seed, name)
        self._fault_rng = stream(seed, name + ":faults")
        self._chunk_index = -1
        self._chunk: Spo2Series | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_path: str | None = None
        self.lines_written = 0
        self.unplugs = 0

    # -- pure part: what the device says at sample i -----------------------------------------

    def _samples(self, i: int) -> tuple[Spo2Series, int]:
        per_chunk = int(_CHUNK.total_seconds() / self.interval_s)
        chunk = i // per_chunk
        if chunk != self._chunk_index or self._chunk is None:
            # Chunks are generated in order as the stream advances; jumping back regenerates
            # from the generator's current state (fine: values only need to be plausible).
            self._chunk = spo2_series(
                self.start + chunk * _CHUNK, _CHUNK, self._rng, interval_s=self.interval_s,
                pulse_bpm=self.pulse_bpm, episodes=self.episodes,
            )
            self._chunk_index = chunk
        return self._chunk, i - chunk * per_chunk

    def record(self, i: int) -> Rad8Record:
        """Sample ``i`` (``interval_s`` apart from ``start``) as the device reports it."""
        series, k = self._samples(i)
        t = i * self.interval_s
        device_time = (self.start + timedelta(seconds=t) + self.faults.clock_offset)
        device_time = device_time.replace(tzinfo=None, microsecond=0)
        if any(a <= t < b for a, b in self.faults.sensor_off):
            return Rad8Record(device_time, self.serial_number, None, None, None,
                              exception=EXC_SET_MODE | EXC_SENSOR_OFF, others=_OTHERS)
        return Rad8Record(
            device_time, self.serial_number, float(series.spo2[k]), float(series.pulse[k]),
            float(series.perfusion_index[k]), exception=EXC_SET_MODE, others=_OTHERS,
        )

    def line(self, i: int) -> bytes:
        """Sample ``i`` as the bytes on the wire, with the configured damage applied."""
        data = self.record(i).to_bytes()
        u = float(self._fault_rng.uniform())
        if u < self.faults.corrupt_share:
            # Line noise: a few bytes replaced by garbage (never by the CR LF framing).
            pos = self._fault_rng.integers(0, len(data), size=3)
            junk = bytearray(data)
            for p in pos:
                junk[int(p)] = int(self._fault_rng.choice(np.frombuffer(b"#?%\x7f\xff", np.uint8)))
            data = bytes(junk)
        elif u < self.faults.corrupt_share + self.faults.truncate_share:
            data = data[: int(self._fault_rng.integers(5, len(data) - 5))]
        return data + b"\r\n"

    # -- the pty -------------------------------------------------------------------------------

    def open(self) -> str:
        """Create the pty pair; returns the path the gateway should open."""
        master, slave = os.openpty()
        # Raw mode: no echo back into the master, no CR/LF translation of the device's bytes.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.slave_path = os.ttyname(slave)
        if self.link_path is not None:
            tmp = self.link_path.with_name(self.link_path.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.slave_path)
            tmp.replace(self.link_path)  # atomic: a reader never sees the name missing
            return str(self.link_path)
        return self.slave_path

    @property
    def is_open(self) -> bool:
        return self._master is not None

    def close(self) -> None:
        """Unplug: the pty goes away and the gateway's reads fail with EIO."""
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        if self.link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link_path.unlink()

    def write(self, data: bytes) -> bool:
        """Send bytes; False when nobody drains the port and its buffer is full (dropped, as a
        real transmitter's bytes are lost with nobody listening)."""
        if self._master is None:
            return False
        try:
            os.write(self._master, data)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EIO):
                return False
            raise
        return True

    async def run(self, duration: float | None = None) -> None:
        """Write a line every ``interval_s`` seconds of real time (opening the port if needed),
        honouring the unplug fault, for ``duration`` seconds or until cancelled."""
        loop = asyncio.get_running_loop()
        if not self.is_open:
            self.open()
        t0 = loop.time()
        next_unplug = self.faults.unplug_at
        i = 0
        try:
            while duration is None or i * self.interval_s < duration:
                due = t0 + i * self.interval_s
                await asyncio.sleep(max(0.0, due - loop.time()))
                elapsed = loop.time() - t0
                f = self.faults
                if next_unplug is not None and elapsed >= next_unplug:
                    self.unplugs += 1
                    self.close()
                    await asyncio.sleep(f.unplug_for)
                    self.open()
                    next_unplug = (None if f.unplug_every is None
                                   else loop.time() - t0 + f.unplug_every)
                    # The device kept measuring while unplugged; resume at the current time.
                    i = int((loop.time() - t0) / self.interval_s)
                    continue
                if self.write(self.line(i)):
                    self.lines_written += 1
                i += 1
        finally:
            self.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m hardware_sim.serial_sensor --link /tmp/ttyRAD8``: serve a Rad-8 until
    interrupted (the path to open with pyserial is printed, then kept up to date)."""
    import argparse
    from datetime import UTC

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--link", help="symlink to keep pointing at the pty's slave side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between lines")
    parser.add_argument("--duration", type=float, default=None, help="stop after seconds")
    args = parser.parse_args(argv)
    sensor = SerialSensor(datetime.now(UTC), seed=args.seed, interval_s=args.interval,
                          link_path=args.link)
    print(f"READY {sensor.open()}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(sensor.run(args.duration))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
