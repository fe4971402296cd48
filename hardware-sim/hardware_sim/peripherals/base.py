"""What every simulated health device shares: a clock, support services and frame faults.

A :class:`SimPeripheral` is a :class:`~hardware_sim.peripheral.Peripheral` with

* a **true clock** (injected; the wall clock by default) and a **device clock** that may be off
  by any amount (``FrameFaults.clock_offset``, minutes or years) until the central sets it
  through the Current Time characteristic (CTS §3.1, writable here as on real meters and
  cuffs);
* Battery (BAS), Device Information (DIS) and, for devices with a clock, Current Time
  services;
* **frame faults** applied to every payload it sends: every Nth frame corrupted or truncated;
* a **reboot** (a fault too) that restarts sequence numbers and loses stored records, as a
  battery change does on many meters.

Every payload is built with the gateway's codec encoders (``to_bytes``); nothing here packs
profile bytes by hand, so the simulator cannot drift from what the gateway decodes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from edge_gateway.drivers.profiles.base import DateTime
from edge_gateway.drivers.profiles.support import (
    BatteryLevel,
    CurrentTime,
    FirmwareRevision,
    ManufacturerName,
    ModelNumber,
    SerialNumber,
)
from edge_gateway.errors import MalformedPayload

from ..generators import stream
from ..peripheral import AttError, Faults, Flag, Link, Peripheral, Service, fixed, uuid128
from ..peripheral import char as make_char
from ..peripheral import service as make_service

Clock = Callable[[], datetime]
#: How far ahead a device plans its user's measurements (a run longer than this gets no more).
PLAN_AHEAD = timedelta(days=60)


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class FrameFaults:
    """Faults in what the device says, beside the link faults of :class:`Faults`.

    ``corrupt_every``/``truncate_every``: damage every Nth frame sent (0: never).  A corrupt
    frame has one byte flipped and one stray byte appended, so its length no longer matches its
    flags (every profile codec rejects it; CGM frames also fail their E2E-CRC); a truncated
    frame loses its last byte.  ``clock_offset``: device clock minus true time.
    ``reboot_before_connect``: the device reboots just before that connection (1-based count
    of accepted connections), restarting sequence numbers or the sensor session.
    """

    corrupt_every: int = 0
    truncate_every: int = 0
    clock_offset: timedelta = timedelta(0)
    reboot_before_connect: int | None = None


class SimPeripheral(Peripheral):
    """Base of the simulated health devices; subclasses add their profile service."""

    has_clock: bool = True
    #: The Model Number String (DIS) of this kind of device, unless ``model`` says otherwise.
    model_number: str = "sim"

    def __init__(
        self,
        address: str,
        name: str,
        *,
        start: datetime,
        seed: int = 0,
        clock: Clock = wall_clock,
        faults: Faults | None = None,
        frame_faults: FrameFaults | None = None,
        manufacturer: str = "edge-gateway hardware-sim",
        model: str | None = None,
        serial: str = "0001",
        battery: int = 87,
        requires_pairing: bool = False,
        passkey: int | None = None,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be an aware UTC datetime")
        self.start = start
        self.seed = seed
        self.clock = clock
        self.frame_faults = frame_faults if frame_faults is not None else FrameFaults()
        self.clock_offset = self.frame_faults.clock_offset
        self.battery = battery
        self.frames_sent = 0
        self.connections = 0
        self.boots = 1
        profile = self.profile_services()
        super().__init__(
            address=address,
            name=name,
            services=[*profile, *self._support_services(
                manufacturer, model if model is not None else self.model_number, serial)],
            # Advertise only the health service(s), as real devices do.
            service_uuids=[s.uuid for s in profile],
            requires_pairing=requires_pairing,
            passkey=passkey,
            faults=faults if faults is not None else Faults(),
        )

    # -- to override -----------------------------------------------------------------------------

    def profile_services(self) -> list[Service]:
        """The device's health service(s); called once from ``__init__``."""
        raise NotImplementedError

    def on_reboot(self) -> None:
        """Reset what a reboot resets (sequence numbers, stored records, sessions)."""

    # -- clocks ----------------------------------------------------------------------------------

    def now(self) -> datetime:
        """True time (aware UTC)."""
        return self.clock()

    def device_time(self, true_time: datetime | None = None) -> datetime:
        """The device clock's (naive) reading at ``true_time`` (default: now)."""
        t = self.now() if true_time is None else true_time
        return (t + self.clock_offset).astimezone(UTC).replace(tzinfo=None, microsecond=0)

    def device_datetime(self, true_time: datetime | None = None) -> DateTime:
        return DateTime.of(self.device_time(true_time))

    def elapsed(self) -> float:
        """Seconds of true time since the scenario ``start``."""
        return (self.now() - self.start).total_seconds()

    def days(self, first: datetime, last: datetime, what: str
             ) -> Iterator[tuple[datetime, np.random.Generator]]:
        """(UTC midnight, random stream) for each calendar day from ``first`` to ``last``.

        History is made day by day from streams named after the date, not after the run's
        start: a demo started again the next day finds the same records at the same times
        with the same sequence numbers, as a real device that kept its memory would show.
        """
        day = first.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        while day <= last:
            yield day, stream(self.seed, f"{self.name}:{what}:{day.date().isoformat()}")
            day += timedelta(days=1)

    # -- faults ----------------------------------------------------------------------------------

    def mangle(self, payload: bytes) -> bytes:
        """Apply the frame faults to the next frame sent (counts frames)."""
        self.frames_sent += 1
        n = self.frames_sent
        f = self.frame_faults
        if f.corrupt_every and n % f.corrupt_every == 0 and payload:
            damaged = bytearray(payload)
            damaged[len(damaged) // 2] ^= 0x5A
            return bytes(damaged) + b"\xee"
        if f.truncate_every and n % f.truncate_every == 0 and len(payload) > 1:
            # One byte short: the least damage that still breaks every profile's layout.
            return payload[:-1]
        return payload

    def send(self, link: Link, uuid: int | str, payload: bytes) -> None:
        """Notify ``payload`` (after frame faults)."""
        link.notify(uuid128(uuid), self.mangle(payload))

    async def send_indication(self, link: Link, uuid: int | str, payload: bytes) -> None:
        await link.indicate(uuid128(uuid), self.mangle(payload))

    def reboot(self) -> None:
        """Power-cycle: sequence numbers restart; the clock keeps running (it has a backup
        cell), but the device forgets what it stored."""
        self.boots += 1
        self.on_reboot()

    def accept_connection(self) -> bool:
        if not super().accept_connection():
            return False
        self.connections += 1
        if self.frame_faults.reboot_before_connect == self.connections:
            self.reboot()
        return True

    # -- support services ------------------------------------------------------------------------

    def _support_services(self, manufacturer: str, model: str, serial: str) -> list[Service]:
        out = [
            make_service(0x180F, make_char(0x2A19, Flag.READ, Flag.NOTIFY,
                                           on_read=lambda: BatteryLevel(self.battery).to_bytes())),
            make_service(
                0x180A,
                fixed(0x2A29, ManufacturerName(manufacturer).to_bytes()),
                fixed(0x2A24, ModelNumber(model).to_bytes()),
                fixed(0x2A25, SerialNumber(serial).to_bytes()),
                fixed(0x2A26, FirmwareRevision("1.0").to_bytes()),
            ),
        ]
        if self.has_clock:
            out.append(make_service(0x1805, make_char(
                0x2A2B, Flag.READ, Flag.WRITE, Flag.NOTIFY,
                on_read=self._read_current_time, on_write=self._write_current_time)))
        return out

    def _read_current_time(self) -> bytes:
        local = self.device_time()
        return CurrentTime(DateTime.of(local), local.isoweekday()).to_bytes()

    def _write_current_time(self, data: bytes) -> None:
        try:
            written = CurrentTime.from_bytes(data).to_datetime()
        except MalformedPayload:
            raise AttError(AttError.INVALID_ATTRIBUTE_VALUE_LENGTH, "bad Current Time") from None
        if written is None:
            # CTS §3.1.2.1: a value the server cannot use gets "Data field ignored" (0x80).
            raise AttError(0x80, "date/time not valid")
        self.clock_offset = written.replace(tzinfo=UTC) - self.now()


async def pause(seconds: float) -> None:
    """Yield to the loop (and the central) between frames of a burst."""
    await asyncio.sleep(seconds)
