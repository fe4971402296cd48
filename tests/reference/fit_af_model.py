"""Fit the AF detector's logistic weights on the public afdb records (run once, by hand).

    .venv/bin/python tests/reference/fit_af_model.py [--shared ../shared/data]

Computes ``edge_gateway.dsp.rhythm.af_features`` on every afdb record in shared/data, reports
leave-one-record-out (LORO) sensitivity / specificity per beat (pooled; AFIB positive, every
other rhythm negative) so the figure is not a fit to the records themselves, then fits on all
records and prints the constants to paste into rhythm.py.  Needs scikit-learn (a dependency of
the test extra's neurokit2).  Data: MIT-BIH AF Database (Moody & Mark 1983; PhysioNet, ODC-By).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edge_gateway.dsp import rhythm  # noqa: E402


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rt") as fh:
        rows = list(csv.DictReader(fh))
    rr = np.array([float(r["rr_ms"]) for r in rows])
    return rr, np.array([r["rhythm"] == "AFIB" for r in rows])


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    records = sorted((args.shared / "rr" / "afdb").glob("*_rr.csv.gz"))
    feats, labels = {}, {}
    for path in records:
        rr, af = load(path)
        feats[path.name[:5]] = rhythm.af_features(rr)
        labels[path.name[:5]] = af
    names = list(feats)
    every = np.concatenate([feats[k] for k in names])
    mu, sd = every.mean(axis=0), every.std(axis=0)

    def fit(keys: list[str]) -> LogisticRegression:
        x = np.concatenate([(feats[k] - mu) / sd for k in keys])
        y = np.concatenate([labels[k] for k in keys])
        # Every 5th beat: neighbouring beats share their windows, so this loses little.
        return LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(
            x[::5], y[::5]
        )

    scores = {}
    for held in names:
        model = fit([k for k in names if k != held])
        scores[held] = model.decision_function((feats[held] - mu) / sd)
    y = np.concatenate([labels[k] for k in names])
    for thr in (-0.5, -0.25, 0.0, 0.25, 0.5):
        # As detect_af: AF runs shorter than MIN_EPISODE_BEATS are dropped.
        parts = []
        for k in names:
            af = scores[k] > thr
            for start, end in rhythm._runs(af):
                if end - start + 1 < rhythm.MIN_EPISODE_BEATS:
                    af[start : end + 1] = False
            parts.append(af)
        pred = np.concatenate(parts)
        se, sp = 100 * pred[y].mean(), 100 * (~pred[~y]).mean()
        print(f"LORO thr {thr:+.2f}: Se {se:.2f}%  Sp {sp:.2f}%")
    model = fit(names)
    np.set_printoptions(precision=6, floatmode="fixed", linewidth=100)
    print("_FEATURE_MEAN = np.array(", repr(mu.round(6).tolist()), ")")
    print("_FEATURE_SD = np.array(", repr(sd.round(6).tolist()), ")")
    print("_WEIGHTS = np.array(", repr(model.coef_[0].round(6).tolist()), ")")
    print("_BIAS =", round(float(model.intercept_[0]), 6))


if __name__ == "__main__":
    main()
