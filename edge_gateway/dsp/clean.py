"""Beat cleaning: find ectopic beats and artefacts in an RR series, correct them, split at gaps.

The published rules each fail one way on real records (see docs/dsp.md): Malik's 20 % rule
compares an interval with the one before it, so after a premature beat the compensatory pause is
judged against the short interval; the Kubios rule (Lipponen & Tarvainen 2019) scales its
threshold by the local spread of successive differences, which is tiny in a quiet elderly heart
and turns ordinary sinus variation into false flags.  Ours compares each interval with the
median of its neighbours (so one odd beat cannot move its own reference) and scales the
threshold by the local spread of those relative deviations, with a floor of 15 %: a quiet heart
gets the floor, a heart with strong respiratory sinus arrhythmia gets a wider band.

Gaps are not interpolated across: a sensor-contact loss or link loss (beat times jumping ahead of
the RR values), an interval outside the physiological range, or a run of more consecutive bad
intervals than one ectopic couplet explains removes those intervals and starts a new segment.
Only isolated flagged intervals inside a segment are replaced, by linear interpolation between
their good neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: Intervals outside this range (ms) are not beats we can trust for HRV: they split the series.
RR_MIN_MS = 250.0
RR_MAX_MS = 2500.0
#: Relative deviation from the local median that always counts as ectopic or artefact.
THRESHOLD_FLOOR = 0.15
#: Multiple of the local robust spread of relative deviations that counts as ectopic.
THRESHOLD_SPREAD = 4.5
#: Neighbours on each side that make the local median reference.
REF_HALF_WIDTH = 5
#: Beats in the window that estimates the local spread.
SPREAD_WINDOW = 91
#: More consecutive flagged intervals than this are a gap, not ectopy (a couplet plus its pause).
MAX_CORRECTABLE_RUN = 3
#: Beat times running ahead of the RR sum by more than this (s) mean beats were lost.
TIME_GAP_TOLERANCE_S = 0.25


@dataclass(frozen=True, slots=True)
class CleanedRR:
    """An RR series after cleaning, aligned with the input (one entry per input interval).

    ``rr_ms`` holds the corrected values (NaN where an interval was removed); ``segment`` numbers
    the uninterrupted runs (-1 for removed intervals); ``flagged`` marks the intervals that were
    replaced by interpolation; ``removed`` those dropped as part of a gap or out of range.
    """

    rr_ms: FloatArray
    segment: IntArray
    flagged: BoolArray
    removed: BoolArray

    @property
    def n_corrected(self) -> int:
        return int(np.count_nonzero(self.flagged))

    @property
    def n_removed(self) -> int:
        return int(np.count_nonzero(self.removed))

    @property
    def valid(self) -> BoolArray:
        return self.segment >= 0


#: Rows of the window matrix partitioned at once: bounds the temporary copy (4096 × 91 × 8 B
#: = 3 MB) instead of copying every window of a 24-hour series (106,000 × 91: 77 MB).
_MEDIAN_CHUNK = 4096


def moving_median(x: FloatArray, size: int) -> FloatArray:
    """Centred running median over ``size`` (odd, at most ``x.size``) values.

    The ends are mirrored about the end values (``d c b | a b c d | c b a``), so the result
    equals ``scipy.ndimage.median_filter(x, size, mode="mirror")`` exactly (the median of an
    odd window is one of its values; tests compare the two).  numpy only: importing
    scipy.ndimage adds 28 MB resident to a process that has numpy (issue 14).
    """
    values = np.asarray(x, dtype=np.float64)
    n = values.size
    if size < 1 or size % 2 == 0 or size > max(n, 1):
        raise ValueError(f"median window must be odd and at most {n} values, not {size}")
    half = size // 2
    if half == 0:
        return values.copy()
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(values, half, mode="reflect"),
                                                       size)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, _MEDIAN_CHUNK):
        block = windows[start : start + _MEDIAN_CHUNK]
        out[start : start + block.shape[0]] = np.partition(block, half, axis=1)[:, half]
    return out


def detect_ectopic(rr_ms: FloatArray) -> BoolArray:
    """Flag intervals that deviate from their neighbours more than sinus rhythm does.

    Returns a mask aligned with ``rr_ms``.  An interval is flagged when its relative deviation
    from the median of the ``REF_HALF_WIDTH`` intervals on each side exceeds the threshold; the
    interval after a flagged premature (short) one is flagged too when it is long by half the
    threshold, because a compensatory pause is only partly compensatory after atrial ectopy.
    NaN entries are treated as missing (never flagged, never used as a reference).
    """
    rr = np.asarray(rr_ms, dtype=np.float64)
    n = rr.size
    flagged = np.zeros(n, dtype=bool)
    if n < 3:
        return flagged
    good = np.isfinite(rr)
    # Fill missing values with the nearest good one so the filters see a contiguous series.
    idx = np.flatnonzero(good)
    if idx.size == 0:
        return flagged
    filled = np.interp(np.arange(n), idx, rr[idx])
    size = min(2 * REF_HALF_WIDTH + 1, n if n % 2 else n - 1)
    ref = moving_median(filled, size)
    dev = (filled - ref) / ref
    # Robust spread of the relative deviations: 1.4826 × local median absolute deviation.
    spread_size = min(SPREAD_WINDOW, n if n % 2 else n - 1)
    spread = 1.4826 * moving_median(np.abs(dev), spread_size)
    thr = np.maximum(THRESHOLD_FLOOR, THRESHOLD_SPREAD * spread)
    flagged = np.abs(dev) > thr
    short = dev < -thr
    # Compensatory pause after a premature beat: long by half the threshold.
    after = np.zeros(n, dtype=bool)
    after[1:] = short[:-1] & (dev[1:] > 0.5 * thr[1:])
    flagged |= after
    flagged &= good
    return np.asarray(flagged, dtype=bool)


def _runs(mask: BoolArray) -> tuple[IntArray, IntArray]:
    """Start and stop (exclusive) indices of the runs of True in ``mask``."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.diff(padded)
    return np.flatnonzero(edges == 1).astype(np.int64), np.flatnonzero(edges == -1).astype(np.int64)


def clean_rr(
    rr_ms: FloatArray,
    times_s: FloatArray | None = None,
    *,
    correct: bool = True,
) -> CleanedRR:
    """Clean an RR series: remove gaps (splitting segments) and correct isolated ectopic beats.

    ``times_s`` (optional) are the times of the beats that end each interval; when given, a
    jump of the beat clock past the RR value (lost beats) splits the series there.  With
    ``correct=False`` nothing is flagged or interpolated: only non-finite values split the
    series, and the values are used exactly as given.
    """
    rr = np.array(rr_ms, dtype=np.float64, copy=True)
    n = rr.size
    removed = ~np.isfinite(rr)
    breaks = np.zeros(n, dtype=bool)  # True where a new segment starts at this interval
    if times_s is not None and n > 1:
        t = np.asarray(times_s, dtype=np.float64)
        if t.shape != rr.shape:
            raise ValueError("times_s and rr_ms must have the same length")
        jump = np.diff(t) - rr[1:] / 1000.0
        breaks[1:] |= jump > TIME_GAP_TOLERANCE_S
    flagged = np.zeros(n, dtype=bool)
    if correct:
        removed |= (rr < RR_MIN_MS) | (rr > RR_MAX_MS)
        probe = np.where(removed, np.nan, rr)
        flagged = detect_ectopic(probe)
        starts, stops = _runs(flagged)
        for start, stop in zip(starts, stops, strict=True):
            if stop - start > MAX_CORRECTABLE_RUN:
                removed[start:stop] = True
        flagged &= ~removed
    # Every removed run ends a segment; so does a time jump.
    breaks[1:] |= removed[:-1] & ~removed[1:]
    if n:
        breaks[0] = True
    seg = np.cumsum(breaks & ~removed) - 1
    # A removed interval in the middle of a run continues no segment.
    segment = np.where(removed, -1, seg).astype(np.int64)
    # Renumber so segments are 0..k-1 without holes.
    if np.any(segment >= 0):
        _, segment_valid = np.unique(segment[segment >= 0], return_inverse=True)
        segment[segment >= 0] = segment_valid
    out = np.where(removed, np.nan, rr)
    if correct and np.any(flagged):
        out = _interpolate_flagged(out, flagged, segment)
    return CleanedRR(rr_ms=out, segment=segment, flagged=flagged, removed=removed)


def _interpolate_flagged(rr: FloatArray, flagged: BoolArray, segment: IntArray) -> FloatArray:
    """Replace flagged intervals by interpolating between good neighbours in their segment."""
    out = rr.copy()
    for seg_id in np.unique(segment[flagged]):
        members = np.flatnonzero(segment == seg_id)
        bad = flagged[members]
        good_idx = members[~bad]
        if good_idx.size == 0:
            # Nothing to anchor on: keep the values rather than invent a rhythm.
            continue
        out[members[bad]] = np.interp(members[bad], good_idx, rr[good_idx])
    return out
