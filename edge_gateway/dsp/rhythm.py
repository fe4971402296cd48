"""Rhythm from RR intervals alone: atrial fibrillation, pauses, brady/tachycardia, ectopy.

AF detection.  A plain irregularity threshold calls frequent ectopy AF (Sp 87–89 % on the MIT-BIH
AF database); what separates AF from sinus rhythm with ectopic beats is that AF is irregular
*everywhere*, while ectopy is a regular baseline interrupted by premature beats, often in a
repeating pattern (bigeminy, trigeminy).  So each beat gets features, over windows centred on it,
that look at the rhythm with the ectopy taken out in several ways:

1. irregularity among the "normal" beats only: intervals shorter than 90 % of the local median
   (premature) and the interval after them (compensatory) are dropped, and the median relative
   successive difference of the rest is taken (Petrėnas et al. 2015 filter ectopy likewise);
2. the same with the nearest of the last two normal intervals, which cancels alternation;
3. the relative difference from the nearest of the last three intervals (cancels bigeminy and
   trigeminy patterns);
4. the share of premature beats; 5. the plain median successive difference;
6. the turning-point ratio; 7. the coefficient of variation; 8. the mean interval;
9–10. the share of intervals within 4 % and 8 % of the local median (the baseline cluster that
   ectopy leaves intact and AF dissolves);
11. the number of distinct (ΔRR[i−1], ΔRR[i]) cells of 40 ms visited in the window (Sarkar et al.
   2008: ectopy revisits a few cells, AF scatters over many);
12. how far the share of short intervals followed by a long one (the compensatory pause of
    ectopy) exceeds one half.

A logistic combination of the 12 standardised features (coefficients fitted once on the 17 public
afdb records with leave-one-record-out validation, tests/reference/fit_af_model.py) gives a score
per beat; a positive score is AF, and AF runs shorter than ``MIN_EPISODE_BEATS`` are dropped.
Leave-one-record-out on afdb gives Se 97.7 % / Sp 98.4 %, the fitted model Se 98.3 % / Sp 98.5 %
(docs/dsp.md).

Streaming: run on the beats received so far, the windows are padded at the end with the last
value, so an onset is flagged after a median of 18 beats (90th percentile 32) on the afdb
episodes; a beat's decision can still be revised until about ``AF_SETTLE_BEATS`` later beats
have arrived (the reach of the centred windows), which is why the scheduler runs the detector
over a window plus a lead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

ALGORITHM = "rhythm/1"

PREMATURE_RATIO = 0.9
REF_BEATS = 15
NORMAL_MEDIAN_BEATS = 15
SMOOTH_BEATS = 61
PAIR_WINDOW_BEATS = 64
PAIR_CELL_MS = 40.0
WIDE_REF_BEATS = 61
#: Later beats that can still change a beat's score: the wide median (30) then the smoothing
#: (30), a few more where premature beats stretch the normal-beat median (measured: ≤ 66).
AF_SETTLE_BEATS = 66

PAUSE_MS = 2000.0
SEVERE_PAUSE_MS = 3000.0
BRADY_BPM = 50.0
TACHY_BPM = 100.0
#: An AF episode shorter than this many beats is merged away (noise, not an episode).
MIN_EPISODE_BEATS = 30

# Fitted by tests/reference/fit_af_model.py (standardisation then logistic weights).
_FEATURE_MEAN = np.array(
    [
        -3.208436, -3.712583, -3.748141, 0.143896, -2.795881, 0.55874, -2.372504, -0.324479,
        0.543383, 0.649702, 3.031458, 0.074236,
    ]
)
_FEATURE_SD = np.array(
    [
        1.170978, 1.071667, 1.125605, 0.13515, 1.261727, 0.116881, 1.073554, 0.237296, 0.348957,
        0.317419, 0.977332, 0.131738,
    ]
)
_WEIGHTS = np.array(
    [
        0.919277, 3.351006, 0.408389, 0.158035, -1.914805, 0.692296, -0.461444, -1.354006,
        0.04451, -1.959487, 1.387586, -1.656834,
    ]
)
_BIAS = -2.193206


def _median(x: FloatArray, size: int) -> FloatArray:
    from scipy.ndimage import median_filter

    size = max(1, min(size, x.size if x.size % 2 else x.size - 1))
    return np.asarray(median_filter(x, size=size, mode="nearest"), dtype=np.float64)


def _mean(x: FloatArray, size: int) -> FloatArray:
    from scipy.ndimage import uniform_filter1d

    size = max(1, min(size, x.size))
    return np.asarray(uniform_filter1d(x, size=size, mode="nearest"), dtype=np.float64)


def _nearest_lag_diff(x: FloatArray, lags: int) -> FloatArray:
    """|x[i] − x[i−k]| minimised over k = 1..lags (0 where no lag exists yet)."""
    out = np.full(x.size, np.inf)
    for k in range(1, lags + 1):
        if x.size > k:
            out[k:] = np.minimum(out[k:], np.abs(x[k:] - x[:-k]))
    out[~np.isfinite(out)] = 0.0
    return out


def _normal_irregularity(rr: FloatArray, ref: FloatArray, lags: int) -> FloatArray:
    premature = rr < PREMATURE_RATIO * ref
    excluded = premature.copy()
    excluded[1:] |= premature[:-1]
    idx = np.flatnonzero(~excluded)
    if idx.size < lags + 2:
        idx = np.arange(rr.size)
    x = rr[idx]
    d = _nearest_lag_diff(x, lags) / ref[idx]
    g = _median(d, NORMAL_MEDIAN_BEATS)
    # Every beat takes the value of the last normal beat at or before it.
    pos = np.clip(np.searchsorted(idx, np.arange(rr.size), side="right") - 1, 0, idx.size - 1)
    return _mean(g[pos], SMOOTH_BEATS)


def _distinct_in_window(codes: NDArray[np.int64], window: int) -> FloatArray:
    """Number of distinct values in the centred window of each position (chunked, O(n·w))."""
    n = codes.size
    half = window // 2
    padded = np.pad(codes, (half, window - half - 1), mode="edge")
    out = np.empty(n, dtype=np.float64)
    chunk = 16384
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        view = np.lib.stride_tricks.sliding_window_view(padded[start : stop + window - 1], window)
        srt = np.sort(view, axis=1)
        out[start:stop] = 1 + np.count_nonzero(srt[:, 1:] != srt[:, :-1], axis=1)
    return out


def af_features(rr_ms: FloatArray) -> FloatArray:
    """The 12 per-beat features (rows = beats) described in the module docstring."""
    rr = np.clip(np.asarray(rr_ms, dtype=np.float64), 200.0, 3000.0)
    eps = 1e-3
    ref = _median(rr, REF_BEATS)
    premature = (rr < PREMATURE_RATIO * ref).astype(np.float64)
    mean = _mean(rr, SMOOTH_BEATS)
    mean_sq = _mean(rr**2, SMOOTH_BEATS)
    cv = np.sqrt(np.maximum(mean_sq - mean**2, 1e-9)) / mean
    rel_diff = np.abs(np.diff(rr, prepend=rr[0])) / ref
    plain = _mean(_median(rel_diff, 9), SMOOTH_BEATS)
    turning = np.zeros(rr.size)
    if rr.size > 2:
        turning[1:-1] = ((rr[1:-1] - rr[:-2]) * (rr[1:-1] - rr[2:]) > 0).astype(np.float64)
    lag3 = _mean(_median(_nearest_lag_diff(rr, 3) / ref, 15), SMOOTH_BEATS)
    wide_ref = _median(rr, WIDE_REF_BEATS)
    near4 = _mean((np.abs(rr - wide_ref) < 0.04 * wide_ref).astype(np.float64), SMOOTH_BEATS)
    near8 = _mean((np.abs(rr - wide_ref) < 0.08 * wide_ref).astype(np.float64), SMOOTH_BEATS)
    delta = np.diff(rr, prepend=rr[0])
    cell = np.clip(np.floor(delta / PAIR_CELL_MS).astype(np.int64), -30, 30) + 30
    prev = np.concatenate(([30], cell[:-1]))
    codes = np.where((cell == 30) & (prev == 30), -1, cell * 61 + prev)
    cells = _distinct_in_window(codes, PAIR_WINDOW_BEATS)
    # After an ectopic beat the next interval is long (the compensatory pause); in AF what
    # follows a short interval is as random as the rest, and in sinus arrhythmia it is short
    # again.  So only a share of compensated shorts (10 % under the local median, followed by
    # one 5 % over it) above one half is evidence, of ectopy; below it says nothing.
    dev = rr / ref - 1.0
    after_short = np.concatenate(([False], dev[:-1] < -0.10))
    compensated = after_short & (dev > 0.05)
    shorts = _mean(after_short.astype(np.float64), SMOOTH_BEATS)
    pauses = _mean(compensated.astype(np.float64), SMOOTH_BEATS)
    compensation = np.maximum((pauses + 0.01) / (shorts + 0.02) - 0.5, 0.0)
    return np.column_stack(
        [
            np.log(_normal_irregularity(rr, ref, 1) + eps),
            np.log(_normal_irregularity(rr, ref, 2) + eps),
            np.log(lag3 + eps),
            _mean(premature, SMOOTH_BEATS),
            np.log(plain + eps),
            _mean(turning, SMOOTH_BEATS),
            np.log(cv),
            np.log(mean / 1000.0),
            near4,
            near8,
            np.log(cells),
            compensation,
        ]
    )


def af_score(rr_ms: FloatArray) -> FloatArray:
    """Per-beat AF score (log-odds scale); positive means AF."""
    rr = np.asarray(rr_ms, dtype=np.float64)
    if rr.size == 0:
        return np.zeros(0)
    z = (af_features(rr) - _FEATURE_MEAN) / _FEATURE_SD
    return np.asarray(z @ _WEIGHTS + _BIAS, dtype=np.float64)


def true_runs(mask: BoolArray) -> list[tuple[int, int]]:
    """(start, end inclusive) of the runs of True."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    return [(int(a), int(b) - 1) for a, b in zip(starts, stops, strict=True)]


def detect_af(rr_ms: FloatArray) -> BoolArray:
    """Per-beat AF decision: score > 0, with runs shorter than MIN_EPISODE_BEATS dropped."""
    rr = np.asarray(rr_ms, dtype=np.float64)
    if rr.size < 8:
        return np.zeros(rr.size, dtype=bool)
    af = af_score(rr) > 0.0
    for start, end in true_runs(af):
        if end - start + 1 < MIN_EPISODE_BEATS:
            af[start : end + 1] = False
    return af


@dataclass(frozen=True, slots=True)
class Episode:
    start_beat: int
    end_beat: int
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class Pause:
    beat: int
    duration_ms: float
    severe: bool


@dataclass(frozen=True, slots=True)
class RhythmResult:
    n_beats: int
    af_burden_pct: float | None
    af_episodes: tuple[Episode, ...]
    pauses: tuple[Pause, ...]
    bradycardia_pct: float | None
    tachycardia_pct: float | None
    ectopic_beats: int
    mean_hr_bpm: float | None
    coverage: float


def analyze_rhythm(
    rr_ms: FloatArray, times_s: FloatArray | None = None, *, window_s: float | None = None
) -> RhythmResult:
    """AF episodes and burden, pauses, brady/tachycardia share and ectopic-beat count.

    Beat ``i`` is the beat ending interval ``rr_ms[i]``; its time is ``times_s[i]`` when given,
    else the running sum of the intervals.  Bradycardia / tachycardia are the share of beats
    whose 10-beat running heart rate is < 50 / > 100 /min.  Ectopic beats are counted outside AF
    (in AF every beat looks ectopic) as premature intervals followed by a longer one.
    """
    from edge_gateway.dsp.clean import detect_ectopic

    rr = np.asarray(rr_ms, dtype=np.float64)
    n = rr.size
    t = np.cumsum(rr) / 1000.0 if times_s is None else np.asarray(times_s, dtype=np.float64)
    if n == 0:
        return RhythmResult(0, None, (), (), None, None, 0, None, 0.0)
    af = detect_af(rr)
    episodes = tuple(
        Episode(a, b, round(float(t[a] - rr[a] / 1000.0), 3), round(float(t[b]), 3))
        for a, b in true_runs(af)
    )
    pauses = tuple(
        Pause(int(i), float(rr[i]), bool(rr[i] > SEVERE_PAUSE_MS))
        for i in np.flatnonzero(rr > PAUSE_MS)
    )
    hr = 60000.0 / _mean(rr, 10)
    ectopic = detect_ectopic(rr)
    # A flagged short interval starts an ectopic beat; its compensatory partner is not another.
    premature = ectopic & (rr < _median(rr, 11))
    span = float(t[-1] - t[0] + rr[0] / 1000.0)
    window = span if window_s is None else window_s
    covered = float(rr.sum()) / 1000.0
    return RhythmResult(
        n_beats=n,
        af_burden_pct=100.0 * float(np.count_nonzero(af)) / n,
        af_episodes=episodes,
        pauses=pauses,
        bradycardia_pct=100.0 * float(np.count_nonzero(hr < BRADY_BPM)) / n,
        tachycardia_pct=100.0 * float(np.count_nonzero(hr > TACHY_BPM)) / n,
        ectopic_beats=int(np.count_nonzero(premature & ~af)),
        mean_hr_bpm=60000.0 / float(rr.mean()),
        coverage=min(1.0, covered / window) if window > 0 else 0.0,
    )
