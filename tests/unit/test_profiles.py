"""A profile is one file: the registry builds every table from the ``PROFILE`` declarations.

The first test writes a made-up vendor profile module into a temporary directory, adds that
directory to the profiles package and shows that the one file is enough: it is registered,
subscribed by a real :class:`DeviceSession`, decoded by ``edge-gateway decode``, stored through
the frame pipeline into SQLite and exported to FHIR with its LOINC code.  The others keep the
declarations honest: every measurement is subscribed or read, every kind a profile emits (in
its golden vectors) is in the kinds table, and contradictions fail when the tables are built.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from textwrap import dedent

import pytest
from click.testing import CliRunner

from edge_gateway import units
from edge_gateway.cli import main
from edge_gateway.cli.decode import parse_hex
from edge_gateway.drivers import profiles, registry
from edge_gateway.drivers.pipeline import FramePipeline
from edge_gateway.drivers.profiles.base import Profile, Racp, short_uuid
from edge_gateway.drivers.session import DeviceSession
from edge_gateway.drivers.transport import NotifyCallback
from edge_gateway.errors import DeviceError, MalformedPayload
from edge_gateway.store import BatchWriter, Store
from edge_gateway.units import Kind

SERVICE = "7E570000-0000-4000-8000-00000000CAFE"
MEASUREMENT = "7e570001-0000-4000-8000-00000000cafe"
LOINC = "99001-7"  # made up: only has to travel from the profile file to the FHIR export

VENDOR_MODULE = dedent(f'''
    """Made-up skin hydration sensor: a vendor service with one measurement."""

    from __future__ import annotations

    from dataclasses import dataclass
    from typing import Any, ClassVar, Self

    from edge_gateway.drivers.profiles.base import (
        Profile, Reader, ReadingContext, measurement, p16, rx_key,
    )
    from edge_gateway.reading import Reading
    from edge_gateway.units import Kind

    MEASUREMENT = "{MEASUREMENT}"


    @dataclass(frozen=True, slots=True)
    class Hydration:
        characteristic: ClassVar[str] = MEASUREMENT
        name: ClassVar[str] = "Skin Hydration"

        permille: int

        @classmethod
        def from_bytes(cls, raw: bytes) -> Self:
            r = Reader(cls.characteristic, raw)
            v = r.u16("hydration")
            r.end()
            return cls(v)

        def to_bytes(self) -> bytes:
            return p16(self.permille)

        def to_json(self) -> dict[str, Any]:
            return {{"hydration_pct": self.permille / 10}}


    @measurement
    def to_readings(m: Hydration, ctx: ReadingContext) -> list[Reading]:
        return [ctx.reading("skin_hydration", m.permille / 10, "%",
                            record_key=rx_key(ctx.received_at))]


    PROFILE = Profile(
        name="skin_hydration", service="{SERVICE}", codecs=(Hydration,),
        measurements={{MEASUREMENT: to_readings}}, subscribe=(MEASUREMENT,),
        kinds=(Kind("skin_hydration", "{LOINC}", "Skin hydration", "vital-signs", ("%",)),),
    )
''')


@pytest.fixture
def vendor_profile(tmp_path: Path) -> Iterator[str]:
    """The throwaway profile module on the package path; the registry rebuilt around it."""
    folder = tmp_path / "more_profiles"
    folder.mkdir()
    (folder / "skin_hydration.py").write_text(VENDOR_MODULE)
    profiles.__path__.append(str(folder))
    try:
        registry.rebuild()
        yield "skin_hydration"
    finally:
        profiles.__path__.remove(str(folder))
        sys.modules.pop(f"{profiles.__name__}.skin_hydration", None)
        registry.rebuild()


class MemoryTransport:
    """A :class:`~edge_gateway.drivers.transport.Transport` over a dict of characteristics."""

    def __init__(self, address: str, chars: dict[str, bytes]) -> None:
        # Plain attributes: the protocol's read-only properties need no code in a fake.
        self.address = address
        self.chars = chars
        self.is_connected = False
        self.notify: dict[str, NotifyCallback] = {}
        self.subscribed = asyncio.Event()
        self.on_lost: Callable[[], None] | None = None

    async def connect(self) -> None:
        self.is_connected = True

    async def disconnect(self) -> None:
        self.is_connected = False

    def has(self, uuid: str) -> bool:
        return self.is_connected and uuid in self.chars

    async def read(self, uuid: str) -> bytes:
        if uuid not in self.chars:
            raise DeviceError(self.address, f"no characteristic {uuid}")
        return self.chars[uuid]

    async def write(self, uuid: str, data: bytes, *, response: bool = True) -> None:
        self.chars[uuid] = data

    async def start_notify(self, uuid: str, callback: NotifyCallback) -> None:
        self.notify[uuid] = callback
        self.subscribed.set()

    async def stop_notify(self, uuid: str) -> None:
        self.notify.pop(uuid, None)

    def set_disconnected_callback(self, callback: Callable[[], None] | None) -> None:
        self.on_lost = callback


def test_one_file_is_a_whole_profile(vendor_profile: str, tmp_path: Path) -> None:
    # Registered: its service, its codec (any UUID spelling), its kind.
    assert registry.profile_for(SERVICE) == vendor_profile
    assert short_uuid(SERVICE) in registry.SERVICES
    assert registry.codec_for(MEASUREMENT.upper()) is registry.CODECS[MEASUREMENT]
    assert registry.kinds()["skin_hydration"].loinc == LOINC
    assert vendor_profile in registry.current().health_profiles
    assert short_uuid(SERVICE) in registry.current().scan_services

    # Decoded by the CLI.
    result = CliRunner().invoke(main, ["decode", MEASUREMENT, "d2 02", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"hydration_pct": 72.2}
    human = CliRunner().invoke(main, ["decode", MEASUREMENT.upper(), "d202"])
    assert human.output.splitlines()[0] == f"Skin Hydration ({MEASUREMENT}), 2 bytes"

    # Subscribed by a real session, its frames stored through the pipeline into SQLite.
    store = Store.open(tmp_path / "gw.db")
    store.add_patient("alice")
    store.upsert_device("D0:00:00:00:00:07", profile=vendor_profile, patient_id="alice")
    writer = BatchWriter(store)
    pipeline = FramePipeline(store, writer)
    at = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

    async def run() -> None:
        transport = MemoryTransport("D0:00:00:00:00:07", {MEASUREMENT: b""})
        session = DeviceSession("D0:00:00:00:00:07", transport, pipeline.on_frame,
                                asyncio.Semaphore(1), now=lambda: at)
        task = asyncio.create_task(session.run())
        await asyncio.wait_for(transport.subscribed.wait(), 5)
        assert list(transport.notify) == [MEASUREMENT]
        transport.notify[MEASUREMENT](bytes.fromhex("d202"))
        session.stop()
        await asyncio.wait_for(task, 5)

    asyncio.run(run())
    writer.flush()
    rows = store.conn.execute(
        "SELECT characteristic, kind, value, unit, patient_id FROM readings").fetchall()
    assert rows == [(MEASUREMENT, "skin_hydration", 72.2, "%", "alice")]

    # Exported to FHIR with the code the profile file declared.
    from edge_gateway.care.export import export_text, window

    day = at.date()
    text = export_text(store, patient="alice", fmt="fhir",
                       w=window(day.isoformat(), (day + timedelta(days=1)).isoformat(), "UTC"))
    codes = [c for e in json.loads(text).get("entry", [])
             for c in e["resource"].get("code", {}).get("coding", [])]
    assert {"system": units.LOINC_SYSTEM, "code": LOINC} in [
        {"system": c.get("system"), "code": c.get("code")} for c in codes]


def _unread(reg: registry.Registry) -> set[str]:
    """Measurement characteristics of BLE profiles that no session would ever receive."""
    ble = {registry.char_key(c) for p in reg.profiles if p.service is not None
           for c in p.measurements}
    return ble - set(reg.subscribe) - set(reg.read_once) - set(reg.read_first)


def test_every_measurement_is_subscribed_or_read() -> None:
    assert _unread(registry.current()) == set()
    # The check bites: a profile that forgets to subscribe its measurement is caught.
    hr = registry.current().codecs["2a37"]
    forgetful = Profile(name="forgetful", service="180d", codecs=(hr,),
                        measurements={"2a37": registry.READINGS["2a37"]})
    assert _unread(registry.build([forgetful])) == {"2a37"}


GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def test_every_kind_in_the_golden_vectors_is_in_the_kinds_table() -> None:
    kinds = registry.kinds()
    at = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    seen: dict[str, str] = {}
    for case in sorted(GOLDEN.glob("*/*/input.hex")):
        char = case.parent.parent.name
        if char not in registry.READINGS or (case.parent / "expected.err").exists():
            continue
        try:
            readings = registry.to_readings(
                char, parse_hex([case.read_text()]), device_id="d", received_at=at,
                device_clock_offset=timedelta(0), session_start=datetime(2026, 11, 20, 8, 0))
        except MalformedPayload:
            continue  # a CGM record whose E2E-CRC does not match: no readings
        for r in readings:
            seen.setdefault(r.kind, f"{char}/{case.parent.name}")
    assert seen, "no golden vector produced a reading"
    missing = {kind: where for kind, where in seen.items() if kind not in kinds}
    assert missing == {}, f"kinds without an entry in registry.kinds(): {missing}"


def test_contradictions_fail_when_the_tables_are_built() -> None:
    hr = registry.current().codecs["2a37"]
    core = next(iter(units.KINDS.values()))
    clash = Kind(core.name, "00000-0", "another meaning", "vital-signs", ("%",))
    with pytest.raises(ValueError, match="clashes with the core kind"):
        registry.build([Profile(name="x", service="7e57", codecs=(), kinds=(clash,))])
    with pytest.raises(ValueError, match="has no codec"):
        registry.build([Profile(name="x", service="7e57", codecs=(),
                                measurements={"2a37": registry.READINGS["2a37"]})])
    with pytest.raises(ValueError, match="not subscribed"):
        registry.build([Profile(name="x", service="7e57", codecs=(hr,),
                                racp=Racp(records="2a37", identity="sequence"))])
    # The same kind declared again, identical, is not a clash.
    registry.build([Profile(name="x", service="7e57", codecs=(), kinds=(core,))])


@pytest.mark.parametrize(("text", "short"), [
    ("2A37", "2a37"), ("0x2a37", "2a37"), ("00002A37-0000-1000-8000-00805F9B34FB", "2a37"),
    ("6E400001-B5A3-F393-E0A9-E50E24DCCA9E", "6e400001-b5a3-f393-e0a9-e50e24dcca9e"),
    ("6e400001b5a3f393e0a9e50e24dcca9e", "6e400001-b5a3-f393-e0a9-e50e24dcca9e"),
])
def test_short_uuid_has_one_contract(text: str, short: str) -> None:
    assert short_uuid(text) == short


@pytest.mark.parametrize("text", ["zz", "2a3", "12345", "6e400001-b5a3-f393-e0a9", ""])
def test_short_uuid_refuses_what_is_not_a_uuid(text: str) -> None:
    with pytest.raises(ValueError):
        short_uuid(text)
