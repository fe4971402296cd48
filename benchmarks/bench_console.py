"""Clinic console benchmark: *Now* and *Patients* over a fleet-sized database.

Generates, straight into PostgreSQL (server-side ``INSERT … SELECT generate_series``: no
client round trip per row), 10,000 patients across 300 hubs in 30 sites with a year of
summaries per patient: a daily rhythm summary for 365 days, weekly ``glucose_14d`` (with its
24-hour AGP) and ``bp_weekly`` for 52 weeks, and hourly HRV summaries for the last
``--hourly-days`` days (default 14: a year of hourly summaries for 10,000 patients would be
88 M rows, ~40 GB, and hours to generate on this machine — scaled down, as said in the
output); 3,000 alerts (2,000 open).  Then serves the console (uvicorn, in this process) and
requests each page many times as an admin (every site) and as a clinician of 3 sites.

Reported per page: server time (``Server-Timing`` total: authentication, queries, template)
median and p99 — target p99 ≤ 300 ms — queries per page (``X-Queries``: constant, no N+1) and
page weight.  Baseline, measured in the same run: the page's own queries run bare (the same
store functions on a plain connection, no HTTP, no session, no template); the ratio says
what the web layer costs on top of the SQL.

Run: ``.venv/bin/python benchmarks/bench_console.py [--json] [--patients N] [--keep]``
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "cloud"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import psycopg  # noqa: E402

import tests.cloud.conftest as h  # noqa: E402
from edge_gateway.cloud.console.app import Settings  # noqa: E402
from edge_gateway.cloud.store import console as cstore  # noqa: E402
from edge_gateway.cloud.store import pg  # noqa: E402
from tests.cloud.console_helpers import add_user, close_clients, login, served  # noqa: E402

#: One 24-hour AGP (the same for every summary: building it per row doubled the time).
AGP = json.dumps([{"hour": hh, "n": 168, "p5": 70 + hh, "p25": 100 + hh, "p50": 130 + hh,
                   "p75": 160 + hh, "p95": 210 + hh} for hh in range(24)])


def _gen(conn: Any, what: str, sql: str, params: tuple[Any, ...] = ()) -> tuple[str, int, float]:
    t = time.perf_counter()
    n = conn.execute(sql.encode(), params).rowcount
    return what, int(n), time.perf_counter() - t


def generate(dsn: str, patients: int, hubs: int, sites: int, hourly_days: int,
             now: datetime) -> list[tuple[str, int, float]]:
    """The fleet, into a migrated database; returns (what, rows, seconds) per step."""
    steps: list[tuple[str, int, float]] = []
    day0 = datetime(now.year, now.month, now.day, tzinfo=UTC)
    with pg.connect(dsn) as conn:
        pg.migrate(conn)
        months = pg.wanted_months([day0 - timedelta(days=d) for d in range(0, 400, 10)]
                                  + [day0], now)
        pg.Partitions().ensure(conn, months)
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '512MB'")
        # Loading with the indexes in place costs several times more than building them
        # afterwards: drop the item indexes (not the primary key) and make them again.
        defs = [(str(n), str(d)) for n, d in conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'edge_gateway'"
            " AND tablename = 'item_rows' AND indexname NOT LIKE '%pkey'").fetchall()]
        for n, _d in defs:
            conn.execute(f"DROP INDEX edge_gateway.{n}".encode())
        # patient i lives on hub (i % hubs), which is in site (hub % sites)
        pat = ("SELECT i, 'p' || lpad(i::text, 5, '0') AS patient,"
               " 'gw' || lpad((i %% %(h)s)::text, 3, '0') AS gateway,"
               " 'site' || lpad(((i %% %(h)s) %% %(s)s)::text, 2, '0') AS site"
               " FROM generate_series(0, %(n)s - 1) i")
        p = {"h": hubs, "s": sites, "n": patients}

        def items(what: str, kind: str, step: str, count: int, body: str) -> None:
            sql = (
                "INSERT INTO edge_gateway.item_rows (id, created_at, gateway, site, patient,"
                " kind, format, received_at, data)"
                f" SELECT p.gateway || ':db0:{kind}:' || p.i || ':' || k, t, p.gateway, p.site,"
                " p.patient, 'summary', 'json', t, jsonb_build_object('summary_id', k,"
                f" 'kind', '{kind}', 'patient', p.patient, 'device', 'dev-1',"
                f" 'window_start', to_char(t - interval '{step}',"
                " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
                " 'window_end', to_char(t, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
                f" 'metrics', {body.replace('%', '%%')}, 'coverage', 0.95, 'algorithm', 'bench/1',"
                " 'created_at', to_char(t, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))"
                f" FROM ({pat}) p, generate_series(1, {count}) k,"
                f" LATERAL (SELECT %(t0)s::timestamptz - (k - 1) * interval '{step}' AS t) tt")
            steps.append(_gen(conn, what, sql, {**p, "t0": day0}))  # type: ignore[arg-type]

        items("rhythm_daily × 365", "rhythm_daily", "1 day", 365,
              "jsonb_build_object('n_beats', 98000, 'af_burden_pct', (p.i % 7) * 1.5,"
              " 'af_episodes', '[]'::jsonb, 'mean_hr_bpm', 60 + p.i % 30)")
        items("glucose_14d × 52 (with AGP)", "glucose_14d", "7 days", 52,
              "jsonb_build_object('tir_pct', 50 + p.i % 45, 'mean_mg_dl', 120 + p.i % 60,"
              f" 'tbr1_pct', 2.5, 'tbr2_pct', 0.5, 'agp', '{AGP}'::jsonb)")
        items("bp_weekly × 52", "bp_weekly", "7 days", 52,
              "jsonb_build_object('n', 14, 'mean_systolic', 115 + p.i % 50, 'mean_diastolic',"
              " 70 + p.i % 30, 'mean_class', 'stage_1')")
        items(f"hrv hourly × {hourly_days * 24}", "hrv", "1 hour", hourly_days * 24,
              "jsonb_build_object('mean_hr_bpm', 60 + (p.i + k) % 40, 'sdnn_ms', 40,"
              " 'rmssd_ms', 30)")
        steps.append(_gen(conn, "patients", (
            "INSERT INTO edge_gateway.patients (gateway, patient, site, first_seen, last_seen)"
            f" SELECT gateway, patient, site, %(t0)s::timestamptz - interval '365 days',"
            f" %(t0)s::timestamptz - (i %% 50) * interval '1 hour' FROM ({pat}) p"),
            {**p, "t0": day0}))  # type: ignore[arg-type]
        steps.append(_gen(conn, "gateways", (
            "INSERT INTO edge_gateway.gateways (gateway, site, status, status_at, last_seen,"
            " newest_item_at, items) SELECT 'gw' || lpad(g::text, 3, '0'),"
            " 'site' || lpad((g %% %(s)s)::text, 2, '0'),"
            " CASE WHEN g %% 37 = 0 THEN 'offline' ELSE 'online' END, now(),"
            " now() - (g %% 41) * interval '10 minutes', now() - interval '1 hour', 1000"
            " FROM generate_series(0, %(h)s - 1) g"), p))  # type: ignore[arg-type]
        steps.append(_gen(conn, "alerts", (
            "INSERT INTO edge_gateway.alerts (gateway, alert_key, site, patient, rule, severity,"
            " state, message, raised_at, updated_at, last_item)"
            " SELECT p.gateway, (1000 + a)::text, p.site, p.patient,"
            " (ARRAY['af', 'glucose_low', 'spo2_low', 'bp_crisis'])[1 + a %% 4],"
            " (ARRAY['warning', 'urgent', 'critical', 'warning'])[1 + a %% 4],"
            " CASE WHEN a %% 3 = 0 THEN 'resolved' ELSE 'raised' END, 'bench alert ' || a,"
            " now() - a * interval '1 minute', now() - a * interval '1 minute', 'x'"
            f" FROM generate_series(0, 2999) a JOIN ({pat}) p ON p.i = (a * 7) %% %(n)s"),
            p))  # type: ignore[arg-type]
        t = time.perf_counter()
        for _n, d in defs:
            # pg_indexes writes a partitioned index "ON ONLY" the parent: not what we want.
            conn.execute(d.replace(" ON ONLY ", " ON ").encode())
        steps.append(("indexes", 0, time.perf_counter() - t))
        t = time.perf_counter()
        conn.execute("ANALYZE")
        steps.append(("ANALYZE", 0, time.perf_counter() - t))
    return steps


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def measure(get: Callable[[], Any], n: int) -> dict[str, Any]:
    server, db, queries, size = [], [], set(), []
    for _ in range(n):
        r = get()
        assert r.status_code == 200, (r.status_code, r.text[:200])
        timing = dict(part.strip().split(";dur=") for part in
                      r.headers["Server-Timing"].split(","))
        server.append(float(timing["total"]))
        db.append(float(timing["db"]))
        queries.add(int(r.headers["X-Queries"]))
        size.append(len(r.content))
    return {"median_ms": round(statistics.median(server), 1),
            "p99_ms": round(pct(server, 0.99), 1), "db_median_ms": round(statistics.median(db), 1),
            "queries": sorted(queries),
            "bytes": int(statistics.median(size))}


def bare(dsn: str, fn: Callable[[cstore.Db], Any], n: int) -> float:
    """Median ms of the page's own store calls on a plain connection."""
    out = []
    with pg.connect(dsn) as conn:
        db = cstore.Db(conn)
        for _ in range(n):
            t = time.perf_counter()
            fn(db)
            out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--hubs", type=int, default=300)
    ap.add_argument("--sites", type=int, default=30)
    ap.add_argument("--hourly-days", type=int, default=14)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the database (prints its name)")
    args = ap.parse_args()
    name = f"egw_bench_console_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(h.BASE_DSN, autocommit=True) as a:
        a.execute(f'CREATE DATABASE "{name}"'.encode())
    base = " ".join(p for p in h.BASE_DSN.split() if not p.startswith("dbname="))
    dsn = h.with_db(base, name)
    out: dict[str, Any] = {"patients": args.patients, "hubs": args.hubs, "sites": args.sites,
                           "hourly_days": args.hourly_days}
    try:
        t0 = time.perf_counter()
        steps = generate(dsn, args.patients, args.hubs, args.sites, args.hourly_days,
                         datetime.now(UTC))
        out["generate_s"] = round(time.perf_counter() - t0, 1)
        out["rows"] = {w: n for w, n, _s in steps if n}
        with psycopg.connect(dsn) as c:
            size = c.execute("SELECT pg_database_size(current_database())").fetchone()
        out["db_bytes"] = int(size[0]) if size else 0
        add_user(dsn, "admin", "admin", [])
        my_sites = ["site00", "site01", "site02"]
        add_user(dsn, "doc", "clinician", my_sites)
        scopes = {"admin": cstore.Scope(True, ()), "doc": cstore.Scope(False, tuple(my_sites))}
        rng = random.Random(1)
        settings = Settings(dsn=dsn)
        pages: dict[str, Any] = {}
        with served(settings) as s:
            for user in ("admin", "doc"):
                c = login(s.url, user)
                total = args.patients if user == "admin" else args.patients * 3 // args.sites
                npages = max(1, (total + 49) // 50)
                c.get("/")  # warm the pool and caches
                pages[f"now ({user})"] = measure(lambda c=c: c.get("/"), args.requests)
                pages[f"patients, random page ({user})"] = measure(
                    lambda c=c, n=npages: c.get("/patients",
                                                params={"page": rng.randint(1, n)}),
                    args.requests)
                # "p012" matches the 100 patients p01200-p01299 (2 pages)
                hundreds = max(1, args.patients // 100)
                pages[f"patients, search ({user})"] = measure(
                    lambda c=c, k=hundreds: c.get(
                        "/patients", params={"q": f"p{rng.randint(0, k - 1):03d}"}),
                    args.requests // 2)
            close_clients()
        sc = scopes["admin"]
        base_now = bare(dsn, lambda db: cstore.now_page(
            db, sc, silent_after=timedelta(hours=2), stale_after=timedelta(hours=24)),
            args.requests)
        npages = max(1, (args.patients + 49) // 50)
        base_pat = bare(dsn, lambda db: (cstore.patients_page(db, sc,
                                                              page=rng.randint(1, npages)),
                                         cstore.sites(db, sc)), args.requests)
        out["pages"] = pages
        out["baseline_ms"] = {"now (admin)": round(base_now, 1),
                              "patients (admin)": round(base_pat, 1)}
        out["ratio"] = {
            "now (admin)": round(pages["now (admin)"]["median_ms"] / base_now, 2),
            "patients (admin)": round(
                pages["patients, random page (admin)"]["median_ms"] / base_pat, 2)}
    finally:
        if not args.keep:
            with psycopg.connect(h.BASE_DSN, autocommit=True) as a:
                a.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        else:
            out["database"] = name
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"fleet: {args.patients} patients, {args.hubs} hubs, {args.sites} sites; generated in"
          f" {out['generate_s']} s, database {out['db_bytes'] / 1e9:.1f} GB")
    for what, n in out["rows"].items():
        print(f"  {what:<32} {n:>12,} rows")
    print(f"  (hourly summaries for the last {args.hourly_days} days only: a year of them"
          " would be ~88 M rows)")
    for what, _n, secs in steps:
        print(f"  {what:<32} {secs:>8.1f} s")
    print(f"{'page (server time)':<36} {'median ms':>10} {'p99 ms':>8} {'of it SQL':>10}"
          f" {'queries':>8} {'bytes':>8}")
    for page, m in out["pages"].items():
        print(f"{page:<36} {m['median_ms']:>10} {m['p99_ms']:>8} {m['db_median_ms']:>10}"
              f" {'/'.join(map(str, m['queries'])):>8} {m['bytes']:>8}")
    for page, r in out["ratio"].items():
        print(f"ratio page / its bare queries, {page}: {r} "
              f"(bare {out['baseline_ms'][page]} ms)")


if __name__ == "__main__":
    main()
