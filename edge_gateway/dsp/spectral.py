"""Frequency-domain HRV: Welch on the RR series resampled at 4 Hz, and Lomb–Scargle.

Powers are in ms².  Welch: each segment (gaps split the series) is interpolated with a cubic
spline at 4 Hz, mean-removed, and cut into Hann windows of 256 s (or the longest segment when
shorter) with 50 % overlap; the one-sided densities (ms²/Hz) of all windows of all segments are
averaged.  Lomb–Scargle works on the uneven beat times directly (gaps are simply missing
samples) over a fixed grid of 0.003–0.400 Hz in 0.001 Hz steps; its periodogram P(f) is scaled
to a density S(f) = 2·T·P(f)/N ms²/Hz (T the span in s, N the beat count), so a sinusoid of
amplitude A integrates to A²/2 as in the Welch estimate.  Band powers are the density summed
over the band's bins times the bin width, with bands [low, high).
"""

from __future__ import annotations

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


def welch_powers(
    rr_ms: FloatArray, segment: IntArray, times_s: FloatArray | None = None
) -> BandPowers:
    """VLF, LF and HF power (ms²) by Welch's method on the 4 Hz cubic resampling."""
    from scipy.interpolate import CubicSpline
    from scipy.signal import welch

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
        freqs, psd = welch(
            y - y.mean(), fs=RESAMPLE_HZ, window="hann", nperseg=nperseg,
            noverlap=nperseg // 2, detrend=False, scaling="density",
        )
        n_windows = 1 + (grid.size - nperseg) // (nperseg - nperseg // 2)
        total = psd * n_windows if total is None else total + psd * n_windows
        weight += n_windows
    if total is None:
        return NO_POWER
    psd_mean = np.asarray(total / weight, dtype=np.float64)
    df = float(freqs[1] - freqs[0])
    return _band_powers(np.asarray(freqs, dtype=np.float64), psd_mean, df, longest)


def lomb_powers(
    rr_ms: FloatArray, segment: IntArray, times_s: FloatArray | None = None
) -> BandPowers:
    """VLF, LF and HF power (ms²) from the Lomb–Scargle periodogram on the fixed grid."""
    from scipy.signal import lombscargle

    t, x, _ = _segment_times(rr_ms, segment, times_s)
    if x.size < 4:
        return NO_POWER
    span = float(t[-1] - t[0])
    if span <= 0:
        return NO_POWER
    lo, hi, step = LOMB_GRID_HZ
    freqs = np.asarray(np.arange(round((hi - lo) / step) + 1) * step + lo, dtype=np.float64)
    p = lombscargle(t - t[0], x - x.mean(), 2.0 * np.pi * freqs, normalize=False)
    density = 2.0 * span * p / x.size
    return _band_powers(freqs, density, step, span)
