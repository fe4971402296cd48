"""Rhythm from RR intervals alone: atrial fibrillation, irregular rhythm that is not AF, pauses,
brady/tachycardia, ectopy.  numpy only (no scipy), vectorised: 100,000 beats in ~0.3 s.

AF detection.  A plain irregularity threshold calls frequent ectopy AF (Sp 87–89 % on the MIT-BIH
AF database); what separates AF from sinus rhythm with ectopic beats is that AF is irregular
*everywhere*, while ectopy is a regular baseline interrupted by premature beats, often in a
repeating pattern (bigeminy, trigeminy).  So each beat gets 15 features, over windows centred on
it, that look at the rhythm with the ectopy taken out in several ways (columns of
:func:`af_features`):

0–1. the relative change between successive sums of 2 and of 3 intervals (an ectopic beat moves
   one R wave, so the sum of a premature interval and its pause, and every block of a bigeminy or
   trigeminy, keeps the baseline's length; AF's sums are as irregular as its intervals);
2. the density: the share of the window's intervals within 5 % of each interval (ectopy keeps a
   few tight clusters, AF spreads out);
3. irregularity among the "normal" beats only: intervals shorter than 90 % of the local median
   (premature) and the interval after them (compensatory) are dropped, and the median relative
   successive difference of the rest is taken (Petrėnas et al. 2015 filter ectopy likewise);
4. the same with the nearest of the last two normal intervals, which cancels alternation;
5. the relative difference from the nearest of the last three intervals;
6. the share of premature beats; 7. the plain median successive difference;
8. the turning-point ratio; 9. the coefficient of variation; 10. the mean interval;
11–12. the share of intervals within 4 % and 8 % of the local median;
13. the share of beats whose (ΔRR[i−1], ΔRR[i]) cell of 40 ms no other beat of the window
   visits (after Sarkar et al. 2008: ectopy revisits a few cells, AF scatters over many);
14. how far the share of short intervals followed by a long one (the compensatory pause of
    ectopy) exceeds one half.

A logistic combination of the standardised features — weights fitted by scripts/fit_af_model.py
on two databases, the 17 afdb records of ../shared/data and the 48 MIT-BIH Arrhythmia records of
tests/data/mitdb — gives a score per beat; a score above ``AF_THRESHOLD`` is AF unless the
intervals sit on a few discrete levels (:func:`levels_rule`), and AF runs shorter than
:func:`min_run_beats` are dropped.  Not-tuned-on figures (leave one record out, leave one
database out) are in docs/dsp.md.  Beats that are irregular but not AF form their own class
(:func:`classify`).

Windows and short series: every moving median and mean mirrors the series at its ends instead of
repeating the end value (a run of identical intervals reads as regular rhythm and biased short
strips towards not-AF); a series needs ``MIN_SERIES_BEATS`` beats to be judged at all, and in a
series shorter than two episodes half the series is enough for a run.

Streaming: run on the beats received so far, a run still open at the end counts from
``MIN_OPEN_RUN_BEATS``, so an onset is flagged after a median of ~16 beats on the afdb episodes;
a beat's decision can still be revised until about ``AF_SETTLE_BEATS`` later beats have arrived
(the reach of the centred windows), which is why the scheduler runs the detector over a window
plus a lead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

ALGORITHM = "rhythm/2"

PREMATURE_RATIO = 0.9
REF_BEATS = 15
NORMAL_MEDIAN_BEATS = 15
SMOOTH_BEATS = 41
PAIR_WINDOW_BEATS = 64
PAIR_CELL_MS = 40.0
WIDE_REF_BEATS = 61
#: Later beats that can still change a beat's score: the wide median (30) then the smoothing
#: (30), a few more where premature beats stretch the normal-beat median (measured: ≤ 66).
AF_SETTLE_BEATS = 66

DENSITY_BEATS = 31
DENSITY_TOLERANCE = 0.05

#: Smoothed plain irregularity above which a beat that is not AF counts as irregular rhythm
#: (0.08: the classic RR-irregularity threshold for AF, Sp 87–89 % on afdb — the rhythms it
#: wrongly calls AF are what this class collects).
IRREGULAR_THRESHOLD = 0.08
#: Decision threshold on the score (log-odds).  -0.6 rather than 0: leave-one-record-out on
#: afdb then reaches Se 97.2 / Sp 98.9 (at -0.4: 96.9 / 99.0) — docs/dsp.md.
AF_THRESHOLD = -0.6
#: The discrete-levels rule of :func:`levels_rule`.
LEVELS_DENSITY = 0.3
LEVELS_NEAR = 0.027
#: Columns of af_features: the density, the nearest-of-2 normal and nearest-of-3 differences
#: (log), the plain irregularity.
_DENSITY = 2
_NEAR_LAGS = [4, 5]
_PLAIN = 7

PAUSE_MS = 2000.0
SEVERE_PAUSE_MS = 3000.0
BRADY_BPM = 50.0
TACHY_BPM = 100.0
#: An AF episode shorter than this many beats is dropped (noise, not an episode) ...
MIN_EPISODE_BEATS = 30
#: ... except in a short series, where half the series will do; below this many beats no
#: series is judged at all (a 20-beat strip is ~15 s).
MIN_SERIES_BEATS = 20
#: A run still open at the end of the series counts from this many beats.
MIN_OPEN_RUN_BEATS = 12

# Fitted by scripts/fit_af_model.py on afdb (17 records) + mitdb (48 records); the order is
# that of af_features' columns.
_FEATURE_MEAN = np.array(
    [
        -3.050138, -3.225689, 0.522222, -3.227065, -3.723721, -3.759442, 0.138395, -2.820984,
        0.560422, -2.454095, -0.317321, 0.545864, 0.661022, 0.354043, 0.080033,
    ]
)
_FEATURE_SD = np.array(
    [
        1.162078, 1.182302, 0.32254, 1.138888, 1.040624, 1.105326, 0.137632, 1.254783, 0.125372,
        1.113148, 0.236827, 0.345485, 0.317476, 0.322552, 0.140928,
    ]
)
_WEIGHTS = np.array(
    [
        0.050579, 0.947402, 0.071747, 0.540449, 0.727293, -0.421149, -0.542664, -0.947155,
        0.386628, -0.928267, -1.920035, -0.235111, -0.737119, 4.068471, -1.41462,
    ]
)
_BIAS = -2.552916


def _bounds(n: int, size: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """[lo, hi) of the centred window of each position, cut at the series' ends."""
    i = np.arange(n)
    lo = np.maximum(i - size // 2, 0)
    return lo, np.minimum(i - size // 2 + size, n)


def _pad(x: FloatArray, size: int) -> FloatArray:
    """``x`` mirrored at both ends (``d c b a | a b c d | d c b a``) by half a window.

    Mirroring, unlike repeating the end value, adds no run of identical intervals (which read
    as regular rhythm and biased short series towards not-AF), and at the streaming end it lets
    the newest beats count for the beats not yet received.
    """
    half = size // 2
    return np.pad(x, (half, size - half - 1), mode="symmetric")


def _mean(x: FloatArray, size: int, valid: BoolArray | None = None) -> FloatArray:
    """Centred moving mean over ``size`` beats (ends mirrored), of the ``valid`` ones only."""
    n = x.size
    size = max(1, min(size, n))
    w = np.ones(n) if valid is None else valid.astype(np.float64)
    cs = np.concatenate(([0.0], np.cumsum(_pad(np.where(w > 0, x, 0.0), size))))
    cw = np.concatenate(([0.0], np.cumsum(_pad(w, size))))
    total, count = cs[size:] - cs[:-size], cw[size:] - cw[:-size]
    return np.where(count > 0, total / np.maximum(count, 1e-12), 0.0)


def _median(x: FloatArray, size: int) -> FloatArray:
    """Centred moving median over ``size`` (odd) beats, ends mirrored as in :func:`_mean`."""
    n = x.size
    size = max(1, min(size, n if n % 2 else n - 1))
    view = np.lib.stride_tricks.sliding_window_view(_pad(x, size), size)
    out = np.empty(n)
    chunk = 8192  # bounds the temporary copy np.median makes of the windows
    for s in range(0, n, chunk):
        out[s : s + chunk] = np.median(view[s : s + chunk], axis=1)
    return out


def _nearest_lag_diff(x: FloatArray, lags: int) -> tuple[FloatArray, BoolArray]:
    """|x[i] − x[i−k]| minimised over k = 1..lags, and where at least one lag exists."""
    out = np.full(x.size, np.inf)
    for k in range(1, lags + 1):
        if x.size > k:
            out[k:] = np.minimum(out[k:], np.abs(x[k:] - x[:-k]))
    valid = np.isfinite(out)
    out[~valid] = 0.0
    return out, valid


def _normal_irregularity(rr: FloatArray, ref: FloatArray, lags: int) -> FloatArray:
    premature = rr < PREMATURE_RATIO * ref
    excluded = premature.copy()
    excluded[1:] |= premature[:-1]
    idx = np.flatnonzero(~excluded)
    if idx.size < lags + 2:
        idx = np.arange(rr.size)
    x = rr[idx]
    d, ok = _nearest_lag_diff(x, lags)
    d = d / ref[idx]
    d_ok = d[ok] if np.any(ok) else d
    g_ok = _median(d_ok, NORMAL_MEDIAN_BEATS)
    g = np.empty(idx.size)
    if np.any(ok):
        # The first normal beats have no earlier one to compare with: they take the first
        # value that exists instead of a zero (a zero reads as perfectly regular).
        pos_ok = np.flatnonzero(ok)
        g = g_ok[np.clip(np.searchsorted(pos_ok, np.arange(idx.size)), 0, pos_ok.size - 1)]
    else:
        g = g_ok
    # Every beat takes the value of the last normal beat at or before it.
    pos = np.searchsorted(idx, np.arange(rr.size), side="right") - 1
    return _mean(g[np.clip(pos, 0, idx.size - 1)], SMOOTH_BEATS)


def _block_irregularity(rr: FloatArray, ref: FloatArray, k: int) -> FloatArray:
    """Relative change between successive sums of ``k`` intervals (smoothed median).

    An ectopic beat shifts one R wave, so the sum of the premature interval and its pause, and
    every sum of k intervals of a bigeminy (k = 2) or trigeminy (k = 3), stays that of the
    baseline rhythm; in AF the sums are as irregular as the intervals.
    """
    n = rr.size
    if n < 2 * k:
        return np.full(n, 0.0)
    sums = np.convolve(rr, np.ones(k), mode="valid")  # sums[j] = rr[j] + ... + rr[j+k-1]
    d = np.abs(sums[k:] - sums[:-k]) / (k * ref[2 * k - 1 :])
    g = _median(d, NORMAL_MEDIAN_BEATS)
    return _mean(np.concatenate((np.full(2 * k - 1, g[0]), g)), SMOOTH_BEATS)


def _density(rr: FloatArray, tolerance: float) -> FloatArray:
    """Share of the centred window's intervals within ``tolerance`` (relative) of each one.

    Sinus rhythm with ectopy keeps its intervals in a few tight clusters (normal, premature,
    pause), each interval has many close neighbours; AF spreads them out.
    """
    n = rr.size
    window = max(1, min(DENSITY_BEATS, n))
    lo, hi = _bounds(n, window)
    out = np.empty(n)
    half = window // 2
    edges: list[int] = list(range(n))
    if n >= window:
        view = np.lib.stride_tricks.sliding_window_view(rr, window)
        chunk = 16384
        for s in range(0, view.shape[0], chunk):
            v = view[s : s + chunk]
            centre = rr[half + s : half + s + v.shape[0], None]
            close = np.abs(v - centre) < tolerance * centre
            out[half + s : half + s + v.shape[0]] = np.count_nonzero(close, axis=1) / window
        edges = [*range(half), *range(n - (window - half - 1), n)]
    for i in edges:
        w = rr[lo[i] : hi[i]]
        out[i] = np.count_nonzero(np.abs(w - rr[i]) < tolerance * rr[i]) / w.size
    return out


def _single_share(codes: NDArray[np.int64], window: int) -> FloatArray:
    """Share of the centred window's values that occur only once in it (cut at the ends).

    Unlike the share of distinct values, this does not grow as the window shrinks for a rhythm
    that revisits a few values (a short strip of sinus rhythm scored as AF-like before).
    """
    n = codes.size
    window = max(1, min(window, n))
    lo, hi = _bounds(n, window)
    out = np.empty(n, dtype=np.float64)
    half = window // 2

    def singles(srt: NDArray[np.int64]) -> NDArray[np.int64]:
        new = np.ones(srt.shape, dtype=bool)
        new[:, 1:] = srt[:, 1:] != srt[:, :-1]
        last = np.ones(srt.shape, dtype=bool)
        last[:, :-1] = srt[:, :-1] != srt[:, 1:]
        return np.asarray(np.count_nonzero(new & last, axis=1), dtype=np.int64)

    edges: list[int] = list(range(n))
    if n >= window:
        view = np.lib.stride_tricks.sliding_window_view(codes, window)
        chunk = 16384
        for s in range(0, view.shape[0], chunk):
            srt = np.sort(view[s : s + chunk], axis=1)
            out[half + s : half + s + srt.shape[0]] = singles(srt) / window
        edges = [*range(half), *range(n - (window - half - 1), n)]
    for i in edges:
        srt = np.sort(codes[lo[i] : hi[i]])[None, :]
        out[i] = singles(srt)[0] / (hi[i] - lo[i])
    return out


def af_features(rr_ms: FloatArray) -> FloatArray:
    """The per-beat features (rows = beats) described in the module docstring."""
    rr = np.clip(np.asarray(rr_ms, dtype=np.float64), 200.0, 3000.0)
    n = rr.size
    eps = 1e-3
    ref = _median(rr, REF_BEATS)
    premature = (rr < PREMATURE_RATIO * ref).astype(np.float64)
    mean = _mean(rr, SMOOTH_BEATS)
    mean_sq = _mean(rr**2, SMOOTH_BEATS)
    cv = np.sqrt(np.maximum(mean_sq - mean**2, 1e-9)) / mean
    has_prev = np.arange(n) >= 1
    rel_diff = np.abs(np.diff(rr, prepend=rr[0])) / ref
    plain = _mean(_median(rel_diff[1:], 9) if n > 1 else rel_diff, SMOOTH_BEATS)
    if n > 1:
        plain = np.concatenate((plain[:1], plain))
    turning = np.zeros(n)
    inner = np.zeros(n, dtype=bool)
    if n > 2:
        turning[1:-1] = ((rr[1:-1] - rr[:-2]) * (rr[1:-1] - rr[2:]) > 0).astype(np.float64)
        inner[1:-1] = True
    near3, has3 = _nearest_lag_diff(rr, 3)
    lag3 = _median((near3 / ref)[has3], 15) if np.any(has3) else near3
    lag3_full = np.full(n, lag3[0] if lag3.size else 0.0)
    lag3_full[has3] = lag3
    lag3 = _mean(lag3_full, SMOOTH_BEATS)
    wide_ref = _median(rr, WIDE_REF_BEATS)
    near4 = _mean((np.abs(rr - wide_ref) < 0.04 * wide_ref).astype(np.float64), SMOOTH_BEATS)
    near8 = _mean((np.abs(rr - wide_ref) < 0.08 * wide_ref).astype(np.float64), SMOOTH_BEATS)
    delta = np.diff(rr, prepend=rr[0])
    cell = np.clip(np.floor(delta / PAIR_CELL_MS).astype(np.int64), -30, 30) + 30
    prev = np.concatenate(([30], cell[:-1]))
    codes = np.where((cell == 30) & (prev == 30), -1, cell * 61 + prev)
    cells = _single_share(codes, PAIR_WINDOW_BEATS)
    # After an ectopic beat the next interval is long (the compensatory pause); in AF what
    # follows a short interval is as random as the rest, and in sinus arrhythmia it is short
    # again.  So only a share of compensated shorts (10 % under the local median, followed by
    # one 5 % over it) above one half is evidence, of ectopy; below it says nothing.
    dev = rr / ref - 1.0
    after_short = np.concatenate(([False], dev[:-1] < -0.10))
    compensated = after_short & (dev > 0.05)
    shorts = _mean(after_short.astype(np.float64), SMOOTH_BEATS, has_prev)
    pauses = _mean(compensated.astype(np.float64), SMOOTH_BEATS, has_prev)
    compensation = np.maximum((pauses + 0.01) / (shorts + 0.02) - 0.5, 0.0)
    return np.column_stack(
        [
            np.log(_block_irregularity(rr, ref, 2) + eps),
            np.log(_block_irregularity(rr, ref, 3) + eps),
            _mean(_density(rr, DENSITY_TOLERANCE), SMOOTH_BEATS),
            np.log(_normal_irregularity(rr, ref, 1) + eps),
            np.log(_normal_irregularity(rr, ref, 2) + eps),
            np.log(lag3 + eps),
            _mean(premature, SMOOTH_BEATS),
            np.log(plain + eps),
            _mean(turning, SMOOTH_BEATS, inner) if n > 2 else turning,
            np.log(cv),
            np.log(mean / 1000.0),
            near4,
            near8,
            cells,
            compensation,
        ]
    )


def _score(features: FloatArray) -> FloatArray:
    z = (features - _FEATURE_MEAN) / _FEATURE_SD
    return np.asarray(z @ _WEIGHTS + _BIAS, dtype=np.float64)


def af_score(rr_ms: FloatArray) -> FloatArray:
    """Per-beat AF score (log-odds scale); positive means AF."""
    rr = np.asarray(rr_ms, dtype=np.float64)
    if rr.size == 0:
        return np.zeros(0)
    return _score(af_features(rr))


def true_runs(mask: BoolArray) -> list[tuple[int, int]]:
    """(start, end inclusive) of the runs of True."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    return [(int(a), int(b) - 1) for a, b in zip(starts, stops, strict=True)]


def levels_rule(features: FloatArray) -> BoolArray:
    """Beats whose rhythm switches among a few discrete rates: never AF.

    When ≥ ``LEVELS_DENSITY`` of the window's intervals lie within 5 % of each interval and the
    intervals differ by under ``LEVELS_NEAR`` (median, relative) from the nearest of the two
    normal and of the three intervals before them, the rhythm switches among a few rates
    (competing atrial foci, a wandering pacemaker, flutter with alternating block): irregular,
    but not the random intervals of AF.  No training record has such a rhythm, so the weights
    cannot learn it (its cost in sensitivity is in docs/dsp.md).
    """
    near = np.exp(features[:, _NEAR_LAGS]) < LEVELS_NEAR
    return np.asarray((features[:, _DENSITY] > LEVELS_DENSITY) & near.all(axis=1))


def af_raw(features: FloatArray) -> BoolArray:
    """Per-beat AF before the run-length rule: score > ``AF_THRESHOLD`` outside
    :func:`levels_rule`."""
    return (_score(features) > AF_THRESHOLD) & ~levels_rule(features)


def min_run_beats(n_beats: int) -> int:
    """Shortest AF run kept in a series of ``n_beats``: ``MIN_EPISODE_BEATS``, or half a short
    series (but at least ``MIN_SERIES_BEATS``), so a strip shorter than two episodes can still be
    flagged when most of it is AF."""
    return min(MIN_EPISODE_BEATS, max(MIN_SERIES_BEATS, n_beats // 2))


def drop_short_runs(af: BoolArray) -> BoolArray:
    """``af`` with the runs shorter than :func:`min_run_beats` cleared (a copy).

    A run cut by the end of a series of two episodes or more is censored, not short: its beats
    so far are kept from ``MIN_OPEN_RUN_BEATS`` on (so a streamed onset is flagged early, and
    revised if the run stops short once more beats arrive).  A short strip is judged whole.
    """
    out = np.array(af, dtype=bool)
    shortest = min_run_beats(out.size)
    for start, end in true_runs(out):
        open_end = end == out.size - 1 and out.size >= 2 * MIN_EPISODE_BEATS
        need = min(shortest, MIN_OPEN_RUN_BEATS) if open_end else shortest
        if end - start + 1 < need:
            out[start : end + 1] = False
    return out


def classify(rr_ms: FloatArray) -> tuple[BoolArray, BoolArray]:
    """Per-beat (AF, irregular but not AF) decisions.

    AF: :func:`af_raw`, runs shorter than :func:`min_run_beats` dropped.  Irregular, not AF: the
    plain irregularity (smoothed 9-beat median |ΔRR| / local median RR) above
    ``IRREGULAR_THRESHOLD`` where the beat is not AF, runs as short dropped the same way —
    frequent or patterned ectopy, multifocal atrial tachycardia / wandering pacemaker, flutter
    with variable conduction, sinus pauses and arrests: rhythms an RR-only irregularity
    threshold would call AF.  A series shorter than ``MIN_SERIES_BEATS`` gets neither.
    """
    rr = np.asarray(rr_ms, dtype=np.float64)
    if rr.size < MIN_SERIES_BEATS:
        none = np.zeros(rr.size, dtype=bool)
        return none, none.copy()
    features = af_features(rr)
    af = drop_short_runs(af_raw(features))
    irregular = drop_short_runs((np.exp(features[:, _PLAIN]) > IRREGULAR_THRESHOLD) & ~af)
    return af, irregular


def detect_af(rr_ms: FloatArray) -> BoolArray:
    """Per-beat AF decision (see :func:`classify`)."""
    return classify(rr_ms)[0]


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
    #: Irregular rhythm that is not AF (see :func:`classify`); None, like ``af_burden_pct``,
    #: for a series shorter than ``MIN_SERIES_BEATS``.
    irregular_pct: float | None = None
    irregular_episodes: tuple[Episode, ...] = ()


def analyze_rhythm(
    rr_ms: FloatArray, times_s: FloatArray | None = None, *, window_s: float | None = None
) -> RhythmResult:
    """AF episodes and burden, irregular-not-AF episodes, pauses, brady/tachycardia share and
    ectopic-beat count.

    Beat ``i`` is the beat ending interval ``rr_ms[i]``; its time is ``times_s[i]`` when given,
    else the running sum of the intervals.  Bradycardia / tachycardia are the share of beats
    whose 10-beat running heart rate is < 50 / > 100 /min.  Ectopic beats are counted outside AF
    (in AF every beat looks ectopic) as premature intervals followed by a longer one.  Below
    ``MIN_SERIES_BEATS`` beats the AF burden and irregular share are None (not judged).
    """
    from edge_gateway.dsp.clean import detect_ectopic

    rr = np.asarray(rr_ms, dtype=np.float64)
    n = rr.size
    t = np.cumsum(rr) / 1000.0 if times_s is None else np.asarray(times_s, dtype=np.float64)
    if n == 0:
        return RhythmResult(0, None, (), (), None, None, 0, None, 0.0)
    af, irregular = classify(rr)

    def episodes_of(mask: BoolArray) -> tuple[Episode, ...]:
        return tuple(
            Episode(a, b, round(float(t[a] - rr[a] / 1000.0), 3), round(float(t[b]), 3))
            for a, b in true_runs(mask)
        )

    judged = n >= MIN_SERIES_BEATS
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
        af_burden_pct=100.0 * float(np.count_nonzero(af)) / n if judged else None,
        af_episodes=episodes_of(af),
        pauses=pauses,
        bradycardia_pct=100.0 * float(np.count_nonzero(hr < BRADY_BPM)) / n,
        tachycardia_pct=100.0 * float(np.count_nonzero(hr > TACHY_BPM)) / n,
        ectopic_beats=int(np.count_nonzero(premature & ~af)),
        mean_hr_bpm=60000.0 / float(rr.mean()),
        coverage=min(1.0, covered / window) if window > 0 else 0.0,
        irregular_pct=100.0 * float(np.count_nonzero(irregular)) / n if judged else None,
        irregular_episodes=episodes_of(irregular),
    )
