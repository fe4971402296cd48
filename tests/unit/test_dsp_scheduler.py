"""The DSP scheduler over a real store: windows, beat timing, gaps, summaries + outbox."""

from __future__ import annotations

import asyncio
import csv
import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from edge_gateway.dsp import hrv as hrv_mod
from edge_gateway.reading import Reading
from edge_gateway.runtime.dsp_scheduler import DspScheduler, Series, beat_times, windows
from edge_gateway.store import Store

DATA = Path(__file__).resolve().parents[1] / "data"
T0 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def afdb_excerpt() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """MIT-BIH AF Database record 04043 excerpt (PhysioNet, ODC-By 1.0): sinus then AF."""
    with gzip.open(DATA / "afdb04043_excerpt_rr.csv.gz", "rt") as fh:
        rows = list(csv.DictReader(fh))
    rr = np.array([float(r["rr_ms"]) for r in rows])
    t = np.array([float(r["t_s"]) for r in rows])
    return rr, t - t[0] + rr[0] / 1000.0, [r["rhythm"] for r in rows]


def store_rr(store: Store, rr: np.ndarray, t_s: np.ndarray, drop: tuple[float, float] | None
             = None) -> None:
    """One notification per beat, received at the beat (plus 40 ms of link latency)."""
    readings = []
    for i, (v, t) in enumerate(zip(rr, t_s, strict=True)):
        if drop and drop[0] <= t < drop[1]:
            continue
        at = T0 + timedelta(seconds=float(t) + 0.04)
        readings.append(Reading("strap", "2a37", "rr_interval", float(v), "ms", at, at,
                                f"rx:{i}", patient_id="p1"))
    store.add_readings(readings)


def run(sched: DspScheduler, now: datetime) -> int:
    return asyncio.run(sched.run_once(now))


def test_windows_align_to_utc_five_minutes_and_local_days() -> None:
    tz = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 11, 20, 6, 3, tzinfo=UTC)
    short = windows("short", start, start + timedelta(minutes=16), tz, timedelta(seconds=30))
    assert [w[0].minute for w in short] == [0, 5, 10]
    days = windows("day", start, start + timedelta(days=2), tz, timedelta(seconds=30))
    # Local midnight in Berlin is 23:00 UTC in November.
    assert days[0] == (datetime(2026, 11, 19, 23, tzinfo=UTC), datetime(2026, 11, 20, 23,
                                                                         tzinfo=UTC))


def test_beat_times_follow_rr_and_reanchor_after_lost_notifications() -> None:
    rr = np.array([800.0, 820.0, 810.0, 790.0, 800.0])
    # Two beats per notification, received late and jittery; then 10 s of lost notifications.
    t = np.array([1.70, 1.70, 3.32, 3.32, 14.0])
    bt = beat_times(Series(T0, T0 + timedelta(minutes=5), t, rr, (None,) * 5))
    assert np.allclose(np.diff(bt[:4]), rr[1:4] / 1000.0)
    assert bt[4] - bt[3] > 5.0  # the gap shows, so cleaning splits the series there


def test_hrv_and_rhythm_summaries_from_stored_beats(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db")
    store.add_patient("p1")
    rr, t_s, rhythm = afdb_excerpt()
    store_rr(store, rr, t_s, drop=(100.0, 130.0))
    end = T0 + timedelta(seconds=float(t_s[-1]))
    sched = DspScheduler(store, ZoneInfo("UTC"))
    made = run(sched, end + timedelta(minutes=1))
    assert made > 0
    rows = store.conn.execute(
        "SELECT kind, window_start, metrics, algorithm FROM summaries ORDER BY id").fetchall()
    by_kind: dict[str, list[tuple[str, dict]]] = {}
    for kind, ws, metrics, _alg in rows:
        by_kind.setdefault(kind, []).append((ws, json.loads(metrics)))
    # Every summary went to the outbox in the same transaction.
    assert store.conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == len(rows)
    first_hrv = by_kind["hrv"][0][1]
    # The window with 30 s of lost notifications is split, not interpolated across.
    assert first_hrv["n_segments"] >= 2
    # A window wholly inside sinus rhythm matches the library on the same beats.
    ws, m = by_kind["hrv"][2]
    w0 = (datetime.fromisoformat(ws.replace("Z", "+00:00")) - T0).total_seconds()
    inside = (t_s + 0.04 >= w0) & (t_s + 0.04 < w0 + 300)
    ref = hrv_mod.hrv(rr[inside], t_s[inside], window_s=300.0)
    assert m["sdnn_ms"] == ref.sdnn_ms and m["rmssd_ms"] == ref.rmssd_ms
    # Rhythm: each window's AF burden follows the reference labels (a detector decides within
    # about a minute of beats, so mixed windows may differ by that much).
    labels = np.array(rhythm)
    for ws, m in by_kind["rhythm"]:
        w = (datetime.fromisoformat(ws.replace("Z", "+00:00")) - T0).total_seconds()
        sel = (t_s + 0.04 >= w) & (t_s + 0.04 < w + 300)
        true_pct = 100.0 * float(np.mean(labels[sel] == "AFIB"))
        assert abs(m["af_burden_pct"] - true_pct) < 15, (ws, m["af_burden_pct"], true_pct)
    assert any(m["af_episodes"] for _, m in by_kind["rhythm"])
    # Running again makes nothing new: progress is kept, and windows are unique.
    assert run(sched, end + timedelta(minutes=1)) == 0
    assert run(DspScheduler(store, ZoneInfo("UTC")), end + timedelta(minutes=1)) == 0


def test_bp_weekly_pairs_systolic_and_diastolic(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db")
    store.add_patient("p1")
    readings = []
    for day in range(7):
        at = datetime(2026, 11, 16, 7, 30, tzinfo=UTC) + timedelta(days=day)
        for kind, v, unit in (("bp_systolic", 150.0, "mmHg"), ("bp_diastolic", 95.0, "mmHg"),
                              ("pulse_rate", 70.0, "/min")):
            readings.append(Reading("cuff", "2a35", kind, v + day, unit, at, at, f"dev:{day}",
                                    patient_id="p1"))
    store.add_readings(readings)
    run(DspScheduler(store, ZoneInfo("UTC")), datetime(2026, 11, 24, 1, tzinfo=UTC))
    m = json.loads(store.conn.execute(
        "SELECT metrics FROM summaries WHERE kind = 'bp_weekly'").fetchone()[0])
    assert m["n"] == 7 and m["mean_systolic"] == 153.0 and m["mean_diastolic"] == 98.0
