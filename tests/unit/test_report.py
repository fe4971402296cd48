"""The clinic report from a simulated two-week dataset (CGM, HR, HRV, AF, BP, a strap gap)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from click.testing import CliRunner

from edge_gateway.alerts.engine import AlertEngine
from edge_gateway.alerts.thresholds import ThresholdLoader
from edge_gateway.care.report import (
    af_episodes,
    bp_class,
    glucose_metrics,
    load,
    render_html,
    write_report,
)
from edge_gateway.cli import main
from edge_gateway.reading import Reading, iso
from edge_gateway.store import Store

TZ = ZoneInfo("Europe/Berlin")
END = datetime(2026, 11, 21, tzinfo=TZ).astimezone(UTC)  # exclusive: the report's last day is 20th
START = datetime(2026, 11, 7, tzinfo=TZ).astimezone(UTC)
AF_DAY, LOW_DAYS, GAP_DAY = 5, (3, 10), 9


@dataclass
class Dataset:
    db: Path
    cgm: list[float]
    bp: list[tuple[float, float]]


def _reading(dev: str, kind: str, v: float, unit: str, t: datetime, key: str) -> Reading:
    return Reading(device_id=dev, characteristic="c", kind=kind, value=round(v, 1), unit=unit,
                   time=t, received_at=t + timedelta(seconds=1), record_key=key,
                   patient_id="alice")


def simulate(path: Path) -> Dataset:
    """Two weeks: CGM with meals and two night lows, HR per minute (a 12-hour strap gap),
    hourly HRV and rhythm summaries with an AF afternoon, BP twice a day."""
    rng = np.random.default_rng(7)
    store = Store.open(path)
    store.add_patient("alice", name="Alice Example")
    for dev, profile in (("cgm1", "cgm"), ("strap", "heart_rate"), ("cuff", "blood_pressure")):
        store.upsert_device(dev, profile=profile, patient_id="alice")
    engine = AlertEngine(store, ThresholdLoader(store))
    cgm_values: list[float] = []
    bp_values: list[tuple[float, float]] = []
    summaries = []
    for day in range(14):
        midnight = datetime(2026, 11, 7, tzinfo=TZ) + timedelta(days=day)
        readings = []
        for i in range(288):
            lt = midnight + timedelta(minutes=5 * i)
            h = lt.hour + lt.minute / 60
            g = 115 + sum(70 * math.exp(-((h - m) ** 2) / 0.8) for m in (7.5, 12.5, 19))
            if day in LOW_DAYS:
                g -= 68 * math.exp(-((h - 3) ** 2) / 0.5)
            g += rng.normal(0, 6)
            cgm_values.append(round(g, 1))
            readings.append(_reading("cgm1", "cgm_glucose", g, "mg/dL", lt.astimezone(UTC),
                                     f"s:{day}:{i}"))
        for m in range(0, 1440):
            lt = midnight + timedelta(minutes=m)
            if day == GAP_DAY and 8 <= lt.hour < 20:
                continue  # the strap was off
            hr = 58 + 17 * (7 <= lt.hour < 22) + rng.normal(0, 4)
            readings.append(_reading("strap", "heart_rate", hr, "/min", lt.astimezone(UTC),
                                     f"h:{day}:{m}"))
        for n, hour in enumerate((7, 19)):
            t = (midnight + timedelta(hours=hour)).astimezone(UTC)
            s, d = (185, 112) if (day, n) == (6, 1) else (118 + 3 * (day % 6) + 8 * n,
                                                          74 + 2 * (day % 5))
            bp_values.append((s, d))
            readings += [_reading("cuff", "systolic", s, "mmHg", t, f"bp:{day}:{n}"),
                         _reading("cuff", "diastolic", d, "mmHg", t, f"bp:{day}:{n}"),
                         _reading("cuff", "pulse_rate", 70, "/min", t, f"bp:{day}:{n}")]
        for hour in range(24):
            ws = (midnight + timedelta(hours=hour)).astimezone(UTC)
            we = ws + timedelta(hours=1)
            af = 35.0 if day == AF_DAY and 14 <= hour < 17 else 0.0
            summaries += [
                ("hrv", ws, we, {"sdnn_ms": 42 + rng.normal(0, 5) - 8 * (day == AF_DAY),
                                 "rmssd_ms": 30 + rng.normal(0, 4)}),
                ("rhythm", ws, we, {"af_burden_pct": af,
                                    "af_longest_episode_s": 900.0 if af else 0.0})]
        store.add_readings(readings)
        engine.on_readings(r for r in readings if r.kind == "cgm_glucose")
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO summaries (patient_id, device_id, kind, window_start, window_end,"
            " metrics, coverage, algorithm, created_at) VALUES ('alice', 'strap', ?, ?, ?, ?,"
            " 1.0, 'sim/1', ?)",
            [(k, iso(ws), iso(we), json.dumps(m), iso(we)) for k, ws, we, m in summaries])
    store.close()
    return Dataset(path, cgm_values, bp_values)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return simulate(tmp_path_factory.mktemp("report") / "gw.db")


def test_af_episodes_merge_across_windows() -> None:
    t = datetime(2026, 11, 12, 13, 0, tzinfo=UTC)
    win = [(t + timedelta(minutes=5 * i), t + timedelta(minutes=5 * i + 5)) for i in range(4)]
    rhythm = [
        (win[0][0], win[0][1], {"af_burden_pct": 40.0, "af_episodes": [
            {"start": iso(win[0][0] + timedelta(minutes=3)), "end": iso(win[0][1])}]}),
        (win[1][0], win[1][1], {"af_burden_pct": 100.0, "af_episodes": [
            {"start": iso(win[1][0]), "end": iso(win[1][1])}]}),
        (win[2][0], win[2][1], {"af_burden_pct": 0.0, "af_episodes": []}),
        (win[3][0], win[3][1], {"af_burden_pct": 20.0, "af_episodes": [
            {"start": iso(win[3][0] + timedelta(minutes=4)), "end": iso(win[3][1])}]}),
    ]
    [(a1, b1, _), (a2, b2, _)] = af_episodes(rhythm)
    assert (b1 - a1) == timedelta(minutes=7) and (b2 - a2) == timedelta(minutes=1)


def test_bp_classes() -> None:
    assert bp_class(118, 76)[0] == "Normal"
    assert bp_class(124, 78)[0] == "Elevated"
    assert bp_class(124, 82)[0] == "Stage 1 hypertension"
    assert bp_class(141, 70)[0] == "Stage 2 hypertension"
    assert bp_class(150, 121)[0] == "Hypertensive crisis"


def test_report_html_from_two_weeks(data: Dataset, tmp_path: Path) -> None:
    store = Store.open(data.db)
    out = write_report(store, "alice", end=END, days=14, tz=TZ, out=tmp_path / "r.html")
    page = out.read_text()
    # Self-contained: nothing fetched from anywhere when it is opened or printed.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    assert "<script" not in page and "<link" not in page and "<img" not in page
    assert page.count("<svg") == 3  # AGP + TIR, HR/HRV, coverage
    for heading in ("Glucose", "Heart rate and heart-rate variability", "Atrial fibrillation",
                    "Blood pressure", "Device coverage", "Alerts"):
        assert f"<h2>{heading}</h2>" in page
    assert "07 Nov 2026 – 20 Nov 2026 (14 days)" in page
    # Time in ranges as computed independently from the generated values.
    v = np.array(data.cgm)
    in_range = 100 * np.count_nonzero((v >= 70) & (v <= 180)) / v.size
    very_low = 100 * np.count_nonzero(v < 54) / v.size
    assert f"{in_range:.1f} %" in page and f"{very_low:.1f} %" in page
    assert very_low > 0
    # Blood pressure: every measurement, with its guideline class.
    assert page.count("<td class='n'>185</td>") == 1
    assert "Hypertensive crisis: 1" in page
    assert len(re.findall(r"<tr><td>2026-11-\d\d \d\d:\d\d</td><td class='n'>\d+</td>", page)) \
        == len(data.bp)
    # AF: the three AF hours of day 5 (12 Nov).
    assert "1 AF episode(s); about 63 minutes of AF" in page
    assert "<td>2026-11-12 14:00</td><td>2026-11-12 17:00</td>" in page
    # Coverage: the CGM is complete; the strap lost 12 of 336 hours.
    assert "100 % of 5-min slots" in page
    assert f"{100 * (1 - 12 / 336):.0f} % of 5-min slots" in page
    # Alerts from the night lows, at local times.
    assert "level 2 low" in page
    store.close()


def test_report_glucose_metrics_match_consensus_formulae(data: Dataset) -> None:
    store = Store.open(data.db)
    d = load(store, "alice", end=END, days=14, tz=TZ)
    assert len(d.cgm_v) == 14 * 288 and len(d.hr_minutes) == 14 * 1440 - 12 * 60
    gm = glucose_metrics(d.cgm_t, d.cgm_v, (END - START).total_seconds())
    assert gm["gmi"] == pytest.approx(3.31 + 0.02392 * np.mean(data.cgm))
    assert sum(gm["bands"].values()) == pytest.approx(100)
    assert gm["active"] == pytest.approx(100)
    assert gm["hypo_events"] == 2  # the two night lows
    assert "Health report: Alice Example" in render_html(d)
    store.close()


def test_report_for_a_patient_without_data(data: Dataset, tmp_path: Path) -> None:
    store = Store.open(data.db)
    store.add_patient("carl")
    page = write_report(store, "carl", end=END, days=7, tz=TZ, out=tmp_path / "c.html")\
        .read_text()
    assert "No glucose readings in this period." in page and "<svg" not in page
    store.close()


def test_report_pdf_and_cli(data: Dataset, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, [
        "--db", str(data.db), "report", "--patient", "alice", "--days", "14",
        "--until", "2026-11-21", "--tz", "Europe/Berlin", "--out", str(tmp_path / "r.pdf")],
        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"
    res = CliRunner().invoke(main, ["--db", str(data.db), "report", "--patient", "bob",
                                    "--out", str(tmp_path / "x.html")])
    assert res.exit_code == 2 and "no patient 'bob'" in res.output
