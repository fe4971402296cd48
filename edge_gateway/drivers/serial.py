"""Serial transport (pyserial): one supervised session per line-based serial device.

This is the only module on the gateway side that imports pyserial.  A session opens the port,
splits the byte stream into lines and hands each line, as received, to the same callback the
BLE sessions use::

    on_frame(device_id, characteristic, received_at, payload)

where ``characteristic`` is ``serial:<protocol>`` (e.g. ``serial:masimo-rad8``) and
``payload`` is the line without its CR LF.  Decoding is not done here: the daemon runs the
protocol's pure codec (:mod:`edge_gateway.drivers.profiles.masimo_rad8`) on the frame, so a bad line
becomes a rejected raw frame exactly like a bad BLE notification.

When the port disappears (USB adapter pulled, pty closed) reads fail with EIO; the session
closes the port and reopens it with full-jitter exponential backoff until it is back.  Point
``port`` at a stable name (``/dev/serial/by-id/...`` or a symlink), not ``/dev/ttyUSB0``,
which the kernel may hand to another adapter after a replug.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import serial

from edge_gateway.backoff import Backoff
from edge_gateway.errors import DeviceError

log = logging.getLogger(__name__)

FrameCallback = Callable[[str, str, datetime, bytes], None]
StateCallback = Callable[[str, str], None]

#: Line-based protocols the transport knows: name -> baud rate from the device's manual.
PROTOCOLS: dict[str, int] = {"masimo-rad8": 9600}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SerialSession:
    """Reads lines from one serial port for as long as :meth:`run` runs.

    ``max_line`` bounds the buffer: a device spewing bytes without newlines (wrong baud rate,
    line noise) yields frames of ``max_line`` bytes, which the codec then rejects, instead of
    growing memory without limit.
    """

    def __init__(
        self,
        device_id: str,
        port: str,
        on_frame: FrameCallback,
        *,
        protocol: str = "masimo-rad8",
        baudrate: int | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        max_line: int = 1024,
        on_state: StateCallback | None = None,
        now: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            known = ", ".join(sorted(PROTOCOLS))
            raise DeviceError(device_id, f"unknown serial protocol {protocol!r}",
                              retryable=False, hint=f"use one of: {known}")
        self.device_id = device_id
        self.port = port
        self.protocol = protocol
        self.characteristic = f"serial:{protocol}"
        self.baudrate = baudrate if baudrate is not None else PROTOCOLS[protocol]
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_line = max_line
        self._on_frame = on_frame
        self._on_state = on_state
        self._now = now
        self._rng = rng if rng is not None else random.Random()
        self.connected = False
        #: How many times the port was opened (1 after the first success).
        self.connects = 0
        self.frames = 0
        #: "idle", "waiting" (port absent, backing off), "connected", "disconnected", "stopped".
        self.state = "idle"
        self._stopping = False
        self._wake: asyncio.Event | None = None

    def _state(self, state: str) -> None:
        self.state = state
        if self._on_state is not None:
            self._on_state(self.device_id, state)

    def stop(self) -> None:
        """Ask :meth:`run` to close the port and return (cancelling its task works too)."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once on :meth:`stop`."""
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def _open(self) -> Any:
        # timeout=0: reads never block; the event loop tells us when bytes are waiting.
        return serial.Serial(self.port, self.baudrate, timeout=0)

    async def run(self) -> None:
        """Open, read, and reopen after losing the port, until stopped or cancelled."""
        self._wake = asyncio.Event()
        if self._stopping:
            self._wake.set()
        try:
            await self._supervise()
        finally:
            self._state("stopped")

    async def _supervise(self) -> None:
        # Full jitter from 2·initial on the first failed open; after a lost port the first
        # pause is drawn below ``initial`` (a port that vanishes keeps failing for a moment,
        # so start gently) and the next failures continue from 2·initial.
        backoff = Backoff(self.backoff_initial, self.backoff_max, rng=self._rng, attempt=1)
        while not self._stopping:
            try:
                port = await asyncio.to_thread(self._open)
            except (serial.SerialException, OSError) as e:
                delay = backoff.next()
                log.debug("%s: cannot open %s (%s); retry in %.2f s", self.device_id,
                          self.port, e, delay)
                self._state("waiting")
                await self._sleep(delay)
                continue
            backoff.reset()
            self.connected = True
            self.connects += 1
            log.info("%s: %s open at %d baud", self.device_id, self.port, self.baudrate)
            self._state("connected")
            try:
                await self._pump(port)
            except (serial.SerialException, OSError) as e:
                log.warning("%s: lost %s (%s); reopening", self.device_id, self.port, e)
            finally:
                self.connected = False
                port.close()
                self._state("disconnected")
            await self._sleep(backoff.next())

    async def _pump(self, port: Any) -> None:
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[None] = loop.create_future()
        buf = bytearray()
        fd = port.fileno()

        def readable() -> None:
            try:
                data: bytes = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError) as e:
                if not failed.done():
                    failed.set_exception(e)
                return
            received_at = self._now()
            buf.extend(data)
            while True:
                # Only look as far as a line may reach, so an over-long line is cut even when
                # its newline arrived in the same read.
                nl = buf.find(b"\n", 0, self.max_line + 1)
                if nl < 0:
                    if len(buf) >= self.max_line:
                        self._deliver(bytes(buf[: self.max_line]), received_at)
                        del buf[: self.max_line]
                        continue
                    break
                line = bytes(buf[:nl]).rstrip(b"\r")
                del buf[: nl + 1]
                if line:
                    self._deliver(line, received_at)

        assert self._wake is not None
        stopped = loop.create_task(self._wake.wait())

        def on_stop(_task: asyncio.Task[bool]) -> None:
            if not failed.done():
                failed.set_result(None)

        stopped.add_done_callback(on_stop)
        loop.add_reader(fd, readable)
        try:
            await failed
        finally:
            loop.remove_reader(fd)
            stopped.cancel()

    def _deliver(self, line: bytes, received_at: datetime) -> None:
        self.frames += 1
        self._on_frame(self.device_id, self.characteristic, received_at, line)
