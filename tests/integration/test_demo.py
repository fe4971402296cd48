"""`edge-gateway demo` as a newcomer runs it: every simulated device lands in SQLite, the run
ends cleanly, and a second run on the same database continues without duplicating anything."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path


def run_demo(db: Path, env: dict[str, str], seconds: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_gateway", "--db", str(db), "demo", "--duration",
         str(seconds)], capture_output=True, text=True, env=env, timeout=180)


def test_demo_runs_end_to_end_and_continues(tmp_path: Path, cli_env: dict[str, str]) -> None:
    db = tmp_path / "demo.db"
    first = run_demo(db, cli_env, 20)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Traceback" not in first.stderr
    conn = sqlite3.connect(db)
    per_device = dict(conn.execute(
        "SELECT d.id, count(r.id) FROM devices d LEFT JOIN readings r ON r.device_id = d.id"
        " GROUP BY d.id"))
    # One of each simulated device, BLE and serial, delivered readings into SQLite.
    assert set(per_device) >= {"hr-strap", "cgm", "glucose-meter", "bp-cuff", "pulse-oximeter",
                               "thermometer", "rad8"}
    silent = [d for d, n in per_device.items() if n == 0]
    assert not silent, f"devices without readings: {silent}\n{first.stdout[-2000:]}"
    # About 14 days of CGM history were backfilled on first connect.
    span = conn.execute("SELECT julianday(max(time)) - julianday(min(time)) FROM readings"
                        " WHERE kind = 'cgm_glucose'").fetchone()[0]
    assert span > 13
    # A cuff's user 2 is another patient.
    users = dict(conn.execute("SELECT patient_id, count(*) FROM readings"
                              " WHERE device_id = 'bp-cuff' GROUP BY patient_id"))
    assert set(users) == {"demo", "demo-2"}
    stored = {k: n for k, n in conn.execute(
        "SELECT kind, count(*) FROM readings WHERE kind IN ('cgm_glucose', 'glucose',"
        " 'bp_systolic', 'temperature') GROUP BY kind")}
    conn.close()
    assert "edge-gateway demo" in first.stdout and "hr-strap" in first.stdout

    second = run_demo(db, cli_env, 12)
    assert second.returncode == 0, second.stderr[-3000:]
    conn = sqlite3.connect(db)
    again = {k: n for k, n in conn.execute(
        "SELECT kind, count(*) FROM readings WHERE kind IN ('cgm_glucose', 'glucose',"
        " 'bp_systolic', 'temperature') GROUP BY kind")}
    # Stored records were not duplicated by the second backfill (the simulator regenerates
    # the same history; new live CGM records may have been added).
    for kind in ("glucose", "bp_systolic", "temperature"):
        assert again[kind] == stored[kind], (kind, stored, again)
    assert again["cgm_glucose"] >= stored["cgm_glucose"]
    conn.close()
