"""Run the virtual BlueZ as its own process: ``python -m hardware_sim.run_bluez``.

A benchmark or a demo keeps the simulator out of the gateway's process (so the gateway's CPU
time and memory are its own).  The process prints ``READY <bus address>`` on stdout once
``org.bluez`` is on the bus, then serves until SIGTERM or SIGINT and stops cleanly.

Devices come from ``--scenario NAME`` (a hardware-sim scenario file; its serial sensors are not
started here), ``--peripherals module:function`` (a function returning a list of
:class:`~hardware_sim.peripheral.Peripheral`) and/or ``--straps N`` simple heart-rate straps that
notify every ``--period`` seconds (for load tests).  ``--bonded`` makes BlueZ know them as
already paired, as on a gateway that was set up before.

Example::

    python -m hardware_sim.run_bluez --scenario demo --bonded
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
from collections.abc import Callable, Sequence

from .bluez import VirtualBlueZ
from .dbus_daemon import start_private_bus
from .peripheral import Flag, Link, Peripheral, char, service


class LoadStrap(Peripheral):
    """A heart-rate strap that notifies a fixed, valid frame every ``period`` seconds."""

    def __init__(self, address: str, period: float) -> None:
        super().__init__(address, f"load strap {address[-2:]}", services=[
            service(0x180D, char(0x2A37, Flag.NOTIFY),
                    char(0x2A38, Flag.READ, on_read=lambda: b"\x01")),
        ])
        self.period = period

    async def run(self, link: Link) -> None:
        # flags 0x16: uint8 HR, contact detected, RR present; HR 72; RR 833/1024 s.
        frame = bytes((0x16, 72, 0x41, 0x03))
        uuid = "2a37"
        while True:
            await asyncio.sleep(self.period)
            link.notify(uuid, frame)


def load(spec: str) -> list[Peripheral]:
    module, _, name = spec.partition(":")
    factory: Callable[[], Sequence[Peripheral]] = getattr(importlib.import_module(module), name)
    return list(factory())


def from_scenario(name: str) -> list[Peripheral]:
    from datetime import UTC, datetime

    from .scenario import build_scenario, load_scenario

    return list(build_scenario(load_scenario(name), start=datetime.now(UTC)).peripherals)


async def serve(address: str, peripherals: list[Peripheral], bonded: bool = False) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with VirtualBlueZ(address, peripherals, bonded=bonded):
        print(f"READY {address}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hardware_sim.run_bluez",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--bus", help="D-Bus address (default: start a private dbus-daemon)")
    parser.add_argument("--scenario", help="a hardware-sim scenario name or file")
    parser.add_argument("--bonded", action="store_true", help="devices are already paired")
    parser.add_argument("--peripherals", action="append", default=[],
                        help="module:function returning a list of peripherals (repeatable)")
    parser.add_argument("--straps", type=int, default=0, help="load-test straps to add")
    parser.add_argument("--period", type=float, default=0.05, help="strap notification period")
    args = parser.parse_args(argv)
    peripherals = from_scenario(args.scenario) if args.scenario else []
    peripherals += [p for spec in args.peripherals for p in load(spec)]
    peripherals += [LoadStrap(f"B0:00:00:00:00:{i:02X}", args.period) for i in range(args.straps)]
    bus = None if args.bus else start_private_bus()
    address: str = args.bus if bus is None else bus.address
    try:
        asyncio.run(serve(address, peripherals, args.bonded))
    finally:
        if bus is not None:
            bus.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
