"""On-device DSP: speed and memory against neurokit2, and AF detection accuracy.

    .venv/bin/python benchmarks/bench_dsp.py [--no-neurokit]

Every figure is printed as ``name: value unit (ratio X vs baseline)`` with its baseline measured
in the same run:

1. Full HRV on a 24-hour series (nsr2db nsr001, 106,459 beats): ours in process (time and peak
   RSS of a fresh interpreter) against neurokit2 doing the same work on the same series
   (hrv_time, hrv_frequency, entropy_sample, fractal_dfa for α1 and α2).  Targets: ≤ 1 s,
   ≤ 150 MB.  ``--no-neurokit`` skips the ~45 s baseline (then no ratio is printed).
2. The whole ``edge-gateway analyze hrv`` command with default cleaning on that file (target
   ≤ 2 s), against the neurokit2 time of 1.
3. AF detection per beat on the afdb records in ../shared/data and the mitdb records in
   tests/data/mitdb (AFIB positive, everything else negative, pooled per database), the
   streaming decision delay on afdb (the detector fed the beats up to onset + d, for the
   episodes of ≥ 120 beats), the false AF burden on the 24-hour sinus records, and the
   cost per beat;
   baseline: a plain irregularity threshold (median |ΔRR|/RR over 8 beats > 0.08) in the same
   run, the detector the issue says reaches Sp 87–89 %.
4. A 5-minute window end to end through the daemon's DspScheduler: RR readings in a real store →
   query → arrays → HRV and rhythm Summaries → summary and outbox rows committed (target
   < 20 ms); baseline neurokit2 hrv_time + hrv_frequency on the same 5 minutes.
Data: PhysioNet nsr2db and afdb (ODC-By 1.0); see ../shared/data/README.md.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
NSR = SHARED / "rr" / "nsr2db" / "nsr001_rr.csv.gz"


def line(name: str, value: float, unit: str, baseline: float | None = None) -> None:
    ratio = f" (ratio {value / baseline:.3g} vs baseline)" if baseline else ""
    print(f"{name}: {value:.4g} {unit}{ratio}", flush=True)


def load(path: Path) -> tuple[np.ndarray, list[str]]:
    with gzip.open(path, "rt") as fh:
        rows = list(csv.DictReader(fh))
    return np.array([float(r["rr_ms"]) for r in rows]), [r["rhythm"] for r in rows]


OURS = """
import csv, gzip, json, resource, sys, time
import numpy as np
from edge_gateway.dsp.hrv import hrv
rr = np.array([float(r["rr_ms"]) for r in csv.DictReader(gzip.open(sys.argv[1], "rt"))])
hrv(rr[:1000])  # imports and first-call costs are not the series' cost
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
hrv(rr)
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"s": dt, "peak_mb": peak / 1024, "before_mb": before / 1024}))
"""

NEUROKIT = """
import csv, gzip, json, resource, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
import neurokit2 as nk
rr = np.array([float(r["rr_ms"]) for r in csv.DictReader(gzip.open(sys.argv[1], "rt"))])
peaks = np.concatenate(([0], np.cumsum(rr))).astype(np.int64)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
nk.hrv_time(peaks, sampling_rate=1000)
nk.hrv_frequency(peaks, sampling_rate=1000)
nk.entropy_sample(rr, dimension=2, tolerance=0.2 * np.std(rr, ddof=1))
nk.fractal_dfa(rr, scale=np.arange(4, 17), overlap=True)
nk.fractal_dfa(rr, scale=np.arange(16, 65), overlap=True)
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"s": dt, "peak_mb": peak / 1024, "before_mb": before / 1024}))
"""


def run_json(code: str, *args: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True,
                         text=True, cwd=REPO)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench_full_hrv(with_neurokit: bool) -> float | None:
    ours = run_json(OURS, str(NSR))
    base = run_json(NEUROKIT, str(NSR)) if with_neurokit else None
    line("hrv_24h_full_time", ours["s"], "s", base["s"] if base else None)
    line("hrv_24h_peak_rss", ours["peak_mb"], "MB", base["peak_mb"] if base else None)
    line("hrv_24h_rss_growth", ours["peak_mb"] - ours["before_mb"], "MB",
         (base["peak_mb"] - base["before_mb"]) if base else None)
    return base["s"] if base else None


def bench_cli(neurokit_s: float | None) -> None:
    exe = REPO / ".venv" / "bin" / "edge-gateway"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "edge_gateway.cli"]
    t0 = time.perf_counter()
    subprocess.run([*cmd, "analyze", "hrv", str(NSR), "--json"], check=True,
                   capture_output=True, cwd=REPO)
    line("analyze_hrv_cli_24h", time.perf_counter() - t0, "s", neurokit_s)


def plain_irregularity(rr: np.ndarray) -> np.ndarray:
    from scipy.ndimage import median_filter

    rel = np.abs(np.diff(rr, prepend=rr[0])) / rr
    return np.asarray(median_filter(rel, size=8, mode="nearest") > 0.08)


def streaming_delay(rr: np.ndarray, onset: int, limit: int = 120) -> int:
    """Beats after an AF onset until the detector, fed the beats so far, flags any of them."""
    from edge_gateway.dsp.rhythm import detect_af

    lo = onset - 600  # ten minutes of history, as the scheduler's lead gives it
    for d in range(0, limit + 1, 2):
        if detect_af(rr[lo : onset + d + 1])[onset - lo :].any():
            return d
    return limit


def bench_af() -> None:
    from edge_gateway.dsp.rhythm import detect_af, true_runs

    preds, bases, truths = [], [], []
    delays: list[int] = []
    spent = 0.0
    beats = 0
    for path in sorted((SHARED / "rr" / "afdb").glob("*_rr.csv.gz")):
        rr, rhythm = load(path)
        truth = np.array([r == "AFIB" for r in rhythm])
        t0 = time.perf_counter()
        af = detect_af(rr)
        spent += time.perf_counter() - t0
        beats += rr.size
        preds.append(af)
        bases.append(plain_irregularity(rr))
        truths.append(truth)
        for start, end in true_runs(truth):
            if end - start + 1 >= 120 and start >= 600:
                delays.append(streaming_delay(rr, start))
    p, b, y = np.concatenate(preds), np.concatenate(bases), np.concatenate(truths)
    se, sp = 100 * p[y].mean(), 100 * (~p[~y]).mean()
    bse, bsp = 100 * b[y].mean(), 100 * (~b[~y]).mean()
    line("af_sensitivity_per_beat", se, "%", bse)
    line("af_specificity_per_beat", sp, "%", bsp)
    delay = np.array(delays)
    line("af_streaming_delay_median", float(np.median(delay)), "beats")
    line("af_streaming_delay_p90", float(np.percentile(delay, 90)), "beats")
    line("af_cost_per_beat", 1e6 * spent / beats, "us")
    # The second database (MIT-BIH Arrhythmia, tests/data/mitdb): ectopy-rich, 30 min each.
    preds, bases, truths = [], [], []
    for path in sorted((REPO / "tests" / "data" / "mitdb").glob("*_rr.csv.gz")):
        rr, rhythm = load(path)
        truths.append(np.array([r == "AFIB" for r in rhythm]))
        preds.append(detect_af(rr))
        bases.append(plain_irregularity(rr))
    p, b, y = np.concatenate(preds), np.concatenate(bases), np.concatenate(truths)
    line("af_sensitivity_per_beat_mitdb", 100 * p[y].mean(), "%", 100 * b[y].mean())
    line("af_specificity_per_beat_mitdb", 100 * (~p[~y]).mean(), "%", 100 * (~b[~y]).mean())
    for name in ("nsr2db/nsr001", "nsr2db/nsr002"):
        rr, _ = load(SHARED / "rr" / f"{name}_rr.csv.gz")
        line(f"false_af_burden_{name.split('/')[1]}", 100 * detect_af(rr).mean(), "%",
             100 * plain_irregularity(rr).mean())


def bench_window(with_neurokit: bool) -> None:
    """The daemon's real path: RR readings in a real store -> DspScheduler -> Summary rows
    (HRV and rhythm of one 5-minute window, with their outbox rows, in one transaction)."""
    import asyncio
    import tempfile
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from zoneinfo import ZoneInfo

    from edge_gateway.reading import Reading, iso
    from edge_gateway.runtime.dsp_scheduler import DspScheduler
    from edge_gateway.store import Store

    rr, _ = load(NSR)
    rr = rr[:20_000]  # about 4.5 hours of beats
    start = datetime(2026, 11, 20, tzinfo=UTC)
    t = np.cumsum(rr) / 1000.0
    tmp = Path(tempfile.mkdtemp())
    store = Store.open(tmp / "bench.db")
    store.add_patient("p1")
    store.add_readings(
        Reading("strap", "2a37", "rr_interval", float(v), "ms",
                start + timedelta(seconds=float(s)), start + timedelta(seconds=float(s)),
                f"rx:{i}", patient_id="p1")
        for i, (v, s) in enumerate(zip(rr, t, strict=True)))
    sched = DspScheduler(store, ZoneInfo("UTC"), lag=timedelta(0))
    sched.jobs = [j for j in sched.jobs if j.name in ("hrv", "rhythm")]
    runs = []
    arr = None
    for k in range(20):
        w0 = start + timedelta(hours=1, minutes=5 * k)
        w1 = w0 + timedelta(minutes=5)
        for job in ("hrv", "rhythm"):
            store.set_meta(f"dsp.{job}.p1", iso(w0) or "")
        t0 = time.perf_counter()
        made = asyncio.run(sched.run_once(w1))
        runs.append(time.perf_counter() - t0)
        assert made == 2, made
        arr = rr[(t >= (w0 - start).total_seconds()) & (t < (w1 - start).total_seconds())]
    store.close()
    base = None
    if with_neurokit:
        import warnings

        warnings.simplefilter("ignore")
        import neurokit2 as nk

        assert arr is not None
        w = arr
        peaks = np.concatenate(([0], np.cumsum(w))).astype(np.int64)
        t0 = time.perf_counter()
        nk.hrv_time(peaks, sampling_rate=1000)
        nk.hrv_frequency(peaks, sampling_rate=1000)
        base = time.perf_counter() - t0
    line("window_5min_end_to_end_median", 1000 * float(np.median(runs[1:])), "ms",
         1000 * base if base else None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-neurokit", action="store_true", help="skip the slow baselines")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print("bench_dsp: ../shared/data is not beside this clone; nothing to measure")
        return
    nk_s = bench_full_hrv(not args.no_neurokit)
    bench_cli(nk_s)
    bench_af()
    bench_window(not args.no_neurokit)


if __name__ == "__main__":
    main()
