"""Rhythm: AF detection on real records, pauses, brady/tachycardia, ectopic beats."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

from edge_gateway.dsp import rhythm
from edge_gateway.dsp.rhythm import analyze_rhythm, detect_af

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
SHARED = ROOT.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason="../shared/data (the public records) is not beside this clone"
)


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rt") as fh:
        rows = list(csv.DictReader(fh))
    return np.array([float(r["rr_ms"]) for r in rows]), np.array([r["rhythm"] for r in rows])


def test_af_episode_found_in_afdb_excerpt() -> None:
    rr, labels = _load(DATA / "afdb04043_excerpt_rr.csv.gz")
    af = detect_af(rr)
    truth = labels == "AFIB"
    assert np.mean(af[truth]) > 0.95
    assert np.mean(~af[~truth]) > 0.95
    result = analyze_rhythm(rr)
    longest = max(result.af_episodes, key=lambda e: e.end_beat - e.start_beat)
    assert abs(longest.start_beat - 890) < 40 and abs(longest.end_beat - 1732) < 40


def test_random_rr_is_af_and_sinus_with_ectopy_is_not() -> None:
    rng = np.random.default_rng(3)
    af_rr = rng.uniform(400, 1000, size=600)
    assert np.mean(detect_af(af_rr)) > 0.9
    sinus = 800 + 20 * np.sin(np.arange(2000) * 2 * np.pi / 4.0) + rng.normal(0, 8, 2000)
    # Trigeminy: every third beat premature with a compensatory pause.
    sinus[::3] = 520
    sinus[1::3] = 1080
    assert np.mean(detect_af(sinus)) < 0.02


def test_pauses_brady_tachy() -> None:
    rr = np.concatenate([np.full(100, 1300.0), [2500.0, 3400.0], np.full(100, 500.0)])
    result = analyze_rhythm(rr)
    assert [(p.beat, p.duration_ms, p.severe) for p in result.pauses] == [
        (100, 2500.0, False), (101, 3400.0, True),
    ]
    # 1300 ms = 46 /min (brady), 500 ms = 120 /min (tachy); the 10-beat running mean blurs edges.
    assert result.bradycardia_pct == pytest.approx(100 * 100 / 202, abs=5)
    assert result.tachycardia_pct == pytest.approx(100 * 100 / 202, abs=5)
    assert result.af_burden_pct == 0.0


def test_ectopic_beats_counted_once_each() -> None:
    rr = np.full(300, 900.0) + np.sin(np.arange(300))
    for i in (50, 120, 200):
        rr[i], rr[i + 1] = 500.0, 1300.0
    assert analyze_rhythm(rr).ectopic_beats == 3


def test_episode_times_use_beat_clock() -> None:
    rr, _ = _load(DATA / "afdb04043_excerpt_rr.csv.gz")
    t = np.cumsum(rr) / 1000.0 + 100.0
    result = analyze_rhythm(rr, t)
    ep = result.af_episodes[0]
    assert ep.end_s == pytest.approx(t[ep.end_beat], abs=1e-3)
    assert ep.start_s == pytest.approx(t[ep.start_beat] - rr[ep.start_beat] / 1000, abs=1e-3)


def test_empty_and_tiny() -> None:
    assert analyze_rhythm(np.array([])).af_burden_pct is None
    assert analyze_rhythm(np.array([800.0, 810.0])).af_episodes == ()


@needs_shared
def test_af_detector_per_beat_on_afdb() -> None:
    """Issue #5 target: Se ≥ 97 %, Sp ≥ 98 % per beat pooled over the afdb records here."""
    pred, truth = [], []
    for path in sorted((SHARED / "rr" / "afdb").glob("*_rr.csv.gz")):
        rr, labels = _load(path)
        pred.append(detect_af(rr))
        truth.append(labels == "AFIB")
    p, y = np.concatenate(pred), np.concatenate(truth)
    se, sp = np.mean(p[y]), np.mean(~p[~y])
    assert se >= 0.97, se
    assert sp >= 0.98, sp


def test_streaming_decision_delay() -> None:
    """Fed the beats as they arrive, the detector flags the excerpt's onset within 60 beats."""
    rr, labels = _load(DATA / "afdb04043_excerpt_rr.csv.gz")
    onset = int(np.flatnonzero(labels == "AFIB")[0])
    delay = next(
        d for d in range(0, 200, 2) if detect_af(rr[: onset + d + 1])[onset:].any()
    )
    assert delay < 60


def test_decision_settles_within_af_settle_beats() -> None:
    rr, _ = _load(DATA / "afdb04043_excerpt_rr.csv.gz")
    base = rhythm.af_score(rr)
    for j in range(200, 2800, 97):
        for factor in (1.8, 0.55):
            changed = rr.copy()
            changed[j] *= factor
            moved = np.flatnonzero(np.abs(rhythm.af_score(changed) - base) > 1e-12)
            assert moved.size == 0 or j - moved[0] <= rhythm.AF_SETTLE_BEATS


@needs_shared
@pytest.mark.parametrize(
    "record",
    ["nsr2db/nsr001", "nsr2db/nsr002", "chf2db/chf201", "rr-healthy/000", "rr-healthy/007"],
)
def test_false_af_burden_on_sinus_records(record: str) -> None:
    with gzip.open(SHARED / "rr" / f"{record}_rr.csv.gz", "rt") as fh:
        rr = np.array([float(r["rr_ms"]) for r in csv.DictReader(fh)])
    assert analyze_rhythm(rr).af_burden_pct < 1.0
