"""`edge-gateway demo`: the whole gateway against simulated devices, no radio needed.

It starts a private dbus-daemon, the virtual BlueZ of hardware-sim with the devices of a
scenario (in its own process, so the gateway's CPU and memory are its own), the scenario's
serial sensor on a pty, a local mosquitto on a free loopback port when one is installed (or the
broker given with ``--broker``), creates the demo patients and devices in the database, and runs
the real daemon against all of it while printing a live status.  Run again on the same database,
it continues: nothing is wiped, and the devices' stored records are backfilled only where new.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from edge_gateway.config import Config, DaemonSection, GatewaySection, with_broker
from edge_gateway.errors import GatewayError
from edge_gateway.runtime.daemon import Component, Daemon
from edge_gateway.runtime.status import gateway_status
from edge_gateway.store import Store, outbox
from edge_gateway.store import alerts as alert_rows
from edge_gateway.store import devices as device_rows
from edge_gateway.store import readings as reading_rows
from edge_gateway.store import summaries as summary_rows
from edge_gateway.sync import nightscout

PROFILE_OF_KIND = {
    "heart_rate": "heart_rate", "cgm": "cgm", "glucose_meter": "glucose",
    "blood_pressure": "blood_pressure", "pulse_oximeter": "pulse_oximeter",
    "thermometer": "thermometer", "scale": "weight", "spot_check_oximeter": "pulse_oximeter",
}
PATIENT = "demo"
PARTNER = "demo-2"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def register(store: Store, scenario: Any, serial_ports: dict[str, str]) -> list[str]:
    """Demo patients and devices (idempotent: a second run changes nothing)."""
    store.add_patient(PATIENT, "Demo patient")
    store.add_patient(PARTNER, "Demo partner (BP cuff user 2)")
    ids = []
    for table in scenario.peripherals:
        profile = PROFILE_OF_KIND[str(table["kind"])]
        dev_id = _slug(str(table.get("name", profile)))
        store.upsert_device(dev_id, profile=profile, name=str(table.get("name", dev_id)),
                            address=str(table["address"]).upper(), patient_id=PATIENT,
                            bonded=True)
        if profile == "blood_pressure":
            with store.transaction():
                for user, patient in ((1, PATIENT), (2, PARTNER)):
                    device_rows.add_user(store, dev_id, user, patient)
        ids.append(dev_id)
    for name, port in serial_ports.items():
        dev_id = _slug(name)
        store.upsert_device(dev_id, profile="pulse_oximeter", name=f"{name} (serial)",
                            address=port, transport="serial", patient_id=PATIENT)
        store.update_device_state(dev_id, details={"protocol": "masimo-rad8"})
        ids.append(dev_id)
    store.set_meta("settings_version", str(time.time_ns()))
    return ids


def _latest(store: Store, device_id: str) -> str:
    row = reading_rows.latest_value(store, device_id)
    if row is None:
        return "-"
    kind, value, unit = row
    return f"{kind}={value:g} {unit}"


def render(store: Store, started: float, duration: float | None, broker: str | None) -> str:
    st = gateway_status(store)
    now = time.monotonic() - started
    lines = [f"edge-gateway demo — {now:5.0f} s"
             + (f" of {duration:.0f} s" if duration else "")
             + f" — database {store.path} — broker {broker or 'none (store-and-forward)'}", ""]
    lines.append(f"{'device':<18} {'profile':<15} {'link':<6} {'24h':>6} {'total':>7}  latest")
    for d in st["devices"]:
        lines.append(f"{d['id']:<18} {d['profile']:<15} {'up' if d['connected'] else 'down':<6}"
                     f" {d['readings_24h']:>6} {d['readings_total']:>7}  {_latest(store, d['id'])}")
    summaries = summary_rows.counts_by_kind(store)
    lines.append("")
    lines.append("summaries  " + (", ".join(f"{k} {n}" for k, n in summaries) or "none yet"))
    alerts = alert_rows.newest_open(store, 5)
    lines.append(f"alerts     {st['alerts_open']} open")
    lines.extend(f"  [{sev}] {msg}" for sev, msg in alerts)
    sent = outbox.sent_rows(store)
    lines.append(f"outbox     {st['outbox']['pending']} pending, {sent} acknowledged by the"
                 f" broker; rejected frames "
                 f"{sum(d['rejected_frames'] for d in st['devices'])}")
    ns = nightscout.status(store)
    if ns["sites"]:
        lines.append(f"nightscout {ns['pending']} pending, {ns['sent']} uploaded"
                     + (f"; last error {ns['last_error']}" if ns["pending"] and ns["last_error"]
                        else ""))
    return "\n".join(lines)


async def _status_task(d: Daemon, out: TextIO, started: float, duration: float | None,
                       broker: str | None) -> None:
    tty = out.isatty()
    interval = 2.0 if tty else 10.0
    while not await d.sleep(interval):
        assert d.store is not None
        text = render(d.store, started, duration, broker)
        if tty:
            out.write("\x1b[H\x1b[2J" + text + "\n\n(Ctrl-C to stop)\n")
        else:
            out.write(text + "\n\n")
        out.flush()


def run_demo(db: Path, *, duration: float | None, scenario_name: str = "demo",
             broker_url: str | None = None, out: TextIO = sys.stdout,
             base: Config | None = None) -> dict[str, Any]:
    """Run the demo; returns the final status.  Raises GatewayError on a setup problem."""
    from hardware_sim.broker import start_broker
    from hardware_sim.dbus_daemon import start_private_bus
    from hardware_sim.procs import die_with_parent
    from hardware_sim.scenario import build_scenario, load_scenario

    spec = load_scenario(scenario_name)
    work = Path(tempfile.mkdtemp(prefix="edge-gateway-demo-"))
    cfg = base or Config()
    cfg = dataclasses.replace(
        cfg, gateway=GatewaySection(id="demo-hub", site="demo", timezone=cfg.gateway.timezone),
        storage=dataclasses.replace(cfg.storage, db_path=str(db)),
        # One-minute HRV/rhythm windows so that a short demo shows summaries and the AF flag.
        daemon=DaemonSection(settings_poll_s=1.0, dsp_interval_s=10.0, short_window_min=1),
        # Six devices fit an adapter's seven slots, so no demo device waits for its turn
        # (the clinic scenario exercises the rotation of store-only devices).
        ble=dataclasses.replace(cfg.ble, max_connections=7))
    cleanups: list[Any] = []
    try:
        try:
            bus = start_private_bus(work / "dbus")
        except FileNotFoundError as err:
            raise GatewayError(str(err), hint="apt-get install dbus-daemon") from err
        cleanups.append(bus.stop)
        sim = subprocess.Popen(
            [sys.executable, "-m", "hardware_sim.run_bluez", "--bus", bus.address,
             "--scenario", scenario_name, "--bonded"],
            stdout=subprocess.PIPE, stderr=(work / "sim.log").open("wb"),
            stdin=subprocess.DEVNULL, start_new_session=True,
            # A demo killed outright (SIGKILL) takes the simulator with it.
            preexec_fn=die_with_parent())
        cleanups.append(lambda: _stop_process(sim))
        assert sim.stdout is not None
        line = sim.stdout.readline().decode().strip()
        if not line.startswith("READY"):
            raise GatewayError(f"the simulator did not start: {(work / 'sim.log').read_text()}")
        if broker_url is None:
            broker = start_broker(work / "mosquitto")
            if broker is not None:
                cleanups.append(broker.stop)
                broker_url = broker.url
        if broker_url:
            cfg = with_broker(cfg, broker_url)
        simulation = build_scenario(spec, start=datetime.now(UTC), runtime_dir=work)
        serial_ports = {s.name: s.open() for s in simulation.serial}
        for s in simulation.serial:
            cleanups.append(s.close)
        store = Store.open(db, cap_bytes=cfg.storage.max_bytes)
        register(store, spec, serial_ports)
        store.close()
        # bleak finds BlueZ through this variable: the gateway talks to the virtual one.
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        started = time.monotonic()
        out.write(f"edge-gateway demo: scenario {spec.name!r} ({spec.description}); "
                  f"database {db}; broker {broker_url or 'none'}\n")
        out.flush()

        async def timer(d: Daemon) -> None:
            if duration is not None and not await d.sleep(duration):
                d.stop()

        async def sensors(d: Daemon) -> None:
            tasks = [asyncio.create_task(s.run(), name=f"sim:{s.name}")
                     for s in simulation.serial]
            try:
                await d.stop_event.wait()
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        daemon = Daemon(cfg, components=[
            Component("demo-status", lambda d: _status_task(d, out, started, duration,
                                                            broker_url)),
            Component("demo-timer", timer),
            Component("demo-serial-sensor", sensors),
        ])
        if broker_url or cfg.nightscout:  # the final drain covers every destination
            daemon.drain_on_stop_s = 30.0
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(daemon.run())
        store = Store.open(db)
        final = render(store, started, duration, broker_url)
        result = gateway_status(store)
        store.close()
        out.write("\n" + final + "\n")
        return result
    finally:
        for fn in reversed(cleanups):
            with contextlib.suppress(Exception):
                fn()


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
