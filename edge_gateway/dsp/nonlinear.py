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


def _count_pairs_within(points: FloatArray, r: float) -> int:
    """Ordered pairs (i ≠ j) whose Chebyshev distance is ≤ r.

    Exact and O(n) in memory: the points are sorted on their first coordinate and compared in
    blocks against the candidates within ±r on it, so memory stays at block × candidates.
    """
    n, dim = points.shape
    if n < 2:
        return 0
    order = np.argsort(points[:, 0], kind="stable")
    pts = np.ascontiguousarray(points[order])
    x0 = pts[:, 0]
    lo = np.searchsorted(x0, x0 - r, side="left")
    hi = np.searchsorted(x0, x0 + r, side="right")
    total = 0
    budget = 4_000_000  # comparisons per block: bounds the temporary arrays to ~32 MB
    i = 0
    while i < n:
        # Grow the block while its candidate window stays within budget.
        j = i + 1
        while j < n and (j - i + 1) * (hi[j] - lo[i]) <= budget:
            j += 1
        a, b = int(lo[i]), int(hi[j - 1])
        block = pts[i:j]
        cand = pts[a:b]
        close = np.abs(block[:, None, 0] - cand[None, :, 0]) <= r
        for k in range(1, dim):
            close &= np.abs(block[:, None, k] - cand[None, :, k]) <= r
        total += int(np.count_nonzero(close))
        i = j
    return int(total) - int(n)  # each point matches itself once


def sample_entropy(
    x: FloatArray, r: float, *, m: int = 2, segment: IntArray | None = None
) -> float | None:
    """Sample entropy SampEn(m, r) = −ln(A / B) with Chebyshev distance and tolerance ``r``.

    B counts pairs of length-m templates within ``r``, A pairs of length-(m+1) templates; as in
    Richman & Moorman (2000) both use the same N − m template starts so the ratio is unbiased.
    ``r`` is passed explicitly (ours: 0.2 × SDNN with ddof=1).  ``None`` when A or B is zero.
    """
    values = np.asarray(x, dtype=np.float64)
    seg = np.zeros(values.size, dtype=np.int64) if segment is None else segment
    starts = _template_starts(seg, m + 1)
    if starts.size < 2 or not math.isfinite(r) or r <= 0:
        return None
    emb_b = np.column_stack([values[starts + k] for k in range(m)])
    emb_a = np.column_stack([values[starts + k] for k in range(m + 1)])
    b = _count_pairs_within(emb_b, r)
    a = _count_pairs_within(emb_a, r)
    if a == 0 or b == 0:
        return None
    return -math.log(a / b)


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
        boxes = np.lib.stride_tricks.sliding_window_view(profile, size)[starts]
        t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
        centred = boxes - boxes.mean(axis=1, keepdims=True)
        slope = centred @ t / float(t @ t)
        resid_var = np.mean(centred**2, axis=1) - slope**2 * float(t @ t) / size
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
