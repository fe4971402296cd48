"""``make fleet-demo`` end to end, shortened: three hubs at three sites -> clinic mosquitto ->
bridge -> cloud mosquitto -> two ingest processes -> PostgreSQL, then ``cloud status``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import query

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fleet_demo.py"


def test_fleet_demo_lands_every_site_once(pg_dsn: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--seconds", "8", "--dsn", pg_dsn,
         "--workdir", str(tmp_path / "fleet"), "--json"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "FLEET_DEMO_SECONDS": "999"})
    assert run.returncode == 0, run.stderr[-2000:]
    st = json.loads(run.stdout)  # only the status JSON on stdout
    assert {g["site"] for g in st["gateways"]} == {"riverside", "hillview", "lakeside"}
    assert all(g["items"] > 100 for g in st["gateways"]), st["gateways"]
    assert st["dead_letters"] == 0 and st["duplicates_dropped"] == 0
    assert {c["consumer"] for c in st["consumers"]} == {"fleet-demo-ingest-1",
                                                        "fleet-demo-ingest-2"}
    # Every site's summaries and alerts, each item once, in all three shapes of the hubs.
    rows = query(pg_dsn, "SELECT site, kind, count(*), count(DISTINCT id)"
                         " FROM edge_gateway.items GROUP BY site, kind")
    kinds = {(s, k) for s, k, _n, _d in rows}
    assert kinds == {(s, k) for s in ("riverside", "hillview", "lakeside")
                     for k in ("summary", "alert")}, rows
    assert all(n == d for _s, _k, n, d in rows)
    assert st["items"] == sum(n for _s, _k, n, _d in rows)
    fhir = query(pg_dsn, "SELECT DISTINCT data->>'resourceType' FROM edge_gateway.items"
                         " WHERE site = 'lakeside'")
    assert {f[0] for f in fhir} == {"Observation", "Flag"}
    assert query(pg_dsn, "SELECT count(*) FROM edge_gateway.alerts")[0][0] >= 3
    # Everything the demo started is gone (it stops its processes by PID).
    for mark in (str(tmp_path / "fleet"), pg_dsn.split("dbname=")[-1]):
        left = subprocess.run(["pgrep", "-f", mark], capture_output=True)
        assert left.stdout == b"", (mark, left.stdout)
