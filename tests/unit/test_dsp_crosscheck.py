"""HRV cross-checked against neurokit2 and hrv-analysis: live on 5-minute excerpts, and against
the 24-hour reference values that tests/reference/compute_reference.py computed once.

Tolerances are the issue's where the definitions match (time domain 0.1 %, Poincaré 0.5 %,
sample entropy and DFA α1 2 %, Lomb LF/HF 15 %); where they do not (pNN50's denominator in
neurokit2, hrv-analysis's SDSD with ddof=0 and its mean HR, the spectral scalings) docs/dsp.md
gives the differences in figures.
"""

from __future__ import annotations

import csv
import gzip
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_gateway.dsp.hrv import hrv

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
SHARED = ROOT.parent / "shared" / "data"
REFERENCE = ROOT / "tests" / "reference" / "hrv_24h_reference.json"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason="../shared/data (the public records) is not beside this clone"
)


def _anchors() -> tuple[Any, Any]:
    if not hasattr(np, "trapz"):  # hrv-analysis 1.0.5 calls np.trapz, gone from NumPy 2.4
        np.trapz = np.trapezoid  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import hrvanalysis
        import neurokit2

    return neurokit2, hrvanalysis


def _f1o02() -> np.ndarray:
    with gzip.open(DATA / "f1o02_rr.csv.gz", "rt") as fh:
        return np.array([float(r["rr_ms"]) for r in csv.DictReader(fh)])


def _excerpts() -> list[np.ndarray]:
    rr = _f1o02()
    # Three 5-minute stretches of f1o02 (beats 300–600 have no ectopic beat; 100–400 hold two
    # ectopic beats and are compared raw, as given).
    return [rr[300:600], rr[3000:3290], rr[100:400]]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_five_minutes_against_neurokit2_and_hrv_analysis(index: int) -> None:
    nk, ha = _anchors()
    rr = _excerpts()[index]
    ours = hrv(rr, clean=False)
    peaks = np.concatenate(([0], np.cumsum(rr))).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        td = nk.hrv_time(peaks, sampling_rate=1000)
        ha_time = ha.get_time_domain_features(list(rr))
        ha_poincare = ha.get_poincare_plot_features(list(rr))
        ha_lomb = ha.get_frequency_domain_features(list(rr), method="lomb")
        r = 0.2 * float(np.std(rr, ddof=1))
        nk_sampen = nk.entropy_sample(rr, dimension=2, tolerance=r)[0]
        nk_alpha1 = nk.fractal_dfa(rr, scale=np.arange(4, 17), overlap=True)[0]

    def close(value: float | None, expected: float, rel: float) -> None:
        assert value is not None
        assert value == pytest.approx(expected, rel=rel)

    close(ours.mean_rr_ms, float(td["HRV_MeanNN"].iloc[0]), 1e-3)
    close(ours.sdnn_ms, float(td["HRV_SDNN"].iloc[0]), 1e-3)
    close(ours.rmssd_ms, float(td["HRV_RMSSD"].iloc[0]), 1e-3)
    close(ours.sdsd_ms, float(td["HRV_SDSD"].iloc[0]), 1e-3)
    close(ours.cvnn, float(td["HRV_CVNN"].iloc[0]), 1e-3)
    # hrv-analysis divides by the N − 1 differences, as we do (neurokit2 by N).
    assert ours.pnn50_pct == pytest.approx(ha_time["pnni_50"], abs=1e-9)
    assert ours.pnn20_pct == pytest.approx(ha_time["pnni_20"], abs=1e-9)
    close(ours.sd1_ms, float(ha_poincare["sd1"]), 5e-3)
    close(ours.sd2_ms, float(ha_poincare["sd2"]), 5e-3)
    close(ours.sampen, float(nk_sampen), 0.02)
    close(ours.dfa_alpha1, float(nk_alpha1), 0.02)
    close(ours.lf_hf_lomb, float(ha_lomb["lf_hf_ratio"]), 0.15)


def test_cleaning_changes_only_what_it_should() -> None:
    rr = _excerpts()[2]  # holds ectopic beats 127 and 227 of the record
    raw, cleaned = hrv(rr, clean=False), hrv(rr)
    assert cleaned.n_corrected == 4
    assert cleaned.rmssd_ms is not None and raw.rmssd_ms is not None
    assert cleaned.rmssd_ms < 0.5 * raw.rmssd_ms
    assert cleaned.mean_rr_ms == pytest.approx(raw.mean_rr_ms, rel=0.01)


def _reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE.read_text())
    return data


@needs_shared
@pytest.mark.parametrize("record", sorted(_reference()["records"]))
def test_24h_against_reference_values(record: str) -> None:
    ref = _reference()["records"][record]
    with gzip.open(SHARED / "rr" / f"{record}_rr.csv.gz", "rt") as fh:
        rr = np.array([float(r["rr_ms"]) for r in csv.DictReader(fh)])
    ours = hrv(rr, clean=False)
    assert ref["n"] == rr.size
    # neurokit2 got the series through integer sample indices at 1000 Hz, so intervals that are
    # not whole milliseconds (1/128 s in nsr2db and chf2db) are rounded: 0.1 % absorbs it.
    for key, nk_key in [("mean_rr_ms", "nk_MeanNN"), ("sdnn_ms", "nk_SDNN"),
                        ("rmssd_ms", "nk_RMSSD"), ("sdsd_ms", "nk_SDSD")]:
        assert getattr(ours, key) == pytest.approx(ref[nk_key], rel=1e-3), key
    assert ours.pnn50_pct == pytest.approx(ref["ha_pnni_50"], rel=1e-3)
    assert ours.pnn20_pct == pytest.approx(ref["ha_pnni_20"], rel=1e-3)
    for key, ha_key in [("sd1_ms", "ha_sd1"), ("sd2_ms", "ha_sd2")]:
        assert getattr(ours, key) == pytest.approx(ref[ha_key], rel=5e-3), key
    assert ours.sampen == pytest.approx(ref["nk_SampEn"], rel=0.02)
    assert ours.dfa_alpha1 == pytest.approx(ref["nk_DFA_alpha1"], rel=0.02)
    assert ours.dfa_alpha2 == pytest.approx(ref["nk_DFA_alpha2"], rel=0.02)
    # Lomb on beat times with a grid fine enough for the record (2 samples per 1/T): equal
    # to hrv-analysis's astropy autopower (5 per 1/T) to 1 % (issue 13: it was -26 % to +10 %
    # on the fixed 0.001 Hz grid, which the old reference value astropy_fixed_grid_LFHF used).
    assert ours.lf_hf_lomb == pytest.approx(ref["ha_lomb_lf_hf_ratio"], rel=0.01)


def test_f1o02_whole_record_lomb_lf_hf() -> None:
    """Issue 13: whole-record Lomb LF/HF of Fantasia f1o02 was 0.186 (0.001 Hz grid);
    hrv-analysis gives 0.2566 and NeuroKit2 0.332.  With the grid at 2 samples per 1/T we give
    0.2567; NeuroKit2's value is the periodogram of the RR series interpolated (quadratic,
    100 Hz) — another estimand, 29 % from hrv-analysis (docs/dsp.md)."""
    _, ha = _anchors()
    rr = _f1o02()
    ours = hrv(rr, clean=False).lf_hf_lomb
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = float(ha.get_frequency_domain_features(list(rr), method="lomb")["lf_hf_ratio"])
    assert ref == pytest.approx(0.2566, abs=1e-4)
    assert ours == pytest.approx(ref, rel=0.01)
