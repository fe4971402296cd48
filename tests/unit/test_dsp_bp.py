"""Blood pressure: guideline boundaries, means, crisis flag."""

from __future__ import annotations

import numpy as np
import pytest

from edge_gateway.dsp.bp import bp_summary, classify

T0 = 1_750_032_000.0 - (1_750_032_000.0 % 86400)  # midnight UTC


@pytest.mark.parametrize(
    ("sys_", "dia", "acc", "esc"),
    [
        (119, 79, "normal", "optimal"),
        (120, 79, "elevated", "normal"),
        (129, 79, "elevated", "normal"),
        (119, 80, "stage_1", "normal"),
        (125, 84, "stage_1", "normal"),
        (130, 70, "stage_1", "high_normal"),
        (118, 85, "stage_1", "high_normal"),
        (139, 89, "stage_1", "high_normal"),
        (140, 70, "stage_2", "grade_1"),
        (120, 90, "stage_2", "grade_1"),
        (160, 95, "stage_2", "grade_2"),
        (150, 100, "stage_2", "grade_2"),
        (180, 105, "stage_2", "grade_3"),
        (170, 110, "stage_2", "grade_3"),
        (181, 100, "hypertensive_crisis", "grade_3"),
        (170, 121, "hypertensive_crisis", "grade_3"),
    ],
)
def test_guideline_boundaries(sys_: float, dia: float, acc: str, esc: str) -> None:
    assert classify(sys_, dia, "acc-aha-2017") == acc
    assert classify(sys_, dia, "esc-esh-2018") == esc


def test_unknown_guideline() -> None:
    with pytest.raises(ValueError):
        classify(120, 80, "jnc7")  # type: ignore[arg-type]


def test_means_morning_evening_and_crisis() -> None:
    hours = np.array([7.0, 8.0, 19.0, 14.0, 3.0])
    t = T0 + 3600 * hours
    sys_ = np.array([130.0, 140.0, 120.0, 110.0, 190.0])
    dia = np.array([85.0, 90.0, 80.0, 70.0, 100.0])
    r = bp_summary(t, sys_, dia, np.array([60.0, 70.0, np.nan, 80.0, 90.0]))
    assert r.n == 5
    assert r.mean_systolic == pytest.approx(138.0)
    assert r.mean_diastolic == pytest.approx(85.0)
    assert r.mean_pulse_pressure == pytest.approx(53.0)
    assert r.mean_pulse_bpm == pytest.approx(75.0)
    assert (r.n_morning, r.morning_mean_systolic) == (2, pytest.approx(135.0))
    assert (r.n_evening, r.evening_mean_diastolic) == (1, pytest.approx(80.0))
    assert r.crisis and r.crisis_readings == (4,)
    assert r.class_counts == {"normal": 1, "stage_1": 2, "stage_2": 1, "hypertensive_crisis": 1}
    assert r.mean_class == "stage_1"
    local = bp_summary(t, sys_, dia, utc_offset_s=-5 * 3600)  # 07:00 UTC is 02:00 local
    assert local.n_morning == 1


def test_empty() -> None:
    r = bp_summary(np.array([]), np.array([]), np.array([]))
    assert r.n == 0 and r.mean_systolic is None and not r.crisis and r.mean_class is None
