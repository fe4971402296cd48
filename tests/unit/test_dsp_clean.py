"""Beat cleaning: ectopic detection on labelled data, gaps splitting the series."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

from edge_gateway.dsp.clean import clean_rr, detect_ectopic

DATA = Path(__file__).resolve().parents[1] / "data"


def _f1o02() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with gzip.open(DATA / "f1o02_rr.csv.gz", "rt") as fh:
        rows = list(csv.DictReader(fh))
    rr = np.array([float(r["rr_ms"]) for r in rows])
    labels = np.array([r["label"] for r in rows])
    t = np.array([float(r["t_s"]) for r in rows])
    return rr, labels, t


def test_f1o02_ectopic_target() -> None:
    """Issue #5: ≥ 24 of the 26 intervals touching the 13 ectopic beats, ≤ 30 false flags."""
    rr, labels, t = _f1o02()
    ectopic = np.flatnonzero(labels != "N")
    assert ectopic.size == 13
    truth = np.zeros(rr.size, dtype=bool)
    truth[ectopic] = True
    truth[ectopic + 1] = True
    assert truth.sum() == 26
    cleaned = clean_rr(rr, t)
    hit = cleaned.flagged | cleaned.removed
    assert np.count_nonzero(hit & truth) >= 24
    assert np.count_nonzero(hit & ~truth) <= 30
    assert cleaned.n_corrected == np.count_nonzero(cleaned.flagged)
    # Corrected values sit near their neighbours, not at the premature or compensatory value.
    assert np.all(np.abs(cleaned.rr_ms[truth] - 1040) < 120)


def test_premature_beat_and_compensatory_pause_flagged() -> None:
    rr = np.full(40, 1000.0) + 10 * np.sin(np.arange(40))
    rr[20], rr[21] = 600.0, 1400.0
    flags = detect_ectopic(rr)
    assert list(np.flatnonzero(flags)) == [20, 21]


def test_smooth_sinus_arrhythmia_not_flagged() -> None:
    # A strong breathing swing (±150 ms on 900 ms, 4 s period) is sinus rhythm, not ectopy.
    beats = np.arange(600)
    rr = 900 + 150 * np.sin(2 * np.pi * beats / 4.5)
    assert not detect_ectopic(rr).any()


def test_time_gap_splits_instead_of_interpolating() -> None:
    rr = np.full(20, 800.0)
    t = np.cumsum(rr) / 1000.0
    t[10:] += 30.0  # thirty seconds of lost beats between beat 9 and beat 10
    cleaned = clean_rr(rr, t)
    assert list(cleaned.segment) == [0] * 10 + [1] * 10
    assert cleaned.n_corrected == 0


def test_long_run_of_bad_intervals_is_removed_not_corrected() -> None:
    rr = np.full(60, 800.0)
    rr[30:36] = [300.0, 1500.0, 320.0, 1600.0, 310.0, 1700.0]
    cleaned = clean_rr(rr)
    assert cleaned.removed[30:36].all()
    assert np.isnan(cleaned.rr_ms[30:36]).all()
    assert cleaned.segment[29] != cleaned.segment[36]


def test_out_of_range_interval_splits() -> None:
    rr = np.array([800.0] * 10 + [6000.0] + [800.0] * 10)
    cleaned = clean_rr(rr)
    assert cleaned.removed[10] and cleaned.segment[10] == -1
    assert cleaned.segment[9] == 0 and cleaned.segment[11] == 1


def test_no_clean_keeps_values_exactly() -> None:
    rr = np.array([800.0, 400.0, 1200.0, 800.0, 810.0])
    cleaned = clean_rr(rr, correct=False)
    np.testing.assert_array_equal(cleaned.rr_ms, rr)
    assert cleaned.n_corrected == 0


def test_times_must_match() -> None:
    with pytest.raises(ValueError):
        clean_rr(np.ones(5) * 800, np.arange(4.0))
