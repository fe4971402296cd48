"""Nonlinear HRV: sample entropy and detrended fluctuation analysis (DFA).

Both accept a ``segment`` array (one id per interval, as made by :mod:`.clean`) so that no
template or box ever spans a gap: a gap splits the series, it is not bridged.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Box sizes (beats) for the short- and long-term DFA exponents.
DFA_ALPHA1_SCALES = tuple(range(4, 17))
DFA_ALPHA2_SCALES = tuple(range(16, 65))


def _template_starts(segment: IntArray, length: int) -> IntArray:
    """Indices i where x[i:i+length] lies inside one segment."""
    n = segment.size
    if n < length:
        return np.zeros(0, dtype=np.int64)
    ok = segment[: n - length + 1] >= 0
    ok &= segment[: n - length + 1] == segment[length - 1 :]
    return np.flatnonzero(ok).astype(np.int64)


#: Diagonals of the recurrence matrix counted exactly (all offsets up to this many beats) ...
SAMPEN_NEAR_DIAGONALS = 64
#: ... and the stratified sample of the farther ones for long series.
SAMPEN_FAR_DIAGONALS = 256


def _diagonal_plan(n_starts: int) -> tuple[IntArray, FloatArray]:
    """Template offsets k (j = i + k) to count, with the number of offsets each stands for.

    Every offset is counted when there are at most NEAR + FAR of them, so windows up to a few
    hundred beats are exact.  Beyond that the offsets up to NEAR are counted exactly (matches
    are densest near the diagonal, where the rhythm has not drifted yet) and the rest are cut
    into FAR equal strata, each represented by its middle offset weighted by its width.
    """
    last = n_starts - 1
    if last <= SAMPEN_NEAR_DIAGONALS + SAMPEN_FAR_DIAGONALS:
        offsets = np.arange(1, last + 1, dtype=np.int64)
        return offsets, np.ones(offsets.size)
    near = np.arange(1, SAMPEN_NEAR_DIAGONALS + 1, dtype=np.int64)
    edges = np.linspace(SAMPEN_NEAR_DIAGONALS + 1, last + 1, SAMPEN_FAR_DIAGONALS + 1)
    mids = np.floor((edges[:-1] + edges[1:]) / 2).astype(np.int64)
    return np.concatenate((near, mids)), np.concatenate((np.ones(near.size), np.diff(edges)))


#: Up to this many values every pair is compared at once (a 4 MB boolean matrix): the
#: per-diagonal loop's call overhead would dominate a 5-minute window.
SAMPEN_MATRIX_MAX = 2048


def _sample_entropy_matrix(
    finite: FloatArray, usable: NDArray[np.bool_], r: float, m: int
) -> float | None:
    """Exact SampEn for a short series from the full recurrence matrix."""
    n_starts = usable.size
    with np.errstate(invalid="ignore"):
        close = np.abs(finite[:, None] - finite[None, :]) <= r
    match = close[:n_starts, :n_starts] & usable[:, None] & usable[None, :]
    for step in range(1, m):
        match &= close[step : step + n_starts, step : step + n_starts]
    longer = match & close[m : m + n_starts, m : m + n_starts]
    # Ordered pairs i ≠ j: the diagonal (self-matches) is excluded.
    b = int(np.count_nonzero(match)) - int(np.count_nonzero(np.diagonal(match)))
    a = int(np.count_nonzero(longer)) - int(np.count_nonzero(np.diagonal(longer)))
    if a == 0 or b == 0:
        return None
    return -math.log(a / b)


def sample_entropy(
    x: FloatArray, r: float, *, m: int = 2, segment: IntArray | None = None
) -> float | None:
    """Sample entropy SampEn(m, r) = −ln(A / B) with Chebyshev distance and tolerance ``r``.

    B counts pairs of length-m templates within ``r``, A pairs of length-(m+1) templates; as in
    Richman & Moorman (2000) and neurokit2 both use the same N − m template starts.  ``r`` is
    passed explicitly (ours: 0.2 × SDNN with ddof=1).  ``None`` when A or B is zero.

    The pairs are counted along the diagonals of the recurrence matrix (pairs i, i + k): one
    diagonal is a single vectorised pass, O(N) time and memory, and a pair matches at length m
    and m + 1 when m resp. m + 1 successive elementwise matches line up.  Up to
    NEAR + FAR + 1 templates every diagonal is counted, so the result is exact; longer series
    count a fixed number of diagonals (:func:`_diagonal_plan`), which keeps the cost O(N)
    instead of O(N²); on the 24-hour records the result is within 0.5 % of the exact value
    (docs/dsp.md).
    """
    values = np.asarray(x, dtype=np.float64)
    n = values.size
    seg = np.zeros(n, dtype=np.int64) if segment is None else segment
    if n < m + 2 or not math.isfinite(r) or r <= 0:
        return None
    n_starts = n - m
    # A template start is usable when its m + 1 values lie inside one segment.
    usable = np.zeros(n_starts, dtype=bool)
    usable[_template_starts(seg, m + 1)] = True
    if np.count_nonzero(usable) < 2:
        return None
    finite = np.where(seg >= 0, values, np.nan)
    if n <= SAMPEN_MATRIX_MAX:
        return _sample_entropy_matrix(finite, usable, r, m)
    offsets, weights = _diagonal_plan(n_starts)
    a_total = b_total = 0.0
    for k, weight in zip(offsets.tolist(), weights.tolist(), strict=True):
        with np.errstate(invalid="ignore"):
            close = np.abs(finite[: n - k] - finite[k:]) <= r
        length = n_starts - k
        match = usable[:length] & usable[k : k + length] & close[:length]
        for step in range(1, m):
            match &= close[step : step + length]
        b_total += weight * np.count_nonzero(match)
        a_total += weight * np.count_nonzero(match & close[m : m + length])
    if a_total == 0 or b_total == 0:
        return None
    return -math.log(a_total / b_total)


def dfa_fluctuations(
    x: FloatArray, scales: tuple[int, ...], *, segment: IntArray | None = None
) -> FloatArray:
    """RMS fluctuation F(n) of the integrated series for each box size n.

    As neurokit2's ``fractal_dfa(overlap=True)``: the profile is the cumulative sum of the
    mean-removed series; boxes of n beats start every n // 2 beats (the last possible start
    excluded, as there); each box is detrended with a least-squares line and F(n) is the root of
    the mean of the boxes' residual variances (boxes with variance ≤ 1e-8 dropped).  Boxes that
    cross a gap are skipped.
    """
    values = np.asarray(x, dtype=np.float64)
    n = values.size
    seg = np.zeros(n, dtype=np.int64) if segment is None else segment
    valid = seg >= 0
    mean = float(values[valid].mean()) if np.any(valid) else 0.0
    profile = np.cumsum(np.where(valid, values - mean, 0.0))
    out = np.full(len(scales), np.nan)
    for k, size in enumerate(scales):
        step = max(size // 2, 1)
        starts = np.arange(0, n - size, step)
        if starts.size == 0:
            continue
        same = (seg[starts] >= 0) & (seg[starts] == seg[starts + size - 1])
        starts = starts[same]
        if starts.size == 0:
            continue
        boxes = profile[starts[:, None] + np.arange(size)]
        t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
        tt = float(t @ t)
        # Centring each box first keeps the sums small: no cancellation on long records.
        centred = boxes - (boxes.sum(axis=1) / size)[:, None]
        slope = centred @ t / tt
        resid_var = np.einsum("ij,ij->i", centred, centred) / size - slope**2 * tt / size
        resid_var = resid_var[resid_var > 1e-8]
        if resid_var.size:
            out[k] = math.sqrt(float(resid_var.mean()))
    return out


def dfa_alpha(
    x: FloatArray, scales: tuple[int, ...], *, segment: IntArray | None = None
) -> float | None:
    """Slope of log2 F(n) against log2 n over ``scales``; ``None`` with fewer than 3 usable."""
    fluct = dfa_fluctuations(x, scales, segment=segment)
    ok = np.isfinite(fluct) & (fluct > 0)
    if np.count_nonzero(ok) < 3:
        return None
    logn = np.log2(np.asarray(scales, dtype=np.float64)[ok])
    logf = np.log2(fluct[ok])
    slope = np.polyfit(logn, logf, 1)[0]
    return float(slope)
