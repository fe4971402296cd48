"""Print the AF detector's figures on both databases (the numbers in docs/dsp.md).

    .venv/bin/python scripts/eval_af.py [--shared ../shared/data] [--no-delay]

For the shipped weights (fitted on both databases, so these are tuned-on figures; the
not-tuned-on ones come from scripts/fit_af_model.py's leave-one-record-out and
leave-one-database-out runs):

- per record and pooled, per beat: Se, Sp, PPV (AFIB positive, every other rhythm negative);
- the streaming onset delay: beats after an AF onset until the detector, fed the beats so far
  (up to 600 beats of history), flags any beat of the episode; episodes of ≥ 60 beats;
- mitdb per rhythm: the share of beats called AF and called irregular-not-AF (the mimics);
- the false AF burden on the 24-hour sinus records of ../shared/data;
- random strips of 20–90 beats (all AF or all non-AF) flagged when > 50 % of beats are AF;
- the time for 100,000 beats.

Data: afdb (../shared/data/rr/afdb) and mitdb (tests/data/mitdb), PhysioNet, ODC-By 1.0.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_gateway.dsp import rhythm  # noqa: E402

SINUS = ("nsr2db/nsr001", "nsr2db/nsr002", "chf2db/chf201", "rr-healthy/000", "rr-healthy/007")


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rt") as fh:
        rows = list(csv.DictReader(fh))
    return np.array([float(r["rr_ms"]) for r in rows]), np.array([r["rhythm"] for r in rows])


def onset_delays(rr: np.ndarray, truth: np.ndarray, limit: int = 120) -> list[int]:
    out = []
    for start, end in rhythm.true_runs(truth):
        if end - start + 1 < 60 or start < 60:
            continue
        lo = max(0, start - 600)
        for d in range(0, limit + 1, 2):
            if rhythm.detect_af(rr[lo : start + d + 1])[start - lo :].any():
                break
        out.append(d)
    return out


def strips(recs: list[tuple[np.ndarray, np.ndarray]], length: int) -> tuple[str, str]:
    """Share of random all-AF / all-non-AF strips of ``length`` beats flagged (> 50 % AF)."""
    rng = np.random.default_rng(1)
    hit: dict[bool, list[bool]] = {True: [], False: []}
    for _ in range(600):
        rr, lab = recs[int(rng.integers(len(recs)))]
        if rr.size <= length:
            continue
        s = int(rng.integers(rr.size - length))
        is_af = lab[s : s + length] == "AFIB"
        if is_af.all() or not is_af.any():
            hit[bool(is_af.all())].append(rhythm.detect_af(rr[s : s + length]).mean() > 0.5)
    return pct(np.array(hit[True])), pct(np.array(hit[False]))


def pct(x: np.ndarray) -> str:
    return f"{100 * float(np.mean(x)):.1f}" if x.size else "–"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--no-delay", action="store_true")
    args = parser.parse_args()
    folders = {"afdb": args.shared / "rr" / "afdb", "mitdb": REPO / "tests" / "data" / "mitdb"}
    for db, folder in folders.items():
        preds, truths, labels, irregs, delays = [], [], [], [], []
        cells = []
        for path in sorted(folder.glob("*_rr.csv.gz")):
            rr, lab = load(path)
            af, irregular = rhythm.classify(rr)
            y = lab == "AFIB"
            preds.append(af)
            truths.append(y)
            labels.append(lab)
            irregs.append(irregular)
            if not args.no_delay:
                delays += onset_delays(rr, y)
            if y.any() or af.any():
                cells.append(f"{path.name.split('_')[0]} {pct(af[y])}/{pct(~af[~y])}")
        p, y = np.concatenate(preds), np.concatenate(truths)
        recs = [load(path) for path in sorted(folder.glob("*_rr.csv.gz"))]
        for length in (20, 30, 45, 60, 90):
            af_pct, non_pct = strips(recs, length)
            print(f"{db} strips of {length} beats flagged: AF {af_pct} %, non-AF {non_pct} %")
        print(f"{db} pooled: Se {pct(p[y])} %  Sp {pct(~p[~y])} %  PPV {pct(y[p])} %  "
              f"({y.sum()} AF beats of {y.size})")
        print(f"{db} per record Se/Sp % (records with AF or a false flag): " + ", ".join(cells))
        if delays:
            d = np.array(delays)
            print(f"{db} onset delay: median {np.median(d):.0f} beats, 90th percentile "
                  f"{np.percentile(d, 90):.0f} ({d.size} episodes of >= 60 beats)")
        if db == "mitdb":
            lab, irr = np.concatenate(labels), np.concatenate(irregs)
            for name in np.unique(lab):
                m = lab == name
                print(f"  mitdb rhythm {name:5s} {m.sum():6d} beats: AF {pct(p[m])} %, "
                      f"irregular-not-AF {pct(irr[m])} %")
    for name in SINUS:
        path = args.shared / "rr" / f"{name}_rr.csv.gz"
        if path.exists():
            rr, _ = load(path)
            af, irregular = rhythm.classify(rr)
            print(f"false AF burden {name}: {pct(af)} % (irregular-not-AF {pct(irregular)} %)")
    rr = np.random.default_rng(0).uniform(400, 1000, 100_000)
    t0 = time.perf_counter()
    rhythm.classify(rr)
    print(f"100,000 beats: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
