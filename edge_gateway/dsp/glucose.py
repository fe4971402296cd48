"""Glucose metrics after the international consensus (Battelino et al., Diabetes Care 2019;
events after its 2023 update, Battelino et al., Lancet Diabetes Endocrinol 2023).

Times are seconds since the Unix epoch (UTC); glucose in mg/dL (``units.MGDL_PER_MMOLL`` converts).

- coverage: readings × sampling interval / window length (the consensus "% time CGM active");
  the interval is the median spacing of the readings unless given;
- mean, SD (ddof=1), CV = SD / mean, GMI (%) = 3.31 + 0.02392 × mean (Bergenstal 2018);
- TBR level 2 (< 54), level 1 (54 ≤ g < 70), TIR (70 ≤ g ≤ 180), TAR level 1 (180 < g ≤ 250),
  level 2 (> 250), each as % of readings;
- events (2023 consensus): an event starts after ≥ 15 consecutive minutes below (above) the
  threshold and ends only after ≥ 15 consecutive minutes back on the other side — a single
  reading back in range does not end it.  Hypoglycaemia level 1 < 70 (ends ≥ 70), level 2
  < 54 (ends ≥ 54); hyperglycaemia level 1 > 180 (ends ≤ 180), level 2 > 250 (ends ≤ 250);
  extended hypoglycaemia: ≥ 120 consecutive minutes < 70, ending after 15 minutes ≥ 70.
  A duration is last − first reading + one sampling interval (three 5-minute readings are
  15 minutes); a gap longer than twice the interval breaks a run and closes an open event;
- LBGI / HBGI (Kovatchev 2006): f = 1.509 × (ln(g)^1.084 − 5.381), risk = 10 f², averaged over
  all readings with the low (f < 0) or high (f > 0) part;
- MAGE: the moving-average method of Fernandes et al. 2022 as iglu implements it by default
  (see :func:`mage_ma`);
- AGP: 5/25/50/75/95th percentiles (linear interpolation, as R's type 7) per hour of day;
- trend: the least-squares slope over the last 15 minutes (mg/dL/min), its arrow, and the
  glucose predicted 20 and 30 minutes ahead on that line (the low alert looks at these).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_gateway.units import MGDL_PER_MMOLL

FloatArray = NDArray[np.float64]

ALGORITHM = "glucose/1"
EVENT_MIN_S = 15 * 60
EXTENDED_HYPO_MIN_S = 120 * 60
TREND_WINDOW_S = 15 * 60
AGP_PERCENTILES = (5, 25, 50, 75, 95)
#: iglu's MAGE defaults: 5-minute grid, interpolate across ≤ 45 min, split at gaps > 180 min.
MAGE_GRID_S = 300
MAGE_INTER_GAP_S = 45 * 60
MAGE_MAX_GAP_S = 180 * 60
MAGE_SHORT_MA = 5
MAGE_LONG_MA = 32

#: (lower bound mg/dL/min, name, arrow) from the steepest rise down; first match wins.
TREND_ARROWS = (
    (3.0, "rising_quickly", "↑↑"),
    (2.0, "rising", "↑"),
    (1.0, "rising_slowly", "↗"),
    (-1.0, "steady", "→"),
    (-2.0, "falling_slowly", "↘"),
    (-3.0, "falling", "↓"),
    (-math.inf, "falling_quickly", "↓↓"),
)


@dataclass(frozen=True, slots=True)
class Trend:
    rate_mg_dl_min: float | None
    arrow: str | None
    direction: str | None
    predicted_20min_mg_dl: float | None
    predicted_30min_mg_dl: float | None


@dataclass(frozen=True, slots=True)
class GlucoseResult:
    n: int
    coverage_pct: float | None
    mean_mg_dl: float | None
    mean_mmol_l: float | None
    sd_mg_dl: float | None
    cv_pct: float | None
    gmi_pct: float | None
    tbr2_pct: float | None
    tbr1_pct: float | None
    tir_pct: float | None
    tar1_pct: float | None
    tar2_pct: float | None
    lbgi: float | None
    hbgi: float | None
    mage_mg_dl: float | None
    hypo_events: int
    hyper_events: int
    agp: tuple[dict[str, float | int | None], ...]
    trend: Trend
    #: Level 2 events (< 54, > 250) and extended hypoglycaemia (2023 consensus).
    hypo2_events: int = 0
    hyper2_events: int = 0
    extended_hypo_events: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["agp"] = [dict(row) for row in self.agp]
        return out


def to_mg_dl(mmol_l: FloatArray) -> FloatArray:
    return np.asarray(mmol_l, dtype=np.float64) * MGDL_PER_MMOLL


def _pct(mask: NDArray[np.bool_]) -> float:
    return 100.0 * float(np.count_nonzero(mask)) / mask.size


def risk_indices(g_mg_dl: FloatArray) -> tuple[float, float]:
    """(LBGI, HBGI) after Kovatchev: the symmetrised risk of each reading, averaged."""
    g = np.maximum(np.asarray(g_mg_dl, dtype=np.float64), 1.0)
    f = 1.509 * (np.log(g) ** 1.084 - 5.381)
    risk = 10.0 * f**2
    return float(np.mean(np.where(f < 0, risk, 0.0))), float(np.mean(np.where(f > 0, risk, 0.0)))


def count_events(
    t_s: FloatArray, g: FloatArray, inside: NDArray[np.bool_], interval_s: float,
    *, start_s: float = EVENT_MIN_S, end_s: float = EVENT_MIN_S,
) -> int:
    """Events of the 2023 consensus: one starts once ``inside`` readings have lasted
    ``start_s`` (last − first + one interval) and ends once readings outside have lasted
    ``end_s``; a gap over twice the interval breaks both runs and closes an open event."""
    count = 0
    in_event = False
    run_in: float | None = None  # first reading of the current inside run
    run_out: float | None = None  # first reading of the current run back outside
    prev: float | None = None
    for k in range(t_s.size):
        now = float(t_s[k])
        if prev is not None and now - prev > 2 * interval_s:
            in_event = False
            run_in = run_out = None
        prev = now
        if inside[k]:
            run_out = None
            if run_in is None:
                run_in = now
            if not in_event and now - run_in + interval_s >= start_s:
                in_event = True
                count += 1
        else:
            run_in = None
            if in_event:
                if run_out is None:
                    run_out = now
                if now - run_out + interval_s >= end_s:
                    in_event = False
                    run_out = None
    return count


def agp_profile(
    t_s: FloatArray, g: FloatArray, utc_offset_s: float = 0.0
) -> tuple[dict[str, float | int | None], ...]:
    """Percentiles of glucose for each hour of the (local) day."""
    hours = ((t_s + utc_offset_s) // 3600 % 24).astype(np.int64)
    rows: list[dict[str, float | int | None]] = []
    for hour in range(24):
        values = g[hours == hour]
        row: dict[str, float | int | None] = {"hour": hour, "n": int(values.size)}
        for p in AGP_PERCENTILES:
            row[f"p{p}"] = float(np.percentile(values, p)) if values.size else None
        rows.append(row)
    return tuple(rows)


def trend(t_s: FloatArray, g: FloatArray) -> Trend:
    """Rate of change over the last 15 minutes and the linear forecast 20 and 30 min ahead."""
    if t_s.size < 2:
        return Trend(None, None, None, None, None)
    recent = t_s >= t_s[-1] - TREND_WINDOW_S
    tt, gg = t_s[recent], g[recent]
    if tt.size < 2 or tt[-1] - tt[0] < 4 * 60:
        return Trend(None, None, None, None, None)
    x = (tt - tt[-1]) / 60.0
    slope, intercept = np.polyfit(x, gg, 1)
    rate = float(slope)
    arrow = name = None
    for lower, label, symbol in TREND_ARROWS:
        if rate >= lower:
            arrow, name = symbol, label
            break
    return Trend(rate, arrow, name, float(intercept + 20 * slope), float(intercept + 30 * slope))


def _moving_average(x: FloatArray, width: int) -> FloatArray:
    """Trailing mean over ``width`` points ignoring NaN (partial windows at the start)."""
    valid = np.isfinite(x)
    csum = np.concatenate(([0.0], np.cumsum(np.where(valid, x, 0.0))))
    ccnt = np.concatenate(([0], np.cumsum(valid)))
    idx = np.arange(x.size)
    lo = np.maximum(idx - width + 1, 0)
    n = ccnt[idx + 1] - ccnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (csum[idx + 1] - csum[lo]) / n
    out = np.where(n > 0, out, np.nan)
    # As iglu: the first ``width`` values take the first full window's value.
    fill = out[width - 1] if x.size >= width else out[-1]
    out[: min(width, x.size)] = fill
    return np.asarray(out, dtype=np.float64)


def _excursions(extrema: list[float], sd: float, rising: bool) -> list[float]:
    """Heights of the excursions larger than ``sd`` between successive turning points.

    Walks the extrema as Fernandes et al. 2022 (and iglu) do: from the lowest point since the
    last excursion, an excursion starts when the rise exceeds ``sd``, rides the peak while it
    keeps rising and ends at the first fall of more than ``sd`` (or the last extremum).  The
    falling case is the same walk on the negated values; as in iglu it restarts from the nadir
    of the excursion it just measured, the rising case from the point that ended it.
    """
    sign = 1.0 if rising else -1.0
    vals = [sign * v for v in extrema]
    n = len(vals)
    heights: list[float] = []
    j = prev_j = 0
    while j < n:
        rise = [vals[j] - vals[p] for p in range(prev_j, j + 1)]
        best = max(rise)
        if best < sd:  # iglu: an excursion of exactly one SD counts
            j += 1
            continue
        i = prev_j + rise.index(best)
        k = j
        while k < n:
            if vals[k] > vals[j]:  # a later equal turning point does not move the peak
                j = k
            if vals[k] - vals[j] < -sd or k == n - 1:
                heights.append(vals[j] - vals[i])
                prev_j = k if rising else j
                j = k
                break
            k += 1
    return heights


def _mage_segment(g: FloatArray) -> tuple[float | None, float | None]:
    """(MAGE+, MAGE−) of one segment on the 5-minute grid (NaN inside short gaps), as iglu's
    ``mage_atomic``: fewer than 7 or than ``long_ma`` grid points give nothing."""
    finite = g[np.isfinite(g)]
    if finite.size < 2 or g.size < 7 or g.size < MAGE_LONG_MA:
        return None, None
    delta = _moving_average(g, MAGE_SHORT_MA) - _moving_average(g, MAGE_LONG_MA)
    n = g.size
    cross_idx = [0]
    cross_max = [bool(delta[0] > 0)]
    for i in range(1, n):
        d, dp = delta[i], delta[i - 1]
        # iglu looks for a crossing only where both readings and both deltas exist; the
        # comparison with the last crossing (for a sign change across NaN deltas) is the
        # "else" of that same test, not a test of its own.
        if np.isfinite(g[i]) and np.isfinite(g[i - 1]) and np.isfinite(d) and np.isfinite(dp):
            if d * dp < 0:
                cross_idx.append(i)
                cross_max.append(bool(d > dp))
            else:
                ref = delta[cross_idx[-1]]
                if d * ref < 0:
                    cross_idx.append(i)
                    cross_max.append(bool(d > ref))
    cross_idx.append(n - 1)
    cross_max.append(bool(delta[-1] > 0))
    extrema: list[float] = []
    prev_at = cross_idx[0]
    for k in range(len(cross_idx) - 1):
        lo = cross_idx[k] if k == 0 else prev_at
        piece = g[lo : cross_idx[k + 1] + 1]
        if not np.any(np.isfinite(piece)):
            continue
        pos = int(np.nanargmax(piece) if cross_max[k] else np.nanargmin(piece))
        extrema.append(float(piece[pos]))
        prev_at = lo + pos
    sd = float(np.std(finite, ddof=1))
    plus = _excursions(extrema, sd, rising=True)
    minus = _excursions(extrema, sd, rising=False)
    return (
        float(np.mean(plus)) if plus else None,
        float(np.mean(minus)) if minus else None,
    )


def mage_ma(t_s: FloatArray, g: FloatArray) -> float | None:
    """MAGE by iglu's default method (Fernandes et al. 2022, direction "avg").

    The readings are interpolated linearly onto iglu's 5-minute grid (``CGMS2DayByDay``: the
    first point is 00:05 UTC of the first day — midnight itself is not on it, so a reading
    exactly at midnight only shapes the line to 00:05), not across gaps over 45 min (those
    grid points are NaN); the trace is split where a run of NaN grid points is longer than
    180 min.  In each segment the crossings of the 5- and 32-point trailing moving averages
    bracket the peaks and nadirs, and excursions of at least the segment's SD (ddof=1) are
    measured nadir→peak (MAGE+) and peak→nadir (MAGE−).  The result is the mean of every
    segment's MAGE+ and MAGE−, weighted by segment duration.  Readings at the same time: the
    last one counts (as iglu).
    """
    if t_s.size < 2:
        return None
    t_s = np.asarray(t_s, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    if np.any(np.diff(t_s) == 0):
        keep_last = np.append(np.diff(t_s) != 0, True)
        t_s, g = t_s[keep_last], g[keep_last]
        if t_s.size < 2:
            return None
    day0 = math.floor(float(t_s[0]) / 86400.0) * 86400.0
    first = max(1, math.ceil((float(t_s[0]) - day0) / MAGE_GRID_S))
    last = math.floor((float(t_s[-1]) - day0) / MAGE_GRID_S)
    grid = day0 + np.arange(first, last + 1) * float(MAGE_GRID_S)
    if grid.size < 2:
        return None
    values = np.interp(grid, t_s, g)
    # Grid points inside a gap longer than inter_gap are missing, not interpolated.
    right = np.clip(np.searchsorted(t_s, grid, side="left"), 0, t_s.size - 1)
    left = np.clip(right - 1, 0, t_s.size - 1)
    exact = t_s[right] == grid
    gap = (t_s[right] - t_s[left]) > MAGE_INTER_GAP_S
    values = np.where(gap & ~exact, np.nan, values)
    finite_at = np.flatnonzero(np.isfinite(values))
    if finite_at.size == 0:
        return None
    values = values[finite_at[0] : finite_at[-1] + 1]
    grid = grid[finite_at[0] : finite_at[-1] + 1]
    if values.size < 7 or values.size < MAGE_LONG_MA:
        return None
    # Segments: split at runs of NaN grid points longer than max_gap (iglu counts the
    # missing grid points, not the time between readings).
    nan = ~np.isfinite(values)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], nan.astype(np.int8), [0]))))
    starts, ends = edges[0::2], edges[1::2]
    long_runs = [(a, b) for a, b in zip(starts, ends, strict=True)
                 if (b - a) * MAGE_GRID_S > MAGE_MAX_GAP_S]
    pieces: list[tuple[int, int]] = []
    at = 0
    for a, b in long_runs:
        pieces.append((at, a))
        at = b
    pieces.append((at, values.size))
    total = weight = 0.0
    for lo, hi in pieces:
        seg_vals = values[lo:hi]
        seg_grid = grid[lo:hi]
        if seg_vals.size == 0 or not np.any(np.isfinite(seg_vals)):
            continue
        plus, minus = _mage_segment(seg_vals)
        hours = float(seg_grid[-1] - seg_grid[0])
        for part in (plus, minus):
            if part is not None:
                total += part * hours
                weight += hours
    if weight <= 0:
        return None
    return total / weight


def glucose_metrics(
    t_s: FloatArray,
    g_mg_dl: FloatArray,
    *,
    window_s: float | None = None,
    interval_s: float | None = None,
    utc_offset_s: float = 0.0,
) -> GlucoseResult:
    """All consensus metrics, MAGE, AGP and trend for one person's readings."""
    t = np.asarray(t_s, dtype=np.float64)
    g = np.asarray(g_mg_dl, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, g = t[order], g[order]
    keep = np.isfinite(g) & np.isfinite(t)
    t, g = t[keep], g[keep]
    n = int(g.size)
    if n == 0:
        return GlucoseResult(
            0, 0.0, None, None, None, None, None, None, None, None, None, None, None, None,
            None, 0, 0, agp_profile(t, g, utc_offset_s), Trend(None, None, None, None, None),
        )
    if interval_s is None:
        interval_s = float(np.median(np.diff(t))) if n > 1 else 300.0
        interval_s = interval_s if interval_s > 0 else 300.0
    if window_s is None:
        window_s = float(t[-1] - t[0]) + interval_s
    mean = float(g.mean())
    sd = float(np.std(g, ddof=1)) if n > 1 else None
    lbgi, hbgi = risk_indices(g)
    return GlucoseResult(
        n=n,
        coverage_pct=min(100.0, 100.0 * n * interval_s / window_s) if window_s > 0 else None,
        mean_mg_dl=mean,
        mean_mmol_l=mean / MGDL_PER_MMOLL,
        sd_mg_dl=sd,
        cv_pct=100.0 * sd / mean if sd is not None and mean > 0 else None,
        gmi_pct=3.31 + 0.02392 * mean,
        tbr2_pct=_pct(g < 54),
        tbr1_pct=_pct((g >= 54) & (g < 70)),
        tir_pct=_pct((g >= 70) & (g <= 180)),
        tar1_pct=_pct((g > 180) & (g <= 250)),
        tar2_pct=_pct(g > 250),
        lbgi=lbgi,
        hbgi=hbgi,
        mage_mg_dl=mage_ma(t, g),
        hypo_events=count_events(t, g, g < 70, interval_s),
        hyper_events=count_events(t, g, g > 180, interval_s),
        agp=agp_profile(t, g, utc_offset_s),
        trend=trend(t, g),
        hypo2_events=count_events(t, g, g < 54, interval_s),
        hyper2_events=count_events(t, g, g > 250, interval_s),
        extended_hypo_events=count_events(t, g, g < 70, interval_s,
                                          start_s=EXTENDED_HYPO_MIN_S),
    )
