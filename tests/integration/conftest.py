"""Integration fixtures: a private dbus-daemon and the virtual BlueZ on it.

Nothing here touches the machine's system bus: ``private_dbus`` starts a dbus-daemon with its
own config on a socket in the test's tmp dir, points ``DBUS_SYSTEM_BUS_ADDRESS`` (what bleak
reads) at it, and stops it by PID afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from hardware_sim.bluez import VirtualBlueZ
from hardware_sim.dbus_daemon import ENV_VAR, start_private_bus
from hardware_sim.peripheral import Peripheral


@pytest.fixture
def private_dbus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The address of a private dbus-daemon, also set as DBUS_SYSTEM_BUS_ADDRESS."""
    bus = start_private_bus(tmp_path / "dbus")
    monkeypatch.setenv(ENV_VAR, bus.address)
    try:
        yield bus.address
    finally:
        bus.stop()


@pytest.fixture
def virtual_bluez(private_dbus: str) -> Callable[..., VirtualBlueZ]:
    """``async with virtual_bluez([peripheral, ...]) as bluez:`` inside the test's event loop."""

    def make(peripherals: Iterable[Peripheral] = (), **kwargs: object) -> VirtualBlueZ:
        return VirtualBlueZ(private_dbus, peripherals, **kwargs)  # type: ignore[arg-type]

    return make
