"""Frequency-domain HRV: Welch on the RR series resampled at 4 Hz, and Lomb–Scargle.

Powers are in ms².  Welch: each segment (gaps split the series) is interpolated with a cubic
spline at 4 Hz, mean-removed, and cut into Hann windows of 256 s (or the longest segment when
shorter) with 50 % overlap; the one-sided densities (ms²/Hz) of all windows of all segments are
averaged.  Lomb–Scargle works on the uneven beat times directly (gaps are simply missing
samples) over 0.003–0.400 Hz in steps of 0.001 Hz, or of 1/(2T) when that is finer (T the
span): a periodogram's peaks are 1/T wide, and a fixed 0.001 Hz step samples the periodogram
of a record longer than ~17 minutes too sparsely for its band sums (Fantasia f1o02, 2 h:
LF/HF 0.186 on the 0.001 Hz grid, 0.2566 from 2 samples per 1/T on, as hrv-analysis's
astropy grid gives; docs/dsp.md).  Its periodogram P(f) is scaled to a density
S(f) = 2·T·P(f)/N ms²/Hz (N the beat count), so a sinusoid of amplitude A integrates to A²/2
as in the Welch estimate.  Band powers are the density summed over the band's bins times the
bin width, with bands [low, high).
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


def welch_powers(
    rr_ms: FloatArray, segment: IntArray, times_s: FloatArray | None = None
) -> BandPowers:
    """VLF, LF and HF power (ms²) by Welch's method on the 4 Hz cubic resampling."""
    from scipy.interpolate import CubicSpline

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
        y = CubicSpline(tt, xx)(grid)
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
