"""``make fleet-demo``: three hubs at three sites -> a clinic mosquitto bridged to a cloud
mosquitto -> two ``edge-gateway cloud ingest`` instances -> PostgreSQL; ends with ``cloud status``.

Everything runs on this machine, on loopback, as the user who starts it:

- two private mosquittos on free ports (config and store under ``var/fleet-demo/``): the
  clinic's, with a persistent MQTT 5 bridge to the cloud's (docs/fleet.md);
- two ingest consumers in one shared-subscription group on the cloud broker;
- three simulated hubs, each a process of its own with its own SQLite database, gateway id and
  site.  A hub is the real hub code from the outbox on: summaries and alerts are stored and
  queued with ``edge_gateway.store`` (a two-day backlog first, as after an outage, then a
  live trickle), and the real sync loop (``edge_gateway.sync.service``) publishes them with
  QoS 1 to the clinic broker.  What the simulated hub skips is Bluetooth and the DSP (the
  ``edge-gateway demo`` needs a D-Bus, a virtual BlueZ and SciPy per hub: about 125 MB and a
  core each);
- a PostgreSQL database (``postgresql:///edge_gateway_fleet_demo`` unless ``--dsn``), created
  when missing, on the local server that ``scripts/system-deps.sh`` installs and gives a role.

At the end the hubs drain their outboxes, the demo waits until every queued item is in
PostgreSQL, stops everything it started (by PID) and prints ``edge-gateway cloud status``.

Run: ``.venv/bin/python scripts/fleet_demo.py [--seconds 60] [--dsn DSN] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")
#: (site, gateway, sync format, compression, batch size): the three hubs differ in what they
#: send, so the demo shows the ingest reading every shape.
HUBS = (("riverside", "hub-riverside", "json", "none", 10),
        ("hillview", "hub-hillview", "json", "gzip", 50),
        ("lakeside", "hub-lakeside", "fhir", "zstd", 20))
PREFIX = "edge-gateway"


class DemoError(Exception):
    """One line for the user: what went wrong and what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> Any:
    from hardware_sim.procs import die_with_parent  # the project's helper (in the wheel)

    return die_with_parent()


# ---------------------------------------------------------------------- the simulated hub
async def hub_main(a: argparse.Namespace) -> int:
    """One hub: a two-day backlog, then a live trickle; the real sync loop publishes."""
    from edge_gateway.config import MqttSection, SyncSection
    from edge_gateway.reading import Alert, Summary
    from edge_gateway.store import alerts as alert_rows
    from edge_gateway.store import summaries
    from edge_gateway.store.db import Store
    from edge_gateway.store.outbox import Outbox, enqueue_alert, enqueue_summary
    from edge_gateway.sync.service import SyncService

    rng = random.Random(a.gateway)
    store = Store.open(a.db)
    Outbox(store, a.gateway)  # message ids are made with this gateway id
    patients = [f"{a.site}-p{i}" for i in (1, 2)]
    for p in patients:
        store.add_patient(p, f"Patient {p}")
    queued = 0
    wake = asyncio.Event()

    def summary(patient: str, kind: str, start: datetime, length: timedelta,
                metrics: dict[str, float]) -> None:
        nonlocal queued
        s = Summary(patient, kind, start, start + length, metrics, round(rng.uniform(0.8, 1), 3),
                    f"{kind}/1", start + length, f"{patient}-dev")
        with store.transaction():
            sid = summaries.add(store, s)
            if sid is not None:
                enqueue_summary(store, sid, s)
                queued += 1

    def hrv(patient: str, start: datetime, length: timedelta) -> None:
        hr = rng.gauss(72, 8)
        summary(patient, "hrv", start, length, {"mean_hr_bpm": round(hr, 1),
                                                "sdnn_ms": round(rng.gauss(45, 10), 1),
                                                "rmssd_ms": round(rng.gauss(35, 8), 1)})

    def alert(patient: str, at: datetime, state: str, alert_id: int | None,
              raised_at: datetime) -> int:
        nonlocal queued
        a_ = Alert(patient, "spo2_low", "urgent", state, "SpO2 below 90 %", raised_at,
                   f"{patient}:spo2_low", 88.0, "%", f"{patient}-dev")
        with store.transaction():
            if alert_id is None:
                alert_id = alert_rows.insert(store, {
                    "patient_id": patient, "device_id": a_.device_id, "rule": a_.rule,
                    "key": a_.key, "severity": a_.severity, "state": state,
                    "message": a_.message, "value": a_.value, "unit": a_.unit,
                    "raised_at": raised_at.isoformat(), "updated_at": at.isoformat()})
            else:
                alert_rows.update(store, alert_id, {"state": state,
                                                    "updated_at": at.isoformat()})
            enqueue_alert(store, alert_id, a_, at)
            queued += 1
        return alert_id

    now = datetime.now(UTC).replace(microsecond=0)
    for p in patients:  # the backlog a hub holds after two days without a link
        for h in range(a.backlog_hours, 0, -1):
            hrv(p, now - timedelta(hours=h), timedelta(hours=1))
        for d in range(max(a.backlog_hours // 24, 1), 0, -1):
            summary(p, "glucose_daily", now - timedelta(days=d), timedelta(days=1),
                    {"mean_mg_dl": round(rng.gauss(140, 15), 1),
                     "tir_70_180_pct": round(rng.uniform(55, 85), 1)})
    sync = SyncService(store, MqttSection(client_id=f"edge-gateway-{a.gateway}").at(a.broker),
                       SyncSection(batch_size=a.batch_size, format=a.format,
                                   compression=a.compression, interval_s=1.0,
                                   backoff_initial_s=0.5, backoff_max_s=5.0),
                       a.gateway, a.site)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(sync.run(stop, wake, drain_timeout_s=15.0), name="sync")
    open_alert: tuple[int, str, int, datetime] | None = None  # id, patient, tick, raised at
    tick = 0
    deadline = loop.time() + a.seconds
    while not stop.is_set() and loop.time() < deadline:
        t = datetime.now(UTC)
        p = patients[tick % len(patients)]
        hrv(p, t - timedelta(minutes=1), timedelta(minutes=1))
        if open_alert is None and tick % 15 == 7:
            open_alert = (alert(p, t, "raised", None, t), p, tick, t)
        elif open_alert is not None and tick - open_alert[2] >= 5:
            alert(open_alert[1], t, "resolved", open_alert[0], open_alert[3])
            open_alert = None
        wake.set()
        tick += 1
        try:
            await asyncio.wait_for(stop.wait(), a.interval)
        except TimeoutError:
            pass
    stop.set()
    await task  # drains what is pending (at most drain_timeout_s)
    pending = sync.outbox.pending()
    store.close()
    print(json.dumps({"gateway": a.gateway, "site": a.site, "queued": queued,
                      "pending": pending}), flush=True)
    return 0 if pending == 0 else 3


# ---------------------------------------------------------------------- the fleet
@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


class Fleet:
    """Everything the demo starts, so that all of it is stopped by PID."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def spawn(self, name: str, cmd: Sequence[str], *, stdout: bool = False) -> Proc:
        log = self.workdir / f"{name}.log"
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            p = subprocess.Popen(list(cmd), stdout=subprocess.PIPE if stdout else fd,
                                 stderr=fd, stdin=subprocess.DEVNULL, cwd=ROOT,
                                 env={**os.environ, "EDGE_GATEWAY_CONFIG": "/dev/null"},
                                 preexec_fn=_die_with_parent())
        finally:
            os.close(fd)
        proc = Proc(name, p, log)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, timeout_s: float = 30.0) -> int:
        p = proc.popen
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(10)
        return int(p.returncode)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc, 15.0)
            if proc.popen.stdout is not None:
                proc.popen.stdout.close()


def mosquitto() -> str:
    for p in MOSQUITTO_PATHS:
        if Path(p).exists():
            return p
    raise DemoError("mosquitto is not installed: run `make fleet-demo` (it installs it),"
                    " or apt-get install mosquitto")


def broker_conf(workdir: Path, name: str, port: int, extra: Sequence[str] = ()) -> Path:
    d = workdir / name
    (d / "data").mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = [
        # As root mosquitto would switch to the 'mosquitto' user and lose access to var/.
        *(["user root"] if os.geteuid() == 0 else []),
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",  # loopback only; a real deployment uses TLS and accounts
        "persistence true",
        f"persistence_location {d / 'data'}/",
        "max_inflight_messages 1000",  # the consumers' Receive Maximum (docs/fleet.md)
        "max_queued_messages 1000000",  # a week's backlog fits; the default 1000 drops
        f"log_dest file {d / 'mosquitto.log'}",
        "log_type error", "log_type warning", "log_type notice",
        *extra,
    ]
    conf = d / "mosquitto.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return conf


def wait_port(port: int, proc: Proc, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise DemoError(f"{proc.name} exited at start; see {proc.log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise DemoError(f"{proc.name} did not listen on port {port}; see {proc.log}")


def wait_log(proc: Proc, needle: str, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise DemoError(f"{proc.name} exited: {tail(proc.log)} (log {proc.log})")
        if needle in proc.log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise DemoError(f"{what} within {timeout_s:.0f} s; see {proc.log}")


def tail(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[-1][:300] if lines else "(no output)"


def ensure_database(dsn: str) -> None:
    """Create the demo database when it is missing (needs a role with CREATEDB)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        name = str(conninfo_to_dict(dsn).get("dbname") or "")
        if not name:
            raise DemoError(f"--dsn {dsn!r} names no database")
        with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True,
                             connect_timeout=10) as admin:
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                 (name,)).fetchone():
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as err:
        raise DemoError(f"PostgreSQL: {str(err).strip().splitlines()[0]}; run"
                        " `sudo sh scripts/system-deps.sh` (installs and starts it and gives"
                        " your account a role)") from err


def items_by_site(dsn: str) -> dict[str, int]:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=5) as c:
            return {str(s): int(n) for s, n in c.execute(
                "SELECT site, count(*) FROM edge_gateway.items GROUP BY site").fetchall()}
    except psycopg.Error:
        return {}


def run_fleet(a: argparse.Namespace) -> int:
    workdir = Path(a.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    exe = mosquitto()
    ensure_database(a.dsn)
    py = sys.executable
    fleet = Fleet(workdir)
    hubs: list[Proc] = []
    before = sum(items_by_site(a.dsn).values())  # a run continues the database's history
    try:
        cloud_port, clinic_port = free_port(), free_port()
        cloud = fleet.spawn("cloud-broker", [exe, "-c", str(broker_conf(
            workdir, "cloud-broker", cloud_port))])
        wait_port(cloud_port, cloud)
        say(a, f"cloud mosquitto on 127.0.0.1:{cloud_port}")
        ingests = [fleet.spawn(f"ingest-{i}", [
            py, "-m", "edge_gateway", "cloud", "ingest", "--broker",
            f"mqtt://127.0.0.1:{cloud_port}", "--dsn", a.dsn, "--group", "fleet-demo",
            "--client-id", f"fleet-demo-ingest-{i}"]) for i in (1, 2)]
        for ing in ingests:  # the shared subscription must exist before anything is sent
            wait_log(ing, "mqtt.connected", f"{ing.name} did not connect")
        say(a, "two ingest consumers subscribed ($share/fleet-demo/edge-gateway/#)")
        clinic = fleet.spawn("clinic-broker", [exe, "-c", str(broker_conf(
            workdir, "clinic-broker", clinic_port, [
                "connection cloud", f"address 127.0.0.1:{cloud_port}",
                "bridge_protocol_version mqttv50", "cleansession false",
                "local_cleansession false", "restart_timeout 1 5", "keepalive_interval 10",
                f"topic {PREFIX}/# out 1"]))])
        wait_port(clinic_port, clinic)
        say(a, f"clinic mosquitto on 127.0.0.1:{clinic_port}, bridged to the cloud one")
        time.sleep(1.0)  # the bridge's connection and subscription
        for site, gw, fmt, comp, batch in HUBS:
            hubs.append(fleet.spawn(gw, [
                py, str(Path(__file__).resolve()), "hub", "--db", str(workdir / f"{gw}.db"),
                "--gateway", gw, "--site", site, "--broker", f"mqtt://127.0.0.1:{clinic_port}",
                "--seconds", str(a.seconds), "--format", fmt, "--compression", comp,
                "--batch-size", str(batch)], stdout=True))
        say(a, f"three hubs ({', '.join(h[0] for h in HUBS)}) publishing for {a.seconds:g} s")
        start = time.monotonic()
        next_report = start + a.report_every
        while any(h.popen.poll() is None for h in hubs):
            time.sleep(0.2)
            if time.monotonic() >= next_report:
                by = items_by_site(a.dsn)
                say(a, f"{time.monotonic() - start:5.0f} s  items in PostgreSQL: "
                    + ", ".join(f"{s} {n}" for s, n in sorted(by.items())))
                next_report += a.report_every
            if time.monotonic() - start > a.seconds + 60:
                raise DemoError("the hubs did not finish draining within 60 s;"
                                f" see {workdir}/hub-*.log")
        reports = []
        for h in hubs:
            out = h.popen.stdout.read().decode() if h.popen.stdout else ""
            line = out.strip().splitlines()[-1] if out.strip() else ""
            if h.popen.returncode != 0 or not line:
                raise DemoError(f"{h.name} ended with status {h.popen.returncode}:"
                                f" {tail(h.log)} (log {h.log})")
            reports.append(json.loads(line))
        queued = sum(int(r["queued"]) for r in reports)
        deadline = time.monotonic() + 30
        while (sum(items_by_site(a.dsn).values()) < before + queued
               and time.monotonic() < deadline):
            time.sleep(0.2)
        for ing in ingests:  # SIGTERM: commit and acknowledge what is held, exit 0
            if fleet.stop(ing) != 0:
                raise DemoError(f"{ing.name} did not stop cleanly: {tail(ing.log)}")
        by = items_by_site(a.dsn)
        if sum(by.values()) < before + queued:
            raise DemoError(f"only {sum(by.values()) - before} of {queued} items arrived;"
                            f" see {workdir}/ingest-*.log")
        say(a, f"queued by the hubs this run: {queued}; new in PostgreSQL:"
            f" {sum(by.values()) - before}; in PostgreSQL by site: "
            + ", ".join(f"{s} {n}" for s, n in sorted(by.items())))
    finally:
        fleet.stop_all()
    cmd = [py, "-m", "edge_gateway", "cloud", "status", "--dsn", a.dsn]
    return subprocess.run([*cmd, "--json"] if a.json else cmd, cwd=ROOT,
                          env={**os.environ, "EDGE_GATEWAY_CONFIG": "/dev/null"}).returncode


def say(a: argparse.Namespace, text: str) -> None:
    if not a.json:
        print(f"fleet-demo: {text}", flush=True)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="scripts/fleet_demo.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    ap.add_argument("--seconds", type=float,
                    default=float(os.environ.get("FLEET_DEMO_SECONDS", "60")))
    ap.add_argument("--dsn", default=os.environ.get("FLEET_DEMO_DSN",
                                                    "postgresql:///edge_gateway_fleet_demo"))
    ap.add_argument("--workdir", default=str(ROOT / "var" / "fleet-demo"))
    ap.add_argument("--report-every", type=float, default=10.0)
    ap.add_argument("--json", action="store_true", help="print only cloud status --json")
    hub = sub.add_parser("hub", help="one simulated hub (started by the demo)")
    hub.add_argument("--db", required=True)
    hub.add_argument("--gateway", required=True)
    hub.add_argument("--site", required=True)
    hub.add_argument("--broker", required=True)
    hub.add_argument("--seconds", type=float, default=60.0)
    hub.add_argument("--interval", type=float, default=0.5)
    hub.add_argument("--backlog-hours", type=int, default=48)
    hub.add_argument("--format", default="json")
    hub.add_argument("--compression", default="none")
    hub.add_argument("--batch-size", type=int, default=50)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    a = parse(argv)
    try:
        if a.cmd == "hub":
            import logging

            logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
            return asyncio.run(hub_main(a))
        return run_fleet(a)
    except DemoError as err:
        print(f"fleet-demo: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fleet-demo: interrupted; everything it started was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
