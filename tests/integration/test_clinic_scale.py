"""Clinic scale: 6 streaming and 44 store-only devices on 7 connection slots, through the
virtual BlueZ, real bleak and the real fleet into SQLite.

The clinic scenario (hardware-sim ``clinic``, ``[ble] max_connections = 7``) with time scaled
down: every store-only device takes a new measurement every ``RECORD_EVERY_S`` and the fleet
revisits it ``REVISIT_S`` after each visit.  The fleet's policy (``drivers/slots.py``,
docs/ble.md "Many devices, few slots") promises that a record reaches the database within
``visit_bound_s(44, 1, VISIT_S, REVISIT_S)`` of being made, with one slot rotating; the test
checks that bound on every record made during the run, and that the streams were never
dropped and never more than 7 links were up at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ble_sim import Rig
from hardware_sim.bluez import VirtualBlueZ
from hardware_sim.peripherals.clinic import made_between
from hardware_sim.scenario import build_scenario, load_scenario

from edge_gateway.config import BleSection
from edge_gateway.drivers import ble
from edge_gateway.drivers.slots import visit_bound_s
from edge_gateway.runtime.demo import PROFILE_OF_KIND

STREAM_KINDS = {"heart_rate", "cgm", "pulse_oximeter"}
RECORD_EVERY_S = 10
REVISIT_S = 5.0
#: The visit length the bound allows for (connect, reads, clock, transfer, 0.3 s of quiet,
#: disconnect): about 0.3 s on the virtual BlueZ, so a loaded machine has room.
VISIT_S = 1.0
RUN_S = 70.0


def iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def received(got: dict[datetime, datetime], made: datetime) -> datetime | None:
    """When the record made at ``made`` reached the gateway: its UTC time is derived from
    the device's clock with the measured offset, good to about a second."""
    near = [k for k in got if abs((k - made).total_seconds()) < 1.5]
    return got[min(near, key=lambda k: abs(k - made))] if near else None


def test_clinic_scale_every_store_only_device_within_the_bound(
    virtual_bluez: Callable[..., VirtualBlueZ], tmp_path: Path,
) -> None:
    spec = load_scenario("clinic")
    assert spec.config["ble"]["max_connections"] == 7
    spec = dataclasses.replace(spec, peripherals=tuple(
        {**t, "record_every": f"{RECORD_EVERY_S}s"} if "record_every" in t else t
        for t in spec.peripherals))
    start = datetime.now(UTC)
    sim = build_scenario(spec, start=start)
    kinds = {p.address: str(t["kind"]) for p, t in zip(sim.peripherals, spec.peripherals,
                                                       strict=True)}
    streams = {a for a, k in kinds.items() if k in STREAM_KINDS}
    store_only = set(kinds) - streams
    assert (len(streams), len(store_only)) == (6, 44)
    rig = Rig(tmp_path / "clinic.db", max_delay_s=0.2, max_frames=500)
    for address, kind in kinds.items():
        rig.add(address, PROFILE_OF_KIND[kind])
    slots = int(spec.config["ble"]["max_connections"])
    bound = visit_bound_s(len(store_only), slots - len(streams), VISIT_S, REVISIT_S)
    samples: list[int] = []
    stream_drops: dict[str, int] = {}
    visits: dict[str, int] = {}

    async def main() -> float:
        async with virtual_bluez(sim.peripherals, bonded=True) as bluez:
            await ble.scan(0.5)
            section = BleSection(**spec.config["ble"], backoff_initial_s=0.2,
                                 backoff_max_s=2.0, revisit_s=REVISIT_S)
            fleet = rig.fleet(section, clock_trusted=lambda: True, idle_disconnect_s=0.3)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(fleet.run(rig.sleep, poll_s=0.2), name="ble")
                t_end = time.monotonic() + RUN_S
                while time.monotonic() < t_end:
                    await asyncio.sleep(0.1)
                    samples.append(bluez.connected_now)
                rig.stopping.set()
            for address in streams:
                s = fleet.sessions[address].stats
                stream_drops[address] = s.link_losses + max(0, s.connects - 1)
            assert bluez.connected_now == 0
            visits.update(fleet.slots.stats.visits_of)
            return float(bluez.max_connected)

    max_connected = asyncio.run(main())
    end = datetime.now(UTC)
    rig.writer.flush()
    rows = rig.store.conn.execute(
        # "rx:" keys are values keyed by their receive time (battery level): not records.
        "SELECT device_id, record_key, min(time), min(received_at) FROM readings"
        " WHERE record_key NOT LIKE 'rx:%' GROUP BY device_id, record_key").fetchall()
    by_device: dict[str, dict[datetime, datetime]] = {}
    for device_id, _key, made, at in rows:
        by_device.setdefault(device_id, {})[iso(made)] = iso(at)

    assert max_connected <= slots
    assert samples and max(samples) <= slots
    # Streams held their links the whole run: one connection each, never lost.
    assert stream_drops == dict.fromkeys(streams, 0)
    delivered = {d for (d,) in rig.store.conn.execute("SELECT DISTINCT device_id FROM readings")}
    assert streams <= delivered
    late: list[str] = []
    for p in sim.peripherals:
        if p.address not in store_only:
            continue
        got = by_device.get(p.address, {})
        # The days of history: all of it, from the first visit.
        history = made_between(p, start - timedelta(days=3), start)
        missing = [t for t in history if received(got, t) is None]
        assert history and not missing, f"{p.name}: {len(missing)} of {len(history)} missing"
        # Records made during the run: each within the bound, unless made too late to tell.
        made = made_between(p, start, end - timedelta(seconds=bound))
        assert made, p.name
        for t in made:
            at = received(got, t)
            if at is None:
                late.append(f"{p.name}: record of {t:%H:%M:%S} missing")
            elif (at - t).total_seconds() > bound:
                late.append(f"{p.name}: record of {t:%H:%M:%S} "
                            f"{(at - t).total_seconds():.0f} s late")
    assert not late, f"bound {bound:.0f} s: " + "; ".join(late[:10])
    # Oldest visit first: the store-only devices took turns, none was visited twice while
    # another waited.
    counts = [visits.get(a, 0) for a in store_only]
    assert min(counts) >= 2 and max(counts) - min(counts) <= 1, sorted(counts)
    rig.store.close()
