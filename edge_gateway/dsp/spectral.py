"""Frequency-domain HRV: Welch on the RR series resampled at 4 Hz, and Lomb–Scargle.

Powers are in ms².  Welch: each segment (gaps split the series) is interpolated with a
not-a-knot cubic spline (:func:`cubic_spline`, numpy only) at 4 Hz, mean-removed, and cut into
Hann windows of 256 s (or the longest segment when shorter) with 50 % overlap; the one-sided
densities (ms²/Hz) of all windows of all segments are averaged.  Lomb–Scargle works on the
uneven beat times directly (gaps are simply missing samples) over 0.003–0.400 Hz in steps of
0.001 Hz, or of 1/(2T) when that is finer (T the span): a periodogram's peaks are 1/T wide, and
a fixed 0.001 Hz step samples the periodogram of a record longer than ~17 minutes too sparsely
for its band sums (Fantasia f1o02, 2 h: LF/HF 0.186 on the 0.001 Hz grid, 0.2566 from 2 samples
per 1/T on, as hrv-analysis's astropy grid gives; docs/dsp.md).  Its periodogram P(f) is scaled
to a density S(f) = 2·T·P(f)/N ms²/Hz (N the beat count), so a sinusoid of amplitude A
integrates to A²/2 as in the Welch estimate.  Band powers are the density summed over the band's
bins times the bin width, with bands [low, high).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

VLF_HZ = (0.0033, 0.04)
LF_HZ = (0.04, 0.15)
HF_HZ = (0.15, 0.40)
RESAMPLE_HZ = 4.0
WELCH_WINDOW_S = 256.0
LOMB_GRID_HZ = (0.003, 0.400, 0.001)
#: Frequency samples per 1/T: the band sums of f1o02 converge from 2 on (1: +2 %).
LOMB_SAMPLES_PER_PEAK = 2
#: Below this many seconds of uninterrupted beats a segment is too short for the LF band.
MIN_SEGMENT_S = 60.0


@dataclass(frozen=True, slots=True)
class BandPowers:
    vlf_ms2: float | None
    lf_ms2: float | None
    hf_ms2: float | None

    @property
    def lf_hf(self) -> float | None:
        if self.lf_ms2 is None or self.hf_ms2 is None or self.hf_ms2 <= 0:
            return None
        return self.lf_ms2 / self.hf_ms2

    @property
    def lf_nu(self) -> float | None:
        if self.lf_ms2 is None or self.hf_ms2 is None or self.lf_ms2 + self.hf_ms2 <= 0:
            return None
        return 100.0 * self.lf_ms2 / (self.lf_ms2 + self.hf_ms2)

    @property
    def hf_nu(self) -> float | None:
        if self.lf_ms2 is None or self.hf_ms2 is None or self.lf_ms2 + self.hf_ms2 <= 0:
            return None
        return 100.0 * self.hf_ms2 / (self.lf_ms2 + self.hf_ms2)


NO_POWER = BandPowers(None, None, None)


def _band(freqs: FloatArray, psd: FloatArray, band: tuple[float, float], df: float) -> float:
    sel = (freqs >= band[0]) & (freqs < band[1])
    return float(psd[sel].sum() * df)


def _band_powers(freqs: FloatArray, psd: FloatArray, df: float, span_s: float) -> BandPowers:
    # A band is only resolved when the record holds at least one of its slowest cycles.
    vlf = _band(freqs, psd, VLF_HZ, df) if span_s >= 1.0 / VLF_HZ[0] else None
    lf = _band(freqs, psd, LF_HZ, df) if span_s >= 1.0 / LF_HZ[0] else None
    hf = _band(freqs, psd, HF_HZ, df) if span_s >= 1.0 / HF_HZ[0] else None
    return BandPowers(vlf, lf, hf)


def _segment_times(
    rr_ms: FloatArray, segment: IntArray, times_s: FloatArray | None
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Beat times (s), values and segment ids of the valid beats."""
    valid = segment >= 0
    if times_s is None:
        # Without a beat clock the time of a beat is the running sum of the intervals, gaps
        # included (a removed interval still took its time).
        t = np.cumsum(np.where(np.isfinite(rr_ms), rr_ms, 0.0)) / 1000.0
    else:
        t = np.asarray(times_s, dtype=np.float64)
    return t[valid], rr_ms[valid], segment[valid]


def welch_density(x: FloatArray, fs: float, nperseg: int) -> tuple[FloatArray, FloatArray]:
    """One-sided Welch density (units²/Hz): periodic Hann windows, 50 % overlap, no detrending.

    The same estimate as ``scipy.signal.welch(x, fs, "hann", nperseg, nperseg // 2,
    detrend=False)``, written out because importing scipy.signal costs the CLI most of a second
    on a Pi.
    """
    step = nperseg - nperseg // 2
    starts = np.arange(0, x.size - nperseg + 1, step)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(nperseg) / nperseg)
    segments = x[starts[:, None] + np.arange(nperseg)] * window
    power = np.abs(np.fft.rfft(segments, axis=1)) ** 2
    psd = power.mean(axis=0) / (fs * float(window @ window))
    # One-sided: every bin but DC (and Nyquist for an even length) carries both signs.
    psd[1 : (nperseg + 1) // 2] *= 2.0
    freqs = np.fft.rfftfreq(nperseg, 1.0 / fs)
    return np.asarray(freqs, dtype=np.float64), np.asarray(psd, dtype=np.float64)


def _solve_tridiagonal(lower: FloatArray, diag: FloatArray, upper: FloatArray,
                       rhs: FloatArray) -> FloatArray:
    """Solve a diagonally dominant tridiagonal system by odd–even (cyclic) reduction.

    Row i reads ``lower[i]·x[i−1] + diag[i]·x[i] + upper[i]·x[i+1] = rhs[i]`` (``lower[0]``
    and ``upper[-1]`` are ignored).  Each level eliminates the odd unknowns from the even rows
    in whole-array operations, so a 24-hour series takes ~17 vectorised levels instead of a
    Python loop over 100,000 rows; diagonal dominance (which reduction preserves) makes it as
    stable as Gaussian elimination.
    """
    n = diag.size
    if n == 1:
        return np.asarray(rhs / diag, dtype=np.float64)
    # One dummy row (x = 0) on each side spares every index test at the ends.
    a = np.concatenate(([0.0, 0.0], lower[1:], [0.0]))
    b = np.concatenate(([1.0], diag, [1.0]))
    c = np.concatenate(([0.0], upper[:-1], [0.0, 0.0]))
    d = np.concatenate(([0.0], rhs, [0.0]))
    even = np.arange(1, n + 1, 2)  # padded positions of rows 0, 2, 4, …
    alpha = -a[even] / b[even - 1]
    gamma = -c[even] / b[even + 1]
    x_even = _solve_tridiagonal(
        alpha * a[even - 1],
        b[even] + alpha * c[even - 1] + gamma * a[even + 1],
        gamma * c[even + 1],
        d[even] + alpha * d[even - 1] + gamma * d[even + 1],
    )
    x = np.zeros(n + 2)
    x[even] = x_even
    odd = np.arange(2, n + 1, 2)
    x[odd] = (d[odd] - a[odd] * x[odd - 1] - c[odd] * x[odd + 1]) / b[odd]
    return x[1 : n + 1]


def _not_a_knot_slopes(x: FloatArray, y: FloatArray) -> FloatArray:
    """First derivatives at the knots of the not-a-knot cubic spline through (x, y).

    The system is scipy's ``CubicSpline`` one (bc_type "not-a-knot", its default, which the
    Welch path used): continuity of the second derivative at the inner knots, and of the third
    at the second and second-to-last.  Those two boundary rows are not diagonally dominant, so
    they are eliminated into their neighbours first, leaving a dominant system for s[1..n−2].
    Two points give the line, three the parabola, as in scipy.
    """
    n = x.size
    dx = np.diff(x)
    m = np.diff(y) / dx
    if n == 2:
        return np.array([m[0], m[0]])
    if n == 3:
        # The parabola through the three points.
        curvature = (m[1] - m[0]) / (x[2] - x[0])
        return np.array([m[0] - curvature * dx[0], m[0] + curvature * dx[0],
                         m[1] + curvature * dx[1]])
    # Inner rows i = 1..n−2: dx[i]·s[i−1] + 2(dx[i−1]+dx[i])·s[i] + dx[i−1]·s[i+1] = r[i].
    lower = dx[1:].copy()
    diag = 2.0 * (dx[:-1] + dx[1:])
    upper = dx[:-1].copy()
    rhs = 3.0 * (dx[1:] * m[:-1] + dx[:-1] * m[1:])
    # Start row: dx[1]·s[0] + d·s[1] = r0; subtracting it from row 1 removes s[0].
    d0 = x[2] - x[0]
    r0 = ((dx[0] + 2.0 * d0) * dx[1] * m[0] + dx[0] ** 2 * m[1]) / d0
    diag[0] -= d0
    rhs[0] -= r0
    # End row: d·s[n−2] + dx[n−3]·s[n−1] = r_end; the same with row n−2.
    d1 = x[-1] - x[-3]
    r1 = (dx[-1] ** 2 * m[-2] + (2.0 * d1 + dx[-1]) * dx[-2] * m[-1]) / d1
    diag[-1] -= d1
    rhs[-1] -= r1
    inner = _solve_tridiagonal(lower, diag, upper, rhs)
    first = (r0 - d0 * inner[0]) / dx[1]
    last = (r1 - d1 * inner[-1]) / dx[-2]
    return np.concatenate(([first], inner, [last]))


def cubic_spline(x: FloatArray, y: FloatArray, at: FloatArray) -> FloatArray:
    """The not-a-knot cubic spline through (x, y) (``x`` strictly increasing, ≥ 2 points),
    evaluated at ``at`` (outside [x0, xn] the end pieces are extended).

    Equal to ``scipy.interpolate.CubicSpline(x, y)(at)`` to rounding (tests compare them on
    random data and on every shared record); numpy only, because importing
    scipy.interpolate adds 53 MB resident to a process that has numpy (issue 14).
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.size < 2 or xs.shape != ys.shape or not np.all(np.diff(xs) > 0):
        raise ValueError("a spline needs ≥ 2 points with strictly increasing x")
    s = _not_a_knot_slopes(xs, ys)
    dx = np.diff(xs)
    m = np.diff(ys) / dx
    t = (s[:-1] + s[1:] - 2.0 * m) / dx
    c3, c2 = t / dx, (m - s[:-1]) / dx - t
    pts = np.asarray(at, dtype=np.float64)
    i = np.clip(np.searchsorted(xs, pts, side="right") - 1, 0, xs.size - 2)
    h = pts - xs[i]
    return np.asarray(((c3[i] * h + c2[i]) * h + s[:-1][i]) * h + ys[i], dtype=np.float64)


def welch_powers(
    rr_ms: FloatArray, segment: IntArray, times_s: FloatArray | None = None
) -> BandPowers:
    """VLF, LF and HF power (ms²) by Welch's method on the 4 Hz cubic resampling."""
    t, x, seg = _segment_times(rr_ms, segment, times_s)
    if x.size < 4:
        return NO_POWER
    bounds = np.flatnonzero(np.diff(seg)) + 1
    pieces = [
        (tt, xx)
        for tt, xx in zip(np.split(t, bounds), np.split(x, bounds), strict=True)
        if xx.size >= 4 and tt[-1] - tt[0] >= MIN_SEGMENT_S and np.all(np.diff(tt) > 0)
    ]
    if not pieces:
        return NO_POWER
    longest = max(tt[-1] - tt[0] for tt, _ in pieces)
    nperseg = int(min(WELCH_WINDOW_S, longest) * RESAMPLE_HZ)
    total = None
    weight = 0
    for tt, xx in pieces:
        grid = np.arange(tt[0], tt[-1], 1.0 / RESAMPLE_HZ)
        if grid.size < nperseg:
            continue
        y = cubic_spline(tt, xx, grid)
        freqs, psd = welch_density(y - y.mean(), RESAMPLE_HZ, nperseg)
        n_windows = 1 + (grid.size - nperseg) // (nperseg - nperseg // 2)
        total = psd * n_windows if total is None else total + psd * n_windows
        weight += n_windows
    if total is None:
        return NO_POWER
    psd_mean = np.asarray(total / weight, dtype=np.float64)
    df = float(freqs[1] - freqs[0])
    return _band_powers(np.asarray(freqs, dtype=np.float64), psd_mean, df, longest)


#: Grid rate (Hz) of the Press–Rybicki extirpolation: 10 points per period at 2 × 0.4 Hz.
LOMB_GRID_RATE_HZ = 8.0


def _extirpolated_sums(t: FloatArray, w: FloatArray, freqs: FloatArray,
                       period_s: float = 1000.0) -> NDArray[np.complex128]:
    """Σ_j w_j·exp(2πi f t_j) for ``freqs`` that are multiples of 1/``period_s``, fast.

    Press & Rybicki (1989): each sample is spread onto a regular grid with 4-point Lagrange
    weights and one FFT gives every frequency; O(N + G log G) instead of O(N × F).  The grid
    spans a whole number of ``period_s`` (itself a whole number of grid steps) so that each
    frequency is an FFT bin.
    """
    step = 1.0 / LOMB_GRID_RATE_HZ
    span = float(t[-1] - t[0]) if t.size else 0.0
    per = round(period_s * LOMB_GRID_RATE_HZ)
    size = math.ceil((span + 4 * step) / (per * step)) * per
    u = (t - t[0]) / step + 1.0  # grid position; +1 leaves room for the leftmost node
    base = np.floor(u).astype(np.int64) - 1
    frac = u - base  # in [1, 2): nodes at 0, 1, 2, 3 relative to base
    grid = np.zeros(size)
    for node in range(4):
        weight = np.ones_like(frac)
        for other in range(4):
            if other != node:
                weight *= (frac - other) / (node - other)
        grid += np.bincount(base + node, weights=w * weight, minlength=size)[:size]
    spectrum = np.conj(np.fft.rfft(grid))
    bins = np.rint(freqs * size * step).astype(np.int64)
    # Undo the shift of the time origin (t[0] sits at grid position 1).
    phase = np.exp(2j * np.pi * freqs * (t[0] - step))
    return np.asarray(spectrum[bins] * phase, dtype=np.complex128)


def lomb_scargle(t: FloatArray, y: FloatArray, freqs: FloatArray,
                 period_s: float = 1000.0) -> FloatArray:
    """Classical (unnormalised) Lomb–Scargle periodogram of mean-removed ``y``.

    P(f) = ½[(Σ y cos ω(t−τ))² / Σ cos² ω(t−τ) + (Σ y sin ω(t−τ))² / Σ sin² ω(t−τ)], the same
    quantity as ``scipy.signal.lombscargle(..., normalize=False)``, with the trigonometric sums
    taken from :func:`_extirpolated_sums` (scipy's direct sums need O(N × F) time and, in
    scipy 1.17, gigabytes for a 24-hour series).  ``freqs`` are multiples of 1/``period_s``
    (a whole number of 1/8 s): 0.001 Hz steps with the default.
    """
    n = t.size
    z = _extirpolated_sums(t, y, freqs, period_s)  # Σ y e^{iωt}
    z2 = _extirpolated_sums(t, np.ones(n), 2.0 * freqs, period_s)  # Σ e^{2iωt}
    theta = 0.5 * np.arctan2(z2.imag, z2.real)  # ωτ
    ct, st = np.cos(theta), np.sin(theta)
    rot = z2.real * np.cos(2 * theta) + z2.imag * np.sin(2 * theta)
    a = z.real * ct + z.imag * st
    b = z.imag * ct - z.real * st
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 0.5 * (a * a / (0.5 * (n + rot)) + b * b / (0.5 * (n - rot)))
    return np.asarray(np.nan_to_num(p), dtype=np.float64)


def lomb_powers(
    rr_ms: FloatArray, segment: IntArray, times_s: FloatArray | None = None
) -> BandPowers:
    """VLF, LF and HF power (ms²) from the Lomb–Scargle periodogram on the fixed grid."""
    t, x, _ = _segment_times(rr_ms, segment, times_s)
    if x.size < 4:
        return NO_POWER
    span = float(t[-1] - t[0])
    if span <= 0:
        return NO_POWER
    freqs, period = lomb_grid(span)
    p = lomb_scargle(t, x - x.mean(), freqs, period)
    density = 2.0 * span * p / x.size
    return _band_powers(freqs, density, 1.0 / period, span)


def lomb_grid(span_s: float) -> tuple[FloatArray, float]:
    """The Lomb frequencies for a record of ``span_s`` seconds and their period 1/step:
    0.001 Hz steps, or 1/(2T) rounded to a whole number of 1/8 s when finer."""
    lo, hi, step = LOMB_GRID_HZ
    period = max(1.0 / step, math.ceil(LOMB_SAMPLES_PER_PEAK * span_s * LOMB_GRID_RATE_HZ)
                 / LOMB_GRID_RATE_HZ)
    df = 1.0 / period
    k = np.arange(math.ceil(lo * period - 1e-9), math.floor(hi * period + 1e-9) + 1)
    return np.asarray(k * df, dtype=np.float64), period
