"""Draw the figures of docs/dsp.md (run by hand; needs matplotlib from the test extra).

    .venv/bin/python tests/reference/make_figures.py

Data: Fantasia f1o02 and MIT-BIH AF Database 04043 (PhysioNet, ODC-By 1.0), from tests/data.
"""

from __future__ import annotations

import csv
import gzip
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edge_gateway.dsp.clean import clean_rr  # noqa: E402
from edge_gateway.dsp.rhythm import af_score, detect_af  # noqa: E402

DATA = REPO / "tests" / "data"
DOCS = REPO / "docs"


def rows(name: str) -> list[dict[str, str]]:
    with gzip.open(DATA / name, "rt") as fh:
        return list(csv.DictReader(fh))


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = rows("f1o02_rr.csv.gz")
    rr = np.array([float(r["rr_ms"]) for r in f])
    labels = np.array([r["label"] for r in f])
    cleaned = clean_rr(rr)
    part = slice(3450, 3560)
    x = np.arange(rr.size)[part]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(x, rr[part], ".-", color="0.6", label="RR as recorded")
    ax.plot(x, cleaned.rr_ms[part], "-", color="tab:blue", label="after cleaning")
    flagged = np.flatnonzero(cleaned.flagged[part]) + part.start
    ax.plot(flagged, rr[flagged], "o", mfc="none", color="tab:red", label="flagged")
    ectopic = np.flatnonzero(labels[part] != "N") + part.start
    ax.plot(ectopic, rr[ectopic] - 40, "^", color="k", label="labelled ectopic (V)")
    ax.set_xlabel("beat")
    ax.set_ylabel("RR (ms)")
    ax.set_title("Fantasia f1o02: a premature ventricular beat and its compensatory pause")
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(DOCS / "dsp-cleaning.png", dpi=110)

    a = rows("afdb04043_excerpt_rr.csv.gz")
    rr = np.array([float(r["rr_ms"]) for r in a])
    truth = np.array([r["rhythm"] == "AFIB" for r in a])
    score = af_score(rr)
    af = detect_af(rr)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 4.6), sharex=True)
    top.plot(rr, ".", ms=2, color="0.3")
    top.set_ylabel("RR (ms)")
    top.set_title("afdb 04043, 3000 beats: reference AFIB (shaded) and the detector")
    for ax_ in (top, bottom):
        ax_.fill_between(np.arange(rr.size), 0, 1, where=truth, color="tab:orange", alpha=0.25,
                         transform=ax_.get_xaxis_transform(), label="reference AFIB")
    bottom.plot(score, color="tab:blue", lw=1, label="AF score")
    bottom.plot(np.where(af, 4.5, np.nan), color="tab:red", lw=3, label="detected AF")
    bottom.axhline(0, color="k", lw=0.5)
    bottom.set_ylabel("score (log-odds)")
    bottom.set_xlabel("beat")
    bottom.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(DOCS / "dsp-af.png", dpi=110)


if __name__ == "__main__":
    main()
