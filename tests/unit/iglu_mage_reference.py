"""A line-by-line transcription of R iglu's default MAGE (``mage_ma_single`` with
``CGMS2DayByDay(dt0 = 5, inter_gap = 45)``, max_gap 180, short_ma 5, long_ma 32, direction
"avg"; irinagain/iglu R/mage_ma_single.R and R/utils.R), kept deliberately plain and slow —
R's 1-based indices become ``i - 1``.  Tests compare ``dsp.glucose.mage_ma`` with it.  Not
part of the product."""

from __future__ import annotations

import math

import numpy as np


def _grid(t_s: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # CGMS2DayByDay: drop the earlier of equal times; grid = midnight of the first day +
    # cumsum(rep(5 min)) (so it starts at 00:05), approx() (NA outside), NA strictly inside
    # reading gaps > inter_gap.
    keep = [k for k in range(len(t_s)) if k == len(t_s) - 1 or t_s[k + 1] != t_s[k]]
    tr, gl = t_s[keep], g[keep]
    ndays = math.ceil((tr[-1] - tr[0]) / 86400.0 + 1)
    min_d = math.floor(tr[0] / 86400.0) * 86400.0
    time_out = min_d + 300.0 * np.cumsum(np.full(ndays * 288, 1.0))
    y = np.array([np.interp(x, tr, gl) if tr[0] <= x <= tr[-1] else np.nan for x in time_out])
    for k in range(len(tr) - 1):
        if (tr[k + 1] - tr[k]) / 60.0 > 45:
            y[(time_out > tr[k]) & (time_out < tr[k + 1])] = np.nan
    return time_out, y


def _roll(x: np.ndarray, width: int) -> np.ndarray:
    # zoo::rollapply(width, mean, align = "right", fill = NA, na.rm = TRUE), then the first
    # ``width`` values replaced by the value at ``width``.
    out = np.full(x.size, np.nan)
    for i in range(width - 1, x.size):
        w = x[i - width + 1 : i + 1]
        w = w[~np.isnan(w)]
        out[i] = w.mean() if w.size else np.nan
    out[:width] = out[width - 1]
    return out


def _atomic(time: np.ndarray, gl: np.ndarray) -> list[tuple[float, float, float]]:
    """[(start, end, mage)] for MAGE+ and MAGE− of one segment (NaN mage when none)."""
    n = gl.size
    if np.all(np.isnan(gl)) or n < 7 or n < 32:
        return []
    delta = _roll(gl, 5) - _roll(gl, 32)
    ids, types = [0], [1 if delta[0] > 0 else 0]
    for i in range(1, n):
        if not (np.isnan(gl[i]) or np.isnan(gl[i - 1]) or np.isnan(delta[i])
                or np.isnan(delta[i - 1])):
            if delta[i] * delta[i - 1] < 0:
                ids.append(i)
                types.append(0 if delta[i] < delta[i - 1] else 1)
            elif delta[i] * delta[ids[-1]] < 0:
                prev_delta = delta[ids[-1]]
                ids.append(i)
                types.append(0 if delta[i] < prev_delta else 1)
    ids.append(n - 1)
    types.append(1 if delta[n - 1] > 0 else 0)
    minmax: list[float] = []
    indexes: list[int] = []
    for i in range(len(ids) - 1):
        s1 = ids[i] if i == 0 else indexes[i - 1]
        s2 = ids[i + 1]
        piece = gl[s1 : s2 + 1]
        if types[i] == 0:
            minmax.append(float(np.nanmin(piece)))
            indexes.append(int(np.nanargmin(piece)) + s1)
        else:
            minmax.append(float(np.nanmax(piece)))
            indexes.append(int(np.nanargmax(piece)) + s1)
    sd = float(np.nanstd(gl, ddof=1))
    big_n = len(minmax)

    def diff(a: int, b: int) -> float:  # differences[a, b] = minmax[b] - minmax[a]
        return minmax[b] - minmax[a]

    plus: list[float] = []
    j = prev_j = 0
    while j < big_n:
        delta_v = [diff(p, j) for p in range(prev_j, j + 1)]
        max_v = max(delta_v)
        i = delta_v.index(max_v) + prev_j
        if max_v >= sd:
            for k in range(j, big_n):
                if minmax[k] > minmax[j]:
                    j = k
                if diff(j, k) < -sd or k == big_n - 1:
                    plus.append(minmax[j] - minmax[i])
                    prev_j = k
                    j = k
                    break
        else:
            j += 1
    minus: list[float] = []
    j = prev_j = 0
    while j < big_n:
        delta_v = [diff(p, j) for p in range(prev_j, j + 1)]
        min_v = min(delta_v)
        i = delta_v.index(min_v) + prev_j
        if min_v <= -sd:
            for k in range(j, big_n):
                if minmax[k] < minmax[j]:
                    j = k
                if diff(j, k) > sd or k == big_n - 1:
                    minus.append(minmax[j] - minmax[i])
                    prev_j = j
                    j = k
                    break
        else:
            j += 1
    start, end = float(time[0]), float(time[-1])
    out = []
    if plus:
        out.append((start, end, float(np.mean(plus))))
    if minus:
        out.append((start, end, abs(float(np.mean(minus)))))
    return out


def iglu_mage(t_s: np.ndarray, g: np.ndarray) -> float | None:
    time, gl = _grid(np.asarray(t_s, float), np.asarray(g, float))
    ok = np.flatnonzero(~np.isnan(gl))
    if ok.size == 0:
        return None
    time, gl = time[ok[0] : ok[-1] + 1], gl[ok[0] : ok[-1] + 1]
    if gl.size < 7 or gl.size < 32:
        return None
    gap = np.isnan(gl).astype(int)
    # rle(gap); runs of gap == 1 longer than 180 min split the trace.
    runs: list[tuple[int, int, int]] = []  # (value, start, end exclusive)
    s = 0
    for k in range(1, gap.size + 1):
        if k == gap.size or gap[k] != gap[s]:
            runs.append((int(gap[s]), s, k))
            s = k
    pieces: list[tuple[int, int]] = []
    at = 0
    for v, a, b in runs:
        if v == 1 and (b - a) * 5 > 180:
            if a > at:
                pieces.append((at, a))
            at = b
    pieces.append((at, gl.size))
    rows: list[tuple[float, float, float]] = []
    for a, b in pieces:
        rows += _atomic(time[a:b], gl[a:b])
    if not rows:
        return None
    hours = [e - s0 for s0, e, _ in rows]
    total = sum(hours)
    return float(sum(m * h / total for (_, _, m), h in zip(rows, hours, strict=True)))
