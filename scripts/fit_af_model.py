"""Fit the AF detector's logistic weights on two databases (run by hand, then paste).

    .venv/bin/python scripts/fit_af_model.py [--shared ../shared/data] [--mitdb-weight 3]

Computes ``edge_gateway.dsp.rhythm.af_features`` on the 17 MIT-BIH AF Database records in
../shared/data and the 48 MIT-BIH Arrhythmia Database records in tests/data/mitdb (AFIB
positive, every other rhythm negative), fits a class-balanced logistic regression on every 5th
beat (neighbouring beats share their windows) with the Arrhythmia records weighted up (30 min
each against 10 h: without it the fit ignores their ectopy), and prints:

- leave-one-record-out (LORO) figures per database: each record scored by weights fitted
  without it;
- leave-one-database-out (LODO): fitted on one database only, scored on the other, the
  not-tuned-on figure;
- the constants to paste into rhythm.py (``_FEATURE_MEAN``, ``_FEATURE_SD``, ``_WEIGHTS``,
  ``_BIAS``).

Needs scikit-learn (a test-extra dependency through neurokit2).  Data: Moody & Mark 1983 (afdb)
and Moody & Mark 2001 (mitdb), PhysioNet, ODC-By 1.0.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_gateway.dsp import rhythm  # noqa: E402


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rt") as fh:
        rows = list(csv.DictReader(fh))
    return np.array([float(r["rr_ms"]) for r in rows]), np.array([r["rhythm"] for r in rows])


def records(shared: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for db, folder in (("afdb", shared / "rr" / "afdb"), ("mitdb", REPO / "tests/data/mitdb")):
        for path in sorted(folder.glob("*_rr.csv.gz")):
            out[f"{db}/{path.name.split('_')[0]}"] = load(path)
    return out


def decide(score: np.ndarray, features: np.ndarray) -> np.ndarray:
    """As rhythm.classify: score > AF_THRESHOLD outside the levels rule, then the run rule."""
    return rhythm.drop_short_runs((score > rhythm.AF_THRESHOLD) & ~rhythm.levels_rule(features))


def main() -> None:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--mitdb-weight", type=float, default=3.0)
    parser.add_argument("--no-loro", action="store_true", help="skip the 65 LORO fits")
    args = parser.parse_args()
    recs = records(args.shared)
    names = list(recs)
    feats = {k: rhythm.af_features(recs[k][0]) for k in names}
    every = np.concatenate([feats[k] for k in names])
    mu, sd = every.mean(axis=0), every.std(axis=0)
    z = {k: (feats[k] - mu) / sd for k in names}

    def fit(keys: list[str]) -> Any:
        x = np.concatenate([z[k][::5] for k in keys])
        y = np.concatenate([recs[k][1][::5] == "AFIB" for k in keys])
        w = np.concatenate(
            [np.full(z[k][::5].shape[0], args.mitdb_weight if k.startswith("mitdb") else 1.0)
             for k in keys]
        )
        pos, neg = w[y].sum(), w[~y].sum()
        w = np.where(y, w * (pos + neg) / (2 * pos), w * (pos + neg) / (2 * neg))
        return LogisticRegression(C=1.0, max_iter=3000).fit(x, y, sample_weight=w)

    def report(tag: str, scores: dict[str, np.ndarray], per_record: bool = False) -> None:
        for db in ("afdb", "mitdb"):
            keys = [k for k in names if k.startswith(db) and k in scores]
            decided = {k: decide(scores[k], feats[k]) for k in keys}
            if per_record:
                cells = []
                for k in keys:
                    p, y = decided[k], recs[k][1] == "AFIB"
                    if y.any() or p.any():
                        se = f"{100 * p[y].mean():.1f}" if y.any() else "–"
                        sp = f"{100 * (~p[~y]).mean():.1f}" if (~y).any() else "–"
                        cells.append(f"{k.split('/')[1]} {se}/{sp}")
                print(f"{tag} {db} per record Se/Sp %: " + ", ".join(cells))
            p = np.concatenate([decided[k] for k in keys])
            y = np.concatenate([recs[k][1] == "AFIB" for k in keys])
            print(f"{tag} {db}: Se {100 * p[y].mean():.2f} %  Sp {100 * (~p[~y]).mean():.2f} %"
                  f"  PPV {100 * y[p].mean():.2f} %")

    if not args.no_loro:
        report("LORO", {k: fit([j for j in names if j != k]).decision_function(z[k])
                        for k in names}, per_record=True)
    lodo = {}
    for db in ("afdb", "mitdb"):
        model = fit([k for k in names if not k.startswith(db)])
        lodo.update({k: model.decision_function(z[k]) for k in names if k.startswith(db)})
    report("LODO (fitted on the other database)", lodo)
    model = fit(names)
    report("fitted on both", {k: model.decision_function(z[k]) for k in names})
    print("_FEATURE_MEAN =", np.round(mu, 6).tolist())
    print("_FEATURE_SD =", np.round(sd, 6).tolist())
    print("_WEIGHTS =", np.round(model.coef_[0], 6).tolist())
    print("_BIAS =", round(float(model.intercept_[0]), 6))


if __name__ == "__main__":
    main()
