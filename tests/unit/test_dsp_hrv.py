"""HRV definitions checked against values computed by hand on small series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_gateway.dsp.hrv import hrv, poincare, time_domain
from edge_gateway.dsp.nonlinear import dfa_alpha, dfa_fluctuations, sample_entropy
from edge_gateway.dsp.spectral import lomb_powers, welch_powers

RR = np.array([800.0, 850.0, 790.0, 900.0, 880.0, 810.0])
SEG0 = np.zeros(RR.size, dtype=np.int64)


def test_time_domain_by_hand() -> None:
    td = time_domain(RR, SEG0)
    # mean = 5030 / 6; diffs = 50, -60, 110, -20, -70
    assert td["mean_rr_ms"] == pytest.approx(5030 / 6)
    assert td["mean_hr_bpm"] == pytest.approx(60000 / (5030 / 6))
    dev = RR - 5030 / 6
    assert td["sdnn_ms"] == pytest.approx(math.sqrt((dev**2).sum() / 5))
    assert td["rmssd_ms"] == pytest.approx(math.sqrt((50**2 + 60**2 + 110**2 + 20**2 + 70**2) / 5))
    d = np.array([50, -60, 110, -20, -70.0])
    assert td["sdsd_ms"] == pytest.approx(math.sqrt(((d - d.mean()) ** 2).sum() / 4))
    # |Δ| > 50 strictly: 60, 110, 70 -> 3 of 5 (50 itself does not count)
    assert td["pnn50_pct"] == pytest.approx(60.0)
    # |Δ| > 20 strictly: 50, 60, 110, 70 -> 4 of 5 (20 itself does not count)
    assert td["pnn20_pct"] == pytest.approx(80.0)
    assert td["cvnn"] == pytest.approx(td["sdnn_ms"] / td["mean_rr_ms"])


def test_differences_never_cross_a_gap() -> None:
    rr = np.array([800.0, 810.0, 1200.0, 1210.0])
    seg = np.array([0, 0, 1, 1])
    td = time_domain(rr, seg)
    assert td["rmssd_ms"] == pytest.approx(10.0)
    assert td["pnn50_pct"] == 0.0


def test_poincare_by_hand() -> None:
    pc = poincare(RR, SEG0)
    a, b = RR[:-1], RR[1:]
    across = (b - a) / math.sqrt(2)
    along = (b + a) / math.sqrt(2)
    assert pc["sd1_ms"] == pytest.approx(np.std(across, ddof=1))
    assert pc["sd2_ms"] == pytest.approx(np.std(along, ddof=1))
    # SD1 is SDSD / √2 exactly with both ddof=1.
    assert pc["sd1_ms"] == pytest.approx(time_domain(RR, SEG0)["sdsd_ms"] / math.sqrt(2))


def test_sample_entropy_by_hand() -> None:
    # x = 1 2 1 2 1 2 1, r = 0.5, m = 2: templates start at 0..4 (N − m = 5 starts).
    # Length-2 templates (1,2),(2,1),(1,2),(2,1),(1,2): matches (ordered, i≠j): 3·2 + 2·1 = 8.
    # Length-3 templates (1,2,1),(2,1,2),(1,2,1),(2,1,2),(1,2,1): 8 as well -> SampEn = 0.
    x = np.array([1, 2, 1, 2, 1, 2, 1.0])
    assert sample_entropy(x, 0.5) == pytest.approx(0.0)
    # x = 1 2 3 1 2 4 1 2: r = 0.5. Length-2 at starts 0..5: (1,2),(2,3),(3,1),(1,2),(2,4),(4,1)
    # -> B = 2 (the two (1,2)); length-3: (1,2,3),(2,3,1),(3,1,2),(1,2,4),(2,4,1),(4,1,2)
    # -> A = 0 -> undefined.
    assert sample_entropy(np.array([1, 2, 3, 1, 2, 4, 1, 2.0]), 0.5) is None
    # x = 1 2 1 2 1 3 1 2 1: starts 0..6; length-2: (1,2),(2,1),(1,2),(2,1),(1,3),(3,1),(1,2)
    # B: (1,2)×3 -> 6, (2,1)×2 -> 2 => 8; length-3: (1,2,1),(2,1,2),(1,2,1),(2,1,3),(1,3,1),
    # (3,1,2),(1,2,1): (1,2,1)×3 -> 6 => A = 6; SampEn = ln(8/6).
    x = np.array([1, 2, 1, 2, 1, 3, 1, 2, 1.0])
    assert sample_entropy(x, 0.5) == pytest.approx(math.log(8 / 6))


def test_sample_entropy_respects_segments() -> None:
    x = np.array([1, 2, 1, 2, 1, 2, 1.0])
    seg = np.array([0, 0, 0, 1, 1, 1, 1])
    # Templates of length 3 exist at starts 0 and 3, 4 -> (1,2,1), (2,1,2), (1,2,1):
    # B (length 2 on those starts): (1,2),(2,1),(1,2) -> 2; A: (1,2,1)×2 -> 2.
    assert sample_entropy(x, 0.5, segment=seg) == pytest.approx(0.0)


def test_dfa_white_noise_and_random_walk() -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(size=20000)
    # Long boxes: white noise scales as n^0.5.  (Over 4–16 beats linear detrending biases the
    # estimate up to ~0.58, as it does in neurokit2: the cross-check tests compare that range.)
    assert dfa_alpha(noise, tuple(range(16, 65))) == pytest.approx(0.5, abs=0.05)
    walk = np.cumsum(rng.normal(size=20000))
    assert dfa_alpha(walk, tuple(range(16, 65))) == pytest.approx(1.5, abs=0.06)


def test_dfa_fluctuation_of_one_box_by_hand() -> None:
    # Series of 5 with box size 4 -> starts range(0, 1, 2) = [0]; profile of x - mean.
    x = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    profile = np.cumsum(x - x.mean())[:4]
    t = np.arange(4.0)
    fit = np.polyval(np.polyfit(t, profile, 1), t)
    expected = math.sqrt(np.mean((profile - fit) ** 2))
    assert dfa_fluctuations(x, (4,))[0] == pytest.approx(expected)


def _sine_rr(freq_hz: float, amp_ms: float, duration_s: float) -> np.ndarray:
    rr = []
    t = 0.0
    while t < duration_s:
        value = 1000.0 + amp_ms * math.sin(2 * math.pi * freq_hz * t)
        rr.append(value)
        t += value / 1000.0
    return np.array(rr)


@pytest.mark.parametrize("method", [welch_powers, lomb_powers])
def test_spectral_power_of_a_sinusoid(method: object) -> None:
    # A 0.25 Hz modulation of amplitude 40 ms carries 40²/2 = 800 ms², all of it in HF.
    rr = _sine_rr(0.25, 40.0, 600.0)
    seg = np.zeros(rr.size, dtype=np.int64)
    powers = method(rr, seg)  # type: ignore[operator]
    assert powers.hf_ms2 == pytest.approx(800.0, rel=0.1)
    assert powers.lf_ms2 < 0.05 * powers.hf_ms2


def test_lf_sinusoid_lands_in_lf() -> None:
    rr = _sine_rr(0.1, 30.0, 600.0)
    result = hrv(rr, clean=False)
    assert result.lf_ms2 == pytest.approx(450.0, rel=0.1)
    assert result.lf_lomb_ms2 == pytest.approx(450.0, rel=0.1)
    assert result.lf_hf is not None and result.lf_hf > 10


def test_short_series_gives_none_not_errors() -> None:
    result = hrv(np.array([800.0]))
    assert result.n_beats == 1
    assert result.sdnn_ms is None and result.rmssd_ms is None and result.sampen is None
    assert result.lf_ms2 is None and result.dfa_alpha1 is None
    empty = hrv(np.array([], dtype=float))
    assert empty.n_beats == 0 and empty.mean_rr_ms is None and empty.coverage == 0.0


def test_coverage_counts_only_valid_beats() -> None:
    rr = np.full(100, 1000.0)
    t = np.cumsum(rr) / 1000.0
    t[50:] += 100.0  # 100 s lost: window 200 s, 100 s covered
    result = hrv(rr, t)
    assert result.coverage == pytest.approx(0.5, abs=0.01)
    assert hrv(rr, t, window_s=400.0).coverage == pytest.approx(0.25, abs=0.01)


def _brute_sampen(x: np.ndarray, r: float, m: int = 2) -> float:
    n_starts = x.size - m
    short = np.column_stack([x[k : k + n_starts] for k in range(m)])
    long_ = np.column_stack([x[k : k + n_starts] for k in range(m + 1)])
    b = a = 0
    for i in range(n_starts):
        b += int(np.count_nonzero(np.max(np.abs(short - short[i]), axis=1) <= r)) - 1
        a += int(np.count_nonzero(np.max(np.abs(long_ - long_[i]), axis=1) <= r)) - 1
    return -math.log(a / b)


def test_sample_entropy_long_series_close_to_exact() -> None:
    # Above SAMPEN_MATRIX_MAX the diagonals are sampled: within 0.5 % of the exact count here.
    rng = np.random.default_rng(11)
    beats = np.arange(4000)
    x = 800 + 40 * np.sin(beats / 3.0) + 30 * np.sin(beats / 400.0) + rng.normal(0, 15, 4000)
    r = 0.2 * float(np.std(x, ddof=1))
    assert sample_entropy(x, r) == pytest.approx(_brute_sampen(x, r), rel=0.005)


def test_sample_entropy_matrix_path_is_exact() -> None:
    rng = np.random.default_rng(5)
    x = np.round(800 + rng.normal(0, 30, 700))
    r = 0.2 * float(np.std(x, ddof=1))
    assert sample_entropy(x, r) == pytest.approx(_brute_sampen(x, r), rel=1e-12)


@pytest.mark.parametrize(("n", "nperseg"), [(1200, 1024), (5000, 1024), (999, 256)])
def test_welch_density_equals_scipy(n: int, nperseg: int) -> None:
    from scipy.signal import welch

    from edge_gateway.dsp.spectral import welch_density

    x = np.random.default_rng(n).normal(size=n)
    freqs, psd = welch_density(x, 4.0, nperseg)
    ref_f, ref_p = welch(x, fs=4.0, window="hann", nperseg=nperseg, noverlap=nperseg // 2,
                         detrend=False, scaling="density")
    np.testing.assert_allclose(freqs, ref_f)
    np.testing.assert_allclose(psd, ref_p, rtol=1e-10, atol=1e-15)
