"""The small interface a device session talks to, whatever carries the bytes.

:mod:`edge_gateway.drivers.ble` implements it with bleak.  Session and backfill logic
(:mod:`.session`, :mod:`.backfill`) is written against :class:`Transport` only, so it never sees
bleak and can be exercised with any object of this shape.

Characteristics are named by UUID as :func:`~edge_gateway.drivers.profiles.base.short_uuid`
spells them: a 16-bit SIG number as four hex digits (``"2a37"``), a vendor's UUID in its
canonical 36-character form.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from edge_gateway.errors import DeviceError

#: on_frame(device_id, characteristic ("2a37"), received_at (UTC), payload)
FrameCallback = Callable[[str, str, datetime, bytes], None]
#: called with each notification or indication value, on the event loop, in arrival order
NotifyCallback = Callable[[bytes], None]


class GattError(DeviceError):
    """The device answered a GATT request with an ATT error (``code``, e.g. 0x05)."""

    def __init__(self, device: str, characteristic: str, code: int | None, reason: str) -> None:
        self.characteristic = characteristic
        self.code = code
        # Insufficient authentication/encryption: pairing is missing, retrying will not help.
        needs_pairing = code in (0x05, 0x0F) or "not paired" in reason.lower()
        super().__init__(
            device, f"{characteristic}: {reason}", retryable=not needs_pairing,
            hint="pair the device first: edge-gateway devices pair ADDRESS" if needs_pairing
            else None,
        )
        self.needs_pairing = needs_pairing


class Transport(Protocol):
    """A connection to one device.  Not reusable across devices; reusable across connects."""

    @property
    def address(self) -> str: ...

    @property
    def is_connected(self) -> bool: ...

    async def connect(self) -> None:
        """Connect and discover services.  Raises ``DeviceError`` (retryable) on failure."""

    async def disconnect(self) -> None:
        """Disconnect; never raises for an already lost link."""

    def has(self, uuid: str) -> bool:
        """True when the connected device offers this characteristic (or service)."""

    async def read(self, uuid: str) -> bytes: ...

    async def write(self, uuid: str, data: bytes, *, response: bool = True) -> None: ...

    async def start_notify(self, uuid: str, callback: NotifyCallback) -> None:
        """Enable notifications or indications, whichever the characteristic offers."""

    async def stop_notify(self, uuid: str) -> None: ...

    def set_disconnected_callback(self, callback: Callable[[], None] | None) -> None:
        """``callback()`` runs on the event loop when the link goes down (either side)."""
