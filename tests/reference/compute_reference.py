"""Compute the 24-hour HRV reference values once with neurokit2 and hrv-analysis.

    .venv/bin/python tests/reference/compute_reference.py [--shared ../shared/data]

Writes tests/reference/hrv_24h_reference.json, which tests/unit/test_dsp_crosscheck.py compares
our results with (neurokit2 on 24 hours takes minutes and gigabytes, so it is not run live).
Every series is used exactly as published (no cleaning): our side runs with ``clean=False``.
Records: nsr2db nsr001/nsr002 and chf2db chf201 (PhysioNet, ODC-By 1.0), rr-healthy 000
(Irurzun et al. 2021, PhysioNet).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
OUT = Path(__file__).with_name("hrv_24h_reference.json")
RECORDS = ("nsr2db/nsr001", "nsr2db/nsr002", "chf2db/chf201", "rr-healthy/000")


def load(path: Path) -> np.ndarray:
    with gzip.open(path, "rt") as fh:
        return np.array([float(r["rr_ms"]) for r in csv.DictReader(fh)])


def reference(rr: np.ndarray) -> dict[str, Any]:
    if not hasattr(np, "trapz"):  # hrv-analysis 1.0.5 calls np.trapz, gone from NumPy 2.4
        np.trapz = np.trapezoid  # type: ignore[attr-defined]
    import hrvanalysis as ha
    import neurokit2 as nk

    out: dict[str, Any] = {"n": int(rr.size)}
    timings: dict[str, float] = {}
    peaks = np.concatenate(([0], np.cumsum(rr))).astype(np.int64)  # 1000 Hz sample indices
    t0 = time.perf_counter()
    td = nk.hrv_time(peaks, sampling_rate=1000)
    timings["nk_hrv_time_s"] = time.perf_counter() - t0
    for key in ("MeanNN", "SDNN", "RMSSD", "SDSD", "pNN50", "pNN20", "CVNN"):
        out[f"nk_{key}"] = float(td[f"HRV_{key}"].iloc[0])
    t0 = time.perf_counter()
    r = 0.2 * float(np.std(rr, ddof=1))
    out["nk_SampEn"] = float(nk.entropy_sample(rr, dimension=2, tolerance=r)[0])
    timings["nk_entropy_sample_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["nk_DFA_alpha1"] = float(nk.fractal_dfa(rr, scale=np.arange(4, 17), overlap=True)[0])
    out["nk_DFA_alpha2"] = float(nk.fractal_dfa(rr, scale=np.arange(16, 65), overlap=True)[0])
    timings["nk_fractal_dfa_s"] = time.perf_counter() - t0
    sdsd = float(np.std(np.diff(rr), ddof=1))
    sdnn = float(np.std(rr, ddof=1))
    # neurokit2's hrv_nonlinear Poincaré formulas (its full hrv_nonlinear is quadratic in time).
    out["nk_SD1"] = float(np.sqrt(0.5 * sdsd**2))
    out["nk_SD2"] = float(np.sqrt(2 * sdnn**2 - 0.5 * sdsd**2))
    t0 = time.perf_counter()
    fd = nk.hrv_frequency(peaks, sampling_rate=1000, psd_method="welch")
    timings["nk_hrv_frequency_s"] = time.perf_counter() - t0
    for key in ("VLF", "LF", "HF", "LFHF"):
        out[f"nk_welch_{key}"] = float(fd[f"HRV_{key}"].iloc[0])
    nn = list(rr)
    t0 = time.perf_counter()
    for key, value in ha.get_time_domain_features(nn).items():
        out[f"ha_{key}"] = float(value)
    for key, value in ha.get_poincare_plot_features(nn).items():
        out[f"ha_{key}"] = float(value)
    for key, value in ha.get_frequency_domain_features(nn, method="lomb").items():
        out[f"ha_lomb_{key}"] = float(value)
    timings["ha_s"] = time.perf_counter() - t0
    # The same periodogram on OUR fixed grid (0.003–0.400 Hz, 0.001 Hz) with astropy, the
    # library hrv-analysis uses: classical Lomb–Scargle (no floating mean) of the mean-removed
    # series at the beat times.  hrv-analysis itself integrates astropy's much denser automatic
    # grid with the trapezoid rule, which on 24 hours is not the same estimate.
    from astropy.timeseries import LombScargle

    beat_t = np.cumsum(rr) / 1000.0
    grid = np.arange(398) * 0.001 + 0.003
    power = LombScargle(beat_t, rr - rr.mean(), fit_mean=False, center_data=True,
                        normalization="psd").power(grid)
    lf = float(power[(grid >= 0.04) & (grid < 0.15)].sum())
    hf = float(power[(grid >= 0.15) & (grid < 0.40)].sum())
    out["astropy_fixed_grid_LFHF"] = lf / hf
    out["timings"] = timings
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    import hrvanalysis
    import neurokit2

    result: dict[str, Any] = {
        "generated_by": "tests/reference/compute_reference.py",
        "neurokit2": neurokit2.__version__,
        "hrv-analysis": getattr(hrvanalysis, "__version__", "1.0.5"),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "records": {},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in RECORDS:
            rr = load(args.shared / "rr" / f"{name}_rr.csv.gz")
            print(name, rr.size, flush=True)
            result["records"][name] = reference(rr)
    OUT.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
