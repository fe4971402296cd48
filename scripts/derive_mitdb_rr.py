"""Derive RR + rhythm CSVs from rdann listings of the MIT-BIH Arrhythmia Database (run by hand).

    .venv/bin/python scripts/derive_mitdb_rr.py SRC_DIR [--out tests/data/mitdb]

SRC_DIR holds ``NNNannotations.txt`` files: the WFDB ``rdann -v -a atr`` listing of each record's
reference annotations (header ``Time  Sample #  Type  Sub Chan  Num  Aux``), as the widely
copied Kaggle "mitbih_database" folder carries them (see tests/data/DSP_SOURCES.md for the
snapshot used).  For every record it writes ``NNN_rr.csv.gz`` with the columns of
../shared/data (``rr_ms,label,rhythm,t_s``):

- one row per beat annotation after the first (WFDB ``isqrs`` codes: N L R B A a J S V r F e j n
  E / f Q ? !); non-beat annotations (rhythm changes ``+``, noise ``~``, artefacts ``|``,
  comments, non-conducted P waves ``x``, VF on/off ``[ ]``) are not beats;
- ``rr_ms`` = sample difference to the previous beat / 360 Hz, to 0.1 µs (exact up to rounding);
- ``label`` = the beat's WFDB symbol; ``rhythm`` = the rhythm in force at the beat (the last
  ``(XXX`` aux note of a ``+`` annotation at or before it, parenthesis dropped: N, AFIB, AFL, B,
  T, SVTA, VT, NOD, SBR, P, IVR, AB, BII, VFL, PREX); ``t_s`` = sample / 360.

Pure text in, gzip CSV out; needs no WFDB software.  Data: MIT-BIH Arrhythmia Database (Moody GB,
Mark RG. IEEE Eng Med Biol 20(3):45-50, 2001; PhysioNet, ODC-By 1.0).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import sys
from pathlib import Path

FS_HZ = 360.0
BEATS = set("NLRBAaJSVrFejnE/fQ?!")


def derive(listing: str) -> list[tuple[float, str, str, float]]:
    """Rows (rr_ms, label, rhythm, t_s) from one rdann listing."""
    rhythm = ""
    beats: list[tuple[int, str, str]] = []
    for raw in listing.splitlines()[1:]:
        head, _, aux = raw.partition("\t")
        fields = head.split()
        if len(fields) < 3:
            continue
        sample, code = int(fields[1]), fields[2]
        if code == "+" and aux.strip().startswith("("):
            rhythm = aux.strip()[1:].rstrip("\x00").strip()
        if code in BEATS:
            beats.append((sample, code, rhythm))
    rows = []
    for (prev, _, _), (sample, code, rhy) in itertools.pairwise(beats):
        rows.append((round((sample - prev) * 1000.0 / FS_HZ, 4), code, rhy, sample / FS_HZ))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("--out", type=Path, default=Path("tests/data/mitdb"))
    args = parser.parse_args()
    files = sorted(args.src.glob("*annotations.txt"))
    if not files:
        print(f"no *annotations.txt in {args.src}: give the folder of rdann listings",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for path in files:
        record = path.name.removesuffix("annotations.txt")
        rows = derive(path.read_text(encoding="utf-8", errors="replace"))
        target = args.out / f"{record}_rr.csv.gz"
        # mtime=0: the same listing always gives byte-identical output.
        with open(target, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(b"rr_ms,label,rhythm,t_s\n")
            for rr, label, rhy, t in rows:
                gz.write(f"{rr:g},{label},{rhy},{t:.4f}\n".encode())
        print(f"{record}: {len(rows)} beats -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
