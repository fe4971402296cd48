"""A Pi-sized run: the real daemon pinned to one core, with the six-device demo and the clinic.

    .venv/bin/python benchmarks/bench_pi.py          # ~5 minutes
    BENCH_PI_SECONDS=30 .venv/bin/python benchmarks/bench_pi.py   # a quick look
    BENCH_PI_SCENARIOS=clinic BENCH_PI_KEEP=1 ...    # one scenario; keep its database and logs
    BENCH_PI_SCENARIOS=home BENCH_PI_SECONDS=700 ... # the reference home's MB/day, full mode

For each scenario (hardware-sim ``demo``: six devices for one patient; ``clinic``: 6 streaming
and 44 store-only devices, ``[ble] max_connections = 7``) it starts a private dbus-daemon, the
virtual BlueZ with the scenario's devices in its own process (``run_bluez --bonded``), a local
mosquitto when one is installed, registers the devices, and runs ``edge-gateway run`` under
``taskset -c 0`` (the simulator and this process stay off that core when there is another)
with one-minute HRV/rhythm windows and the DSP every 10 s, so every analysis runs within the
measurement, as in the demo.  Read from /proc/<pid> of the daemon:

* CPU use in % of one core over the steady part (after the first ``WARMUP_S``, when the
  stored histories are in) — target <= 25 % for the six-device case;
* RSS at steady state (VmRSS at the end, with analysis having run; VmHWM is the peak) —
  target <= 80 MB in both cases;
* bytes written per reading over the steady part (``write_bytes`` of /proc/<pid>/io: what
  reached the block layer, WAL and checkpoints included) — target <= 1 KB;
* home only (``home``: the reference home — a strap at 1 Hz, a CGM, a cuff): bytes written
  per day, extrapolated from ``write_bytes`` over the steady part — target <= 100 MB/day.  The
  issue's measurement needs >= 10 minutes (``BENCH_PI_SECONDS=700``); a shorter run prints the
  same extrapolation and says it is short;
* clinic only: the time until every one of the 44 store-only devices had been visited and
  its history stored, and how late each record *made during the run* reached the database
  (the scenario takes one every 45 s on every store-only device) — target: within the bound
  the fleet states, 10 minutes (docs/ble.md, "Many devices, few slots").

Every figure is printed against its target in the same run, also when one is missed; then the
exit status is 1.  Machine load from other processes shows in the CPU figure: run it on an
otherwise idle machine for numbers to compare.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hardware_sim.broker import start_broker
from hardware_sim.dbus_daemon import start_private_bus
from hardware_sim.scenario import ScenarioSpec, load_scenario

from edge_gateway.runtime.demo import PROFILE_OF_KIND, register
from edge_gateway.store import Store

SECONDS = float(os.environ.get("BENCH_PI_SECONDS", "130"))
WARMUP_S = min(40.0, SECONDS / 3)
STREAM_KINDS = {"heart_rate", "cgm", "pulse_oximeter"}
RSS_TARGET_MB = 80.0
BYTES_PER_READING_TARGET = 1024.0
BYTES_PER_DAY_TARGET_MB = 100.0
#: The issue's minimum span for the per-day figure.
FULL_SPAN_S = 600.0
CPU_TARGET_PCT = 25.0
#: The bound docs/ble.md states: 44 store-only devices, one rotating slot, visits <= 10 s,
#: revisited 60 s after each visit -> visit_bound_s(44, 1, 10, 60) = 510 s, within 10 min.
CLINIC_BOUND_S = 600.0
BIN = Path(sys.executable).parent


@dataclass
class Sample:
    t: float
    cpu_s: float
    rss_mb: float
    hwm_mb: float
    write_bytes: int
    readings: int


@dataclass
class Run:
    scenario: str
    samples: list[Sample] = field(default_factory=list)
    #: store-only device -> seconds from the daemon's start to its first stored reading.
    first_visit: dict[str, float] = field(default_factory=dict)
    store_only: set[str] = field(default_factory=set)
    #: Seconds from a record being made (during the run) to it being stored, per record.
    lags: list[float] = field(default_factory=list)


def proc_fields(pid: int) -> tuple[float, float, float, int]:
    """(CPU seconds, VmRSS MB, VmHWM MB, write_bytes) of ``pid``."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    status = {line.split(":")[0]: line.split()[1:2]
              for line in Path(f"/proc/{pid}/status").read_text().splitlines()}
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return (cpu, int(status["VmRSS"][0]) / 1024, int(status["VmHWM"][0]) / 1024,
            int(io["write_bytes"]))


def other_cores() -> set[int]:
    cores = os.sched_getaffinity(0)
    return (cores - {0}) or cores


def register_clinic(db: Path, spec: ScenarioSpec) -> None:
    """Every clinic device for a patient of its own (a bed, a home-visit patient)."""
    store = Store.open(db)
    for i, t in enumerate(spec.peripherals):
        patient = f"patient-{i + 1:02d}"
        store.add_patient(patient, f"Clinic patient {i + 1}")
        address = str(t["address"]).upper()
        store.upsert_device(address, profile=PROFILE_OF_KIND[str(t["kind"])],
                            name=str(t.get("name", address)), address=address,
                            patient_id=patient, bonded=True)
    store.set_meta("settings_version", str(time.time_ns()))
    store.close()


@contextlib.contextmanager
def stack(spec: ScenarioSpec, work: Path) -> Iterator[tuple[str, str | None]]:
    """A private D-Bus, the simulator on it (off core 0) and a broker: (bus, broker URL)."""
    bus = start_private_bus(work / "dbus")
    sim = subprocess.Popen(
        ["taskset", "-c", ",".join(map(str, sorted(other_cores()))), sys.executable, "-m",
         "hardware_sim.run_bluez", "--bus", bus.address, "--scenario", spec.name, "--bonded"],
        stdout=subprocess.PIPE, stderr=(work / "sim.log").open("wb"), stdin=subprocess.DEVNULL)
    broker = start_broker(work / "mosquitto")
    try:
        assert sim.stdout is not None
        ready = sim.stdout.readline().decode()
        if not ready.startswith("READY"):
            raise SystemExit(f"bench_pi: the simulator did not start: "
                             f"{(work / 'sim.log').read_text()[-500:]}")
        yield bus.address, None if broker is None else broker.url
    finally:
        sim.terminate()
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()
        if sim.stdout is not None:
            sim.stdout.close()
        if broker is not None:
            broker.stop()
        bus.stop()


def write_config(work: Path, db: Path, spec: ScenarioSpec, broker: str | None) -> Path:
    ble = {"max_connections": 7, **spec.config.get("ble", {})}
    lines = [f'[storage]\ndb_path = "{db}"', "[ble]",
             *(f"{k} = {v!r}".replace("'", '"') for k, v in ble.items()),
             # The demo's windows: every analysis runs within a few minutes.
             '[daemon]\nlog_level = "warning"\ndsp_interval_s = 10.0\nshort_window_min = 1',
             '[gateway]\nid = "bench-pi"\nsite = "bench"']
    if broker:
        host, port = broker.removeprefix("mqtt://").rsplit(":", 1)
        lines.append(f'[mqtt]\nhost = "{host}"\nport = {port}')
    path = work / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o640)
    return path


def totals(reader: sqlite3.Connection) -> dict[str, int]:
    return {d: int(n or 0) for d, n in reader.execute("SELECT id, readings_total FROM devices")}


def record_lags(db: Path, store_only: set[str], since: datetime) -> list[float]:
    """Seconds from being made to being stored, for every store-only record made since
    ``since`` that was stored by the end (device clocks are right in the scenario, so a
    reading's ``time`` is when it was made)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            # "rx:" keys are values keyed by their receive time (battery level): not records.
            "SELECT device_id, min(time), min(received_at) FROM readings WHERE time >= ?"
            " AND record_key NOT LIKE 'rx:%' GROUP BY device_id, record_key",
            (since.isoformat(),)).fetchall()
    finally:
        conn.close()
    return [datetime.fromisoformat(got).timestamp() - datetime.fromisoformat(made).timestamp()
            for device_id, made, got in rows if device_id in store_only]


def run_scenario(name: str) -> Run:
    spec = load_scenario(name)
    run = Run(name)
    run.store_only = {str(t["address"]).upper() for t in spec.peripherals
                      if t["kind"] not in STREAM_KINDS}
    work = Path(tempfile.mkdtemp(prefix=f"bench-pi-{name}-"))
    db = work / "gateway.db"
    try:
        with stack(spec, work) as (bus, broker):
            if name in ("demo", "home"):
                store = Store.open(db)
                register(store, spec, {})
                store.close()
            else:
                register_clinic(db, spec)
            cfg = write_config(work, db, spec, broker)
            env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus, EDGE_GATEWAY_CONFIG=str(cfg))
            env.pop("NOTIFY_SOCKET", None)
            started_at = datetime.now(UTC)
            daemon = subprocess.Popen(["taskset", "-c", "0", str(BIN / "edge-gateway"), "run"],
                                      env=env, stdout=subprocess.DEVNULL,
                                      stderr=(work / "daemon.log").open("wb"),
                                      stdin=subprocess.DEVNULL)
            t0 = time.monotonic()
            reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                while (now := time.monotonic()) - t0 < SECONDS:
                    time.sleep(1.0)
                    if daemon.poll() is not None:
                        tail = (work / "daemon.log").read_text()[-800:]
                        raise SystemExit(f"bench_pi: the daemon exited: {tail}")
                    cpu, rss, hwm, wb = proc_fields(daemon.pid)
                    counts = totals(reader)
                    run.samples.append(Sample(now - t0, cpu, rss, hwm, wb,
                                              sum(counts.values())))
                    for device, n in counts.items():
                        if device in run.store_only and n and device not in run.first_visit:
                            run.first_visit[device] = now - t0
            finally:
                reader.close()
                daemon.terminate()
                daemon.wait(30)
            if name == "clinic":
                run.lags = record_lags(db, run.store_only, started_at)
    finally:
        if os.environ.get("BENCH_PI_KEEP"):
            print(f"bench_pi: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return run


def report(run: Run, failures: list[str]) -> None:
    steady = [s for s in run.samples if s.t >= WARMUP_S]
    if len(steady) < 2:
        failures.append(f"{run.scenario}: too short to measure")
        return
    a, b = steady[0], steady[-1]
    span = b.t - a.t
    cpu = (b.cpu_s - a.cpu_s) / span * 100
    readings = b.readings - a.readings
    per_reading = (b.write_bytes - a.write_bytes) / max(readings, 1)
    per_day_mb = (b.write_bytes - a.write_bytes) / span * 86400 / 1e6

    def line(key: str, value: float, unit: str, target: float | None, note: str) -> None:
        verdict = ""
        if target is not None:
            ok = value <= target
            verdict = f"ratio {value / target:.2f} vs {target:g} {unit} target — " + (
                "ok" if ok else "MISSED")
            if not ok:
                failures.append(f"pi.{run.scenario}.{key}")
        print(f"pi.{run.scenario}.{key}: {value:,.1f} {unit} ({verdict}{'; ' if verdict else ''}"
              f"{note})")

    n_dev = {"demo": "six devices", "home": "three devices"}.get(run.scenario, "50 devices")
    line("cpu_pct_of_one_core", cpu, "%", CPU_TARGET_PCT if run.scenario == "demo" else None,
         f"{n_dev}, taskset -c 0, {span:.0f} s after {WARMUP_S:.0f} s warm-up")
    line("rss_steady_mb", b.rss_mb, "MB", RSS_TARGET_MB,
         f"VmRSS at the end, analysis running; peak VmHWM {b.hwm_mb:.1f} MB")
    line("bytes_written_per_reading", per_reading, "B", BYTES_PER_READING_TARGET,
         f"/proc/PID/io write_bytes over {readings:,} readings in {span:.0f} s")
    if run.scenario == "home":
        full = "" if span >= FULL_SPAN_S else (
            f"; SHORT RUN: {span:.0f} s < {FULL_SPAN_S:.0f} s, BENCH_PI_SECONDS=700 for the "
            "issue's measurement")
        line("bytes_written_per_day", per_day_mb, "MB/day", BYTES_PER_DAY_TARGET_MB,
             f"reference home, extrapolated from {span:.0f} s of /proc/PID/io at "
             f"{readings / span:.1f} readings/s; floor of one fsync'd commit a second: "
             f"~360 MB/day (benchmarks/bench_store_layout.py){full}")
    else:
        print(f"pi.{run.scenario}.bytes_written_per_day: {per_day_mb:,.0f} MB/day "
              f"(extrapolated from {span:.0f} s at {readings / span:.1f} readings/s; "
              "information — the 100 MB/day target is for the reference home)")
    if run.scenario == "clinic":
        visited = len(run.first_visit)
        every = max(run.first_visit.values()) if visited == len(run.store_only) else float("inf")
        line("time_to_visit_all_store_only_s", every, "s", CLINIC_BOUND_S,
             f"{visited} of {len(run.store_only)} store-only devices had their history stored")
        if run.lags:
            line("worst_record_delay_s", max(run.lags), "s", CLINIC_BOUND_S,
                 f"{len(run.lags)} records made during the run and stored by its end, from "
                 f"being made to being stored; median "
                 f"{sorted(run.lags)[len(run.lags) // 2]:.0f} s")
        else:
            print("pi.clinic.worst_record_delay_s: no record made early enough in this run "
                  "(longer BENCH_PI_SECONDS)")


def main() -> int:
    if shutil.which("taskset") is None:
        print("bench_pi: taskset is missing (apt-get install util-linux)")
        return 1
    os.sched_setaffinity(0, other_cores())
    failures: list[str] = []
    for name in os.environ.get("BENCH_PI_SCENARIOS", "demo home clinic").split():
        report(run_scenario(name), failures)
    if failures:
        print("pi: targets missed: " + ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
