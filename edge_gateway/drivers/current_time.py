"""Current Time Service (CTS 1.1): read a device's clock, set it when it drifted.

Current Time (0x2A2B) is Exact Time 256 plus an adjust reason: year (uint16), month, day, hours,
minutes, seconds, day of week (1 = Monday, 0 = unknown), fractions of 1/256 s, adjust reason.
Health devices keep local wall time without a zone.  The offset reported to ``on_clock`` is
*device time − UTC* in seconds (so ``utc = device_time − offset`` holds whatever the zone); the
drift is that offset minus the gateway's own UTC offset, and a clock that drifted is set to the
gateway's local wall time.  The offset is reported whether or not the clock is set, so the
daemon can derive UTC for records the device took before the correction.
The clock is only set while ``clock_trusted()`` is true (the gateway clock is NTP-synchronised):
a Pi that booted without network would otherwise push its stale time into every device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from edge_gateway.drivers.profiles.support import CurrentTime
from edge_gateway.drivers.transport import FrameCallback, Transport
from edge_gateway.errors import DeviceError

log = logging.getLogger(__name__)

CURRENT_TIME = CurrentTime.characteristic
ADJUST_MANUAL = 0x01  # "manual time update" (CTS Table 3.3)


def encode_current_time(local: datetime, adjust_reason: int = ADJUST_MANUAL) -> bytes:
    """The Current Time value that sets a device's clock to ``local`` (its wall time)."""
    return CurrentTime.for_write(local, adjust_reason).to_bytes()


def decode_current_time(raw: bytes) -> datetime | None:
    """The device's wall time, or None when it is unset or invalid (year 0, month 0, ...)."""
    if len(raw) < 7:
        return None
    year = raw[0] | (raw[1] << 8)
    frac = raw[8] if len(raw) >= 9 else 0
    try:
        return datetime(year, raw[2], raw[3], raw[4], raw[5], raw[6], frac * 1_000_000 // 256)
    except ValueError:
        return None


class ClockPort(Protocol):
    device_id: str
    transport: Transport
    on_frame: FrameCallback
    clock_trusted: Callable[[], bool]
    max_drift_s: float
    set_clock: bool
    on_clock: Callable[[str, float, bool], None] | None
    now: Callable[[], datetime]

    async def read(self, uuid: str) -> bytes: ...


def _offset(port: ClockPort, raw: bytes) -> float | None:
    """Device time − UTC, seconds (None when the device clock is unset)."""
    device = decode_current_time(raw)
    if device is None:
        return None
    utc = port.now().astimezone(UTC).replace(tzinfo=None)
    return (device - utc).total_seconds()


def _zone_offset(port: ClockPort) -> float:
    delta = port.now().astimezone().utcoffset()
    return 0.0 if delta is None else delta.total_seconds()


async def sync_clock(port: ClockPort, *, may_set: bool = True) -> float | None:
    """Read the device's time; set it if it drifted and we may.  Returns the final offset.

    ``may_set=False`` only measures: the session measures before it fetches stored records
    (stamped by the device's clock as it was) and sets the clock after they are in.
    """
    offset = _offset(port, await port.read(CURRENT_TIME))
    drift = None if offset is None else offset - _zone_offset(port)
    corrected = False
    if (drift is None or abs(drift) > port.max_drift_s) and port.set_clock and may_set:
        shown = "?" if drift is None else f"{drift:.0f}"
        if not port.clock_trusted():
            log.warning("%s: device clock off by %s s, not set: gateway clock not synchronised",
                        port.device_id, shown)
        else:
            local = port.now().astimezone().replace(tzinfo=None)
            try:
                await port.transport.write(CURRENT_TIME, encode_current_time(local))
            except DeviceError as err:
                # Many devices make Current Time read-only (ATT 0x80 "data field ignored").
                log.info("%s: could not set the device clock: %s", port.device_id, err)
            else:
                corrected = True
                log.info("%s: device clock was off by %s s; set", port.device_id, shown)
                offset = _offset(port, await port.read(CURRENT_TIME))
    if port.on_clock is not None and offset is not None:
        port.on_clock(port.device_id, offset, corrected)
    return offset
