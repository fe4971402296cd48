"""Glucose metrics after the international consensus (Battelino et al., Diabetes Care 2019).

Times are seconds since the Unix epoch (UTC); glucose in mg/dL (``units.MGDL_PER_MMOLL`` converts).

- coverage: readings × sampling interval / window length (the consensus "% time CGM active");
  the interval is the median spacing of the readings unless given;
- mean, SD (ddof=1), CV = SD / mean, GMI (%) = 3.31 + 0.02392 × mean (Bergenstal 2018);
- TBR level 2 (< 54), level 1 (54 ≤ g < 70), TIR (70 ≤ g ≤ 180), TAR level 1 (180 < g ≤ 250),
  level 2 (> 250), each as % of readings;
- events: runs of readings below 70 (hypo) or above 180 (hyper) lasting ≥ 15 min, a run being
  broken by a reading back in range or by a gap longer than twice the sampling interval;
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
    t_s: FloatArray, g: FloatArray, inside: NDArray[np.bool_], interval_s: float
) -> int:
    """Runs of ``inside`` readings lasting ≥ 15 min (last − first + one interval)."""
    count = 0
    start = prev = None
    for k in range(t_s.size):
        if inside[k] and start is not None and prev is not None and t_s[k] - prev <= 2 * interval_s:
            prev = float(t_s[k])
            continue
        if start is not None and prev is not None and prev - start + interval_s >= EVENT_MIN_S:
            count += 1
        start = prev = float(t_s[k]) if inside[k] else None
    if start is not None and prev is not None and prev - start + interval_s >= EVENT_MIN_S:
        count += 1
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
        if best <= sd:
            j += 1
            continue
        i = prev_j + rise.index(best)
        k = j
        while k < n:
            if vals[k] >= vals[j]:
                j = k
            if vals[k] - vals[j] < -sd or k == n - 1:
                heights.append(vals[j] - vals[i])
                prev_j = k if rising else j
                j = k
                break
            k += 1
    return heights


def _mage_segment(g: FloatArray) -> tuple[float | None, float | None]:
    """(MAGE+, MAGE−) of one gap-free segment on the 5-minute grid."""
    finite = g[np.isfinite(g)]
    if finite.size < 7 or g.size < MAGE_SHORT_MA or np.std(finite, ddof=1) < 1:
        return None, None
    delta = _moving_average(g, MAGE_SHORT_MA) - _moving_average(g, MAGE_LONG_MA)
    delta = np.where(delta == 0, np.nan, delta)
    n = g.size
    cross_idx = [0]
    cross_max = [bool(delta[0] > 0)]
    last_delta_at = 0
    for i in range(1, n):
        d, dp = delta[i], delta[i - 1]
        if np.isfinite(g[i]) and np.isfinite(g[i - 1]) and np.isfinite(d) and np.isfinite(dp):
            if d * dp < 0:
                cross_idx.append(i)
                cross_max.append(bool(d > dp))
        elif np.isfinite(d):
            ref = delta[cross_idx[-1]]
            if np.isfinite(ref) and d * ref < 0:
                cross_idx.append(i)
                cross_max.append(bool(d > ref))
        last_delta_at = i
    cross_idx.append(last_delta_at)
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

    The readings are interpolated linearly onto a 5-minute grid aligned to midnight UTC (not
    across gaps over 45 min), split into segments at gaps over 180 min; in each segment the
    crossings of the 5- and 32-point trailing moving averages bracket the peaks and nadirs, and
    excursions larger than the segment's SD (ddof=1) are measured nadir→peak (MAGE+) and
    peak→nadir (MAGE−).  The result is the mean of every segment's MAGE+ and MAGE−, weighted by
    segment duration.
    """
    if t_s.size < 2:
        return None
    day0 = math.floor(float(t_s[0]) / 86400.0) * 86400.0
    first = math.ceil((float(t_s[0]) - day0) / MAGE_GRID_S)
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
    # Segments split where the readings themselves are more than max_gap apart.
    big = np.flatnonzero(np.diff(t_s) > MAGE_MAX_GAP_S)
    cuts = [float(t_s[k + 1]) for k in big]
    bounds = np.searchsorted(grid, cuts, side="left")
    total = weight = 0.0
    for seg in np.split(np.arange(grid.size), bounds):
        if seg.size == 0:
            continue
        seg_vals = values[seg]
        ok = np.flatnonzero(np.isfinite(seg_vals))
        if ok.size == 0:
            continue
        seg_vals = seg_vals[ok[0] : ok[-1] + 1]
        seg_grid = grid[seg][ok[0] : ok[-1] + 1]
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
    )
