"""The AF-mimic features tried for issue 13 and not shipped (the table in docs/dsp.md).

    .venv/bin/python tests/reference/af_mimic_experiment.py [--shared ../shared/data]

Adds two RR-only features meant to tell atrial flutter with variable conduction from AF — a
comb fit (31-beat mean distance of RR/P from a whole multiple, best P in 150–355 ms) and the
share of successive RR ratios near a simple fraction — to ``rhythm.af_features``, prints their
medians per labelled rhythm, then leave-one-record-out figures on afdb and mitdb with and
without them (the fit of scripts/fit_af_model.py; a few minutes).  Needs scikit-learn.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import fit_af_model as fam  # noqa: E402

from edge_gateway.dsp import rhythm  # noqa: E402

FRACTIONS = np.array([1.0, 2.0, 0.5, 1.5, 2 / 3, 3.0, 1 / 3, 4 / 3, 0.75])


def comb_fit(rr: np.ndarray, window: int = 31) -> np.ndarray:
    rr = np.clip(rr, 200.0, 3000.0)
    best = np.full(rr.size, np.inf)
    for p in np.arange(150.0, 360.0, 5.0):
        q = rr / p
        best = np.minimum(best, rhythm._mean(np.abs(q - np.maximum(np.round(q), 1.0)), window))
    return best


def ratio_share(rr: np.ndarray, window: int = 31) -> np.ndarray:
    r = np.log(rr / np.concatenate(([rr[0]], rr[:-1])))
    near = (np.abs(r[:, None] - np.log(FRACTIONS)[None, :]) < 0.04).any(axis=1)
    return rhythm._mean(near.astype(np.float64), window)


def loro(recs: dict[str, Any], feats: dict[str, np.ndarray], base: dict[str, np.ndarray],
         mitdb_weight: float = 3.0) -> str:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    names = list(recs)
    every = np.concatenate([feats[k] for k in names])
    mu, sd = every.mean(axis=0), every.std(axis=0)
    z = {k: (feats[k] - mu) / sd for k in names}

    def fit(keys: list[str]) -> Any:
        x = np.concatenate([z[k][::5] for k in keys])
        y = np.concatenate([recs[k][1][::5] == "AFIB" for k in keys])
        w = np.concatenate([np.full(z[k][::5].shape[0], mitdb_weight if k.startswith("mitdb")
                                    else 1.0) for k in keys])
        pos, neg = w[y].sum(), w[~y].sum()
        w = np.where(y, w * (pos + neg) / (2 * pos), w * (pos + neg) / (2 * neg))
        return LogisticRegression(C=1.0, max_iter=3000).fit(x, y, sample_weight=w)

    scores = {k: fit([j for j in names if j != k]).decision_function(z[k]) for k in names}
    out = []
    for db in ("afdb", "mitdb"):
        keys = [k for k in names if k.startswith(db)]
        p = np.concatenate([rhythm.drop_short_runs((scores[k] > rhythm.AF_THRESHOLD)
                                                   & ~rhythm.levels_rule(base[k]))
                            for k in keys])
        y = np.concatenate([recs[k][1] == "AFIB" for k in keys])
        out.append(f"{db} Se {100 * p[y].mean():.2f} % Sp {100 * (~p[~y]).mean():.2f} %")
    return ", ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    recs = fam.records(args.shared)
    base = {k: rhythm.af_features(rr) for k, (rr, _) in recs.items()}
    extra = {k: np.column_stack([np.log(comb_fit(rr) + 1e-3), ratio_share(rr)])
             for k, (rr, _) in recs.items()}
    for db in ("afdb", "mitdb"):
        labels = np.concatenate([recs[k][1] for k in recs if k.startswith(db)])
        e = np.concatenate([extra[k] for k in recs if k.startswith(db)])
        for name in np.unique(labels):
            m = labels == name
            if m.sum() >= 300:
                print(f"{db} {name:5s} {m.sum():7d} beats: comb fit (log) "
                      f"{np.median(e[m, 0]):.3f}, ratio share {np.median(e[m, 1]):.3f}")
    print("LORO, shipped features:", loro(recs, base, base))
    print("LORO, + comb fit + ratio share:",
          loro(recs, {k: np.column_stack([base[k], extra[k]]) for k in recs}, base))


if __name__ == "__main__":
    main()
