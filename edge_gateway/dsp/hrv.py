"""Heart-rate variability from RR intervals: time domain, Poincaré, spectrum, entropy, DFA.

Our definitions (the anchors disagree on some; docs/dsp.md gives the differences in figures):

- mean RR over the valid NN intervals; mean HR = 60000 / mean RR (not the mean of 60000/RR);
- SDNN = standard deviation of NN with ddof=1; CVNN = SDNN / mean RR;
- successive differences are taken inside a segment only (never across a gap);
  RMSSD = √mean(ΔNN²); SDSD = std(ΔNN, ddof=1);
- pNN50 / pNN20 = 100 × share of the successive differences with |ΔNN| strictly > 50 / 20 ms,
  the denominator being the number of differences (N − 1 for an unbroken series);
- SD1 = std((NN[i+1] − NN[i]) / √2, ddof=1) and SD2 = std((NN[i+1] + NN[i]) / √2, ddof=1) over
  the Poincaré pairs (across and along the identity line);
- sample entropy m = 2, r = 0.2 × SDNN; DFA α1 over 4–16 beats, α2 over 16–64.

Coverage is the share of the window (the span of the input unless given) covered by the valid
intervals.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_gateway.dsp.clean import clean_rr
from edge_gateway.dsp.nonlinear import (
    DFA_ALPHA1_SCALES,
    DFA_ALPHA2_SCALES,
    dfa_alpha,
    sample_entropy,
)
from edge_gateway.dsp.spectral import NO_POWER, lomb_powers, welch_powers

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

ALGORITHM = "hrv/1"
SAMPEN_M = 2
SAMPEN_R_FACTOR = 0.2


@dataclass(frozen=True, slots=True)
class HrvResult:
    """Every HRV metric; ``None`` when the data cannot support it."""

    n_beats: int
    n_corrected: int
    n_removed: int
    n_segments: int
    coverage: float
    mean_rr_ms: float | None
    mean_hr_bpm: float | None
    sdnn_ms: float | None
    rmssd_ms: float | None
    sdsd_ms: float | None
    pnn50_pct: float | None
    pnn20_pct: float | None
    cvnn: float | None
    vlf_ms2: float | None
    lf_ms2: float | None
    hf_ms2: float | None
    lf_hf: float | None
    lf_nu: float | None
    hf_nu: float | None
    vlf_lomb_ms2: float | None
    lf_lomb_ms2: float | None
    hf_lomb_ms2: float | None
    lf_hf_lomb: float | None
    sd1_ms: float | None
    sd2_ms: float | None
    sd1_sd2: float | None
    sampen: float | None
    dfa_alpha1: float | None
    dfa_alpha2: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: A group of HrvResult's metrics (time domain, Poincaré), by their HrvResult field names.
Metrics = dict[str, float | None]

_TIME_DOMAIN = ("mean_rr_ms", "mean_hr_bpm", "sdnn_ms", "rmssd_ms", "sdsd_ms", "pnn50_pct",
                "pnn20_pct", "cvnn")


def successive_pairs(rr_ms: FloatArray, segment: IntArray) -> tuple[FloatArray, FloatArray]:
    """(NN[i], NN[i+1]) for the consecutive pairs that lie inside one segment."""
    same = (segment[1:] >= 0) & (segment[1:] == segment[:-1])
    return rr_ms[:-1][same], rr_ms[1:][same]


def _std1(x: FloatArray) -> float | None:
    return float(np.std(x, ddof=1)) if x.size >= 2 else None


def time_domain(rr_ms: FloatArray, segment: IntArray) -> Metrics:
    nn = rr_ms[segment >= 0]
    if nn.size == 0:
        return dict.fromkeys(_TIME_DOMAIN, None)
    mean_rr = float(nn.mean())
    sdnn = _std1(nn)
    a, b = successive_pairs(rr_ms, segment)
    diff = b - a
    if diff.size:
        rmssd: float | None = math.sqrt(float(np.mean(diff**2)))
        absdiff = np.abs(diff)
        pnn50: float | None = 100.0 * float(np.count_nonzero(absdiff > 50.0)) / diff.size
        pnn20: float | None = 100.0 * float(np.count_nonzero(absdiff > 20.0)) / diff.size
    else:
        rmssd = pnn50 = pnn20 = None
    return {
        "mean_rr_ms": mean_rr,
        "mean_hr_bpm": 60000.0 / mean_rr if mean_rr > 0 else None,
        "sdnn_ms": sdnn,
        "rmssd_ms": rmssd,
        "sdsd_ms": _std1(diff),
        "pnn50_pct": pnn50,
        "pnn20_pct": pnn20,
        "cvnn": sdnn / mean_rr if sdnn is not None and mean_rr > 0 else None,
    }


def poincare(rr_ms: FloatArray, segment: IntArray) -> Metrics:
    a, b = successive_pairs(rr_ms, segment)
    sd1 = _std1((b - a) / math.sqrt(2.0))
    sd2 = _std1((b + a) / math.sqrt(2.0))
    ratio = sd1 / sd2 if sd1 is not None and sd2 is not None and sd2 > 0 else None
    return {"sd1_ms": sd1, "sd2_ms": sd2, "sd1_sd2": ratio}


def hrv(
    rr_ms: FloatArray,
    times_s: FloatArray | None = None,
    *,
    clean: bool = True,
    window_s: float | None = None,
    spectral: bool = True,
    nonlinear: bool = True,
) -> HrvResult:
    """All HRV metrics of an RR series (ms), optionally with the beat times (s).

    ``clean=False`` uses the values exactly as given (only non-finite values split the series).
    ``window_s`` is the length of the window the beats were taken from, for the coverage; by
    default the span of the beats themselves.
    """
    rr = np.asarray(rr_ms, dtype=np.float64)
    cleaned = clean_rr(rr, times_s, correct=clean)
    x = cleaned.rr_ms
    seg = cleaned.segment
    valid = seg >= 0
    n_valid = int(np.count_nonzero(valid))
    covered_s = float(np.nansum(x[valid])) / 1000.0
    if window_s is None:
        if times_s is not None and rr.size:
            t = np.asarray(times_s, dtype=np.float64)
            window_s = float(t[-1] - t[0] + rr[0] / 1000.0) if np.isfinite(rr[0]) else None
        if window_s is None:
            window_s = float(np.nansum(np.abs(rr))) / 1000.0
    coverage = min(1.0, covered_s / window_s) if window_s and window_s > 0 else 0.0
    td = time_domain(x, seg)
    pc = poincare(x, seg)
    welch_p = lomb_p = NO_POWER
    if spectral and n_valid >= 4:
        welch_p = welch_powers(x, seg, times_s)
        lomb_p = lomb_powers(x, seg, times_s)
    sampen = alpha1 = alpha2 = None
    sdnn = td["sdnn_ms"]
    if nonlinear and sdnn is not None:
        sampen = sample_entropy(x, SAMPEN_R_FACTOR * sdnn, m=SAMPEN_M, segment=seg)
        alpha1 = dfa_alpha(x, DFA_ALPHA1_SCALES, segment=seg)
        alpha2 = dfa_alpha(x, DFA_ALPHA2_SCALES, segment=seg)
    return HrvResult(
        n_beats=n_valid,
        n_corrected=cleaned.n_corrected,
        n_removed=cleaned.n_removed,
        n_segments=int(seg.max()) + 1 if n_valid else 0,
        coverage=coverage,
        **td,
        vlf_ms2=welch_p.vlf_ms2,
        lf_ms2=welch_p.lf_ms2,
        hf_ms2=welch_p.hf_ms2,
        lf_hf=welch_p.lf_hf,
        lf_nu=welch_p.lf_nu,
        hf_nu=welch_p.hf_nu,
        vlf_lomb_ms2=lomb_p.vlf_ms2,
        lf_lomb_ms2=lomb_p.lf_ms2,
        hf_lomb_ms2=lomb_p.hf_ms2,
        lf_hf_lomb=lomb_p.lf_hf,
        **pc,
        sampen=sampen,
        dfa_alpha1=alpha1,
        dfa_alpha2=alpha2,
    )
