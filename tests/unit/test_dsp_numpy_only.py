"""The daemon's analysis path is numpy only (issue 14): the running median and the cubic spline
that replaced scipy.ndimage and scipy.interpolate give scipy's results, on random data and on
every shared record, and running every analysis through the scheduler never imports scipy.

scipy stays a test dependency: here it is the reference the numpy code is held to.
"""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy.interpolate import CubicSpline
from scipy.ndimage import median_filter

from edge_gateway.dsp import spectral
from edge_gateway.dsp.clean import (
    REF_HALF_WIDTH,
    SPREAD_WINDOW,
    THRESHOLD_FLOOR,
    THRESHOLD_SPREAD,
    clean_rr,
    detect_ectopic,
    moving_median,
)
from edge_gateway.dsp.spectral import cubic_spline, welch_powers

ROOT = Path(__file__).resolve().parents[2]
RR = ROOT.parent / "shared" / "data" / "rr"
RECORDS = sorted([*RR.glob("*/*_rr.csv.gz"), *RR.glob("*/*_rr.csv")])


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        rows = list(csv.DictReader(fh))
    return (np.array([float(r["rr_ms"]) for r in rows]),
            np.array([float(r["t_s"]) for r in rows]))


def test_every_shared_record_is_found() -> None:
    # The record tests below are parametrised by this list: an empty list would pass vacuously.
    assert len(RECORDS) >= 24, f"../shared/data/rr holds {len(RECORDS)} records"


# ------------------------------------------------------------------------ running median
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 10, 11, 90, 91, 92, 500, 9001])
def test_moving_median_equals_scipy_mirror_mode(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.normal(800.0, 80.0, n)
    x[rng.random(n) < 0.2] = 800.0  # ties, as whole-millisecond RR values have
    for size in sorted({1, 3, 5, 11, 91, n if n % 2 else n - 1} - {0}):
        if size <= n:
            assert np.array_equal(moving_median(x, size),
                                  median_filter(x, size=size, mode="mirror")), size


def test_moving_median_mirrors_about_the_end_value() -> None:
    # d c b | a b c d | c b a: the end value itself is not repeated.
    x = np.array([10.0, 0.0, 5.0, 7.0, 1.0])
    assert moving_median(x, 3).tolist() == [0.0, 5.0, 5.0, 5.0, 7.0]
    assert moving_median(x, 5).tolist() == [5.0, 5.0, 5.0, 5.0, 5.0]


@pytest.mark.parametrize("size", [0, 2, 7])
def test_moving_median_rejects_even_or_oversized_windows(size: int) -> None:
    with pytest.raises(ValueError, match="median window"):
        moving_median(np.arange(5.0), size)


def _detect_ectopic_with_scipy(rr: np.ndarray) -> np.ndarray:
    """detect_ectopic as it was written on scipy.ndimage (the reference for the records)."""
    n = rr.size
    good = np.isfinite(rr)
    idx = np.flatnonzero(good)
    filled = np.interp(np.arange(n), idx, rr[idx])
    size = min(2 * REF_HALF_WIDTH + 1, n if n % 2 else n - 1)
    ref = median_filter(filled, size=size, mode="mirror")
    dev = (filled - ref) / ref
    spread_size = min(SPREAD_WINDOW, n if n % 2 else n - 1)
    spread = 1.4826 * median_filter(np.abs(dev), size=spread_size, mode="mirror")
    thr = np.maximum(THRESHOLD_FLOOR, THRESHOLD_SPREAD * spread)
    flagged = np.abs(dev) > thr
    short = dev < -thr
    after = np.zeros(n, dtype=bool)
    after[1:] = short[:-1] & (dev[1:] > 0.5 * thr[1:])
    return np.asarray((flagged | after) & good)


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.name.split("_")[0])
def test_ectopic_flags_identical_on_every_record(path: Path) -> None:
    rr, _ = _load(path)
    probe = np.where((rr < 250.0) | (rr > 2500.0), np.nan, rr)
    ours = detect_ectopic(probe)
    assert np.array_equal(ours, _detect_ectopic_with_scipy(probe))
    # Both paths see the same series; some records have no ectopy, most have some.
    assert ours.size == rr.size


# -------------------------------------------------------------------------- cubic spline
@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7, 33, 1000, 20_001])
def test_cubic_spline_equals_scipy_not_a_knot(n: int) -> None:
    rng = np.random.default_rng(100 + n)
    for spread in (1.2, 50.0):  # spacing ratios as beats have, and far beyond
        x = np.cumsum(rng.uniform(1.0, spread, n))
        y = rng.normal(800.0, 60.0, n)
        at = np.linspace(x[0] - 0.5, x[-1] + 0.5, 3 * n + 11)  # includes both extrapolations
        ours = cubic_spline(x, y, at)
        ref = CubicSpline(x, y)(at)
        assert np.max(np.abs(ours - ref)) <= 1e-9 * np.max(np.abs(ref)), (n, spread)
        # It interpolates: the knots come back.
        assert np.allclose(cubic_spline(x, y, x), y, rtol=0, atol=1e-9)


def test_cubic_spline_reproduces_a_cubic() -> None:
    # Not-a-knot reproduces any cubic exactly (a natural spline would not: its ends are flat).
    x = np.array([0.0, 0.7, 1.9, 2.2, 3.5, 4.0, 5.3])
    y = 2.0 * x**3 - 3.0 * x**2 + x - 4.0
    at = np.linspace(0.0, 5.3, 50)
    assert np.allclose(cubic_spline(x, y, at), 2.0 * at**3 - 3.0 * at**2 + at - 4.0,
                       rtol=0, atol=1e-9)


def test_cubic_spline_rejects_unsorted_or_short_input() -> None:
    with pytest.raises(ValueError, match="spline"):
        cubic_spline(np.array([0.0, 2.0, 1.0]), np.zeros(3), np.zeros(1))
    with pytest.raises(ValueError, match="spline"):
        cubic_spline(np.array([0.0]), np.zeros(1), np.zeros(1))


def _welch_powers_with_scipy(rr: np.ndarray, seg: np.ndarray,
                             times: np.ndarray | None) -> spectral.BandPowers:
    """welch_powers with scipy's CubicSpline, by swapping the one function it calls."""
    original = spectral.cubic_spline
    spectral.cubic_spline = lambda x, y, at: CubicSpline(x, y)(at)  # type: ignore[assignment]
    try:
        return welch_powers(rr, seg, times)
    finally:
        spectral.cubic_spline = original


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.name.split("_")[0])
def test_welch_band_powers_match_scipy_on_every_record(path: Path) -> None:
    rr, t = _load(path)
    # The spline itself on the record's beat times, at the 4 Hz grid.
    grid = np.arange(t[0], t[-1], 1.0 / spectral.RESAMPLE_HZ)
    ref_y = CubicSpline(t, rr)(grid)
    assert np.max(np.abs(cubic_spline(t, rr, grid) - ref_y)) <= 1e-9 * np.max(np.abs(ref_y))
    checked = 0
    for times in (None, t):
        cleaned = clean_rr(rr, times)
        ours = welch_powers(cleaned.rr_ms, cleaned.segment, times)
        ref = _welch_powers_with_scipy(cleaned.rr_ms, cleaned.segment, times)
        for key in ("vlf_ms2", "lf_ms2", "hf_ms2"):
            a, b = getattr(ours, key), getattr(ref, key)
            assert (a is None) == (b is None), key
            if a is not None:
                assert a == pytest.approx(b, rel=1e-9), key
                checked += 1
    if t[-1] - t[0] >= 2 * spectral.WELCH_WINDOW_S:  # (mitdb 100s is 57 s: no Welch at all)
        assert checked >= 4


def test_the_swap_in_the_reference_is_real() -> None:
    # The record test compares two different splines: a wrong spline must change the powers.
    rr, t = _load(RECORDS[0])
    cleaned = clean_rr(rr[:2000], t[:2000])
    original = spectral.cubic_spline
    spectral.cubic_spline = lambda x, y, at: np.interp(at, x, y)  # type: ignore[assignment]
    try:
        linear = welch_powers(cleaned.rr_ms, cleaned.segment, t[:2000])
    finally:
        spectral.cubic_spline = original
    ours = welch_powers(cleaned.rr_ms, cleaned.segment, t[:2000])
    assert ours.hf_ms2 is not None and linear.hf_ms2 is not None
    assert abs(ours.hf_ms2 - linear.hf_ms2) > 1e-6 * ours.hf_ms2


# -------------------------------------------------------------- the daemon's import set
SCHEDULER_RUN = textwrap.dedent("""
    import asyncio, json, sys
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from zoneinfo import ZoneInfo

    import numpy as np

    from edge_gateway.reading import Reading
    from edge_gateway.runtime.dsp_scheduler import DspScheduler
    from edge_gateway.store import Store

    store = Store.open(Path(sys.argv[1]) / "g.db")
    store.add_patient("p1")
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    rng = np.random.default_rng(7)
    readings = []

    def add(kind, value, unit, at, key):
        readings.append(Reading("dev-" + kind[:3], "2a00", kind, float(value), unit, at, at,
                                key, patient_id="p1"))

    # 15 minutes of beats yesterday: sinus rhythm with breathing, then an AF-like stretch.
    t = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    for i in range(1100):
        rr = 850 + 40 * np.sin(i / 3.0) if i < 600 else rng.uniform(450, 1100)
        t += timedelta(milliseconds=float(rr))
        add("rr_interval", round(rr), "ms", t, f"rx:{i}")
    # A day of CGM every 5 minutes and a week of cuff readings, earlier.
    day = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
    for i in range(288):
        add("cgm_glucose", 120 + 50 * np.sin(i / 30.0), "mg/dL",
            day + timedelta(minutes=5 * i), f"seq:{i}")
    for i in range(10):
        at = datetime(2026, 11, 17, 7, 0, tzinfo=UTC) + timedelta(hours=12 * i)
        add("bp_systolic", 130 + i, "mmHg", at, f"bp:{i}")
        add("bp_diastolic", 82, "mmHg", at, f"bp:{i}")
        add("pulse_rate", 70, "/min", at, f"bp:{i}")
    store.add_readings(readings)
    made = asyncio.run(DspScheduler(store, ZoneInfo("UTC")).run_once(now))
    kinds = sorted({k for (k,) in store.conn.execute("SELECT kind FROM summaries")})
    print(json.dumps({"made": made, "kinds": kinds,
                      "scipy": sorted(m for m in sys.modules if m.split(".")[0] == "scipy"),
                      "numpy": "numpy" in sys.modules}))
""")


def test_every_analysis_runs_without_importing_scipy(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", SCHEDULER_RUN, str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # Every analysis ran (HRV, rhythm, glucose, BP), so their code paths were all imported.
    for kind in ("hrv", "rhythm", "hrv_daily", "rhythm_daily", "glucose_daily", "bp_weekly"):
        assert kind in result["kinds"], result["kinds"]
    assert result["numpy"]  # the check below sees the subprocess's modules
    assert result["scipy"] == []
