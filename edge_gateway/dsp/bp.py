"""Blood pressure: per-reading classification and averages.

Guidelines (a reading takes the higher of its systolic and diastolic categories):

- ACC/AHA 2017 (Whelton et al.): normal < 120 and < 80; elevated 120–129 and < 80; stage 1
  130–139 or 80–89; stage 2 ≥ 140 or ≥ 90; hypertensive crisis > 180 and/or > 120.
- ESC/ESH 2018 (Williams et al.): optimal < 120 and < 80; normal 120–129 and/or 80–84; high
  normal 130–139 and/or 85–89; grade 1 140–159 and/or 90–99; grade 2 160–179 and/or 100–109;
  grade 3 ≥ 180 and/or ≥ 110.  (Isolated systolic hypertension, ≥ 140 with < 90, is graded by
  its systolic value, as the guideline does.)

The hypertensive-crisis flag (> 180 and/or > 120 mmHg) is the same under both guidelines: it is
the level at which either one calls for immediate assessment.  Morning readings are those taken
04:00–11:59 and evening readings 18:00–23:59 local time (``utc_offset_s``), the windows of home
BP monitoring protocols.  Pressures in mmHg (``units.mmhg`` converts kPa).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
Guideline = Literal["acc-aha-2017", "esc-esh-2018"]

ALGORITHM = "bp/1"
GUIDELINES: tuple[Guideline, ...] = ("acc-aha-2017", "esc-esh-2018")
CRISIS_SYSTOLIC = 180.0
CRISIS_DIASTOLIC = 120.0
MORNING_HOURS = (4, 12)
EVENING_HOURS = (18, 24)

# (class, systolic lower bound, diastolic lower bound), from the lowest class up.
_ACC_AHA: tuple[tuple[str, float, float], ...] = (
    ("normal", 0.0, 0.0),
    ("elevated", 120.0, float("inf")),
    ("stage_1", 130.0, 80.0),
    ("stage_2", 140.0, 90.0),
)
_ESC_ESH: tuple[tuple[str, float, float], ...] = (
    ("optimal", 0.0, 0.0),
    ("normal", 120.0, 80.0),
    ("high_normal", 130.0, 85.0),
    ("grade_1", 140.0, 90.0),
    ("grade_2", 160.0, 100.0),
    ("grade_3", 180.0, 110.0),
)


def is_crisis(systolic: float, diastolic: float) -> bool:
    return systolic > CRISIS_SYSTOLIC or diastolic > CRISIS_DIASTOLIC


def classify(systolic: float, diastolic: float, guideline: Guideline = "acc-aha-2017") -> str:
    """The category of one reading under ``guideline``."""
    if guideline == "acc-aha-2017":
        if is_crisis(systolic, diastolic):
            return "hypertensive_crisis"
        table = _ACC_AHA
    elif guideline == "esc-esh-2018":
        table = _ESC_ESH
    else:
        raise ValueError(f"unknown guideline {guideline!r}; use one of {', '.join(GUIDELINES)}")
    label = table[0][0]
    for name, sys_lo, dia_lo in table:
        if systolic >= sys_lo or diastolic >= dia_lo:
            label = name
    return label


@dataclass(frozen=True, slots=True)
class BpResult:
    n: int
    guideline: str
    mean_systolic: float | None
    mean_diastolic: float | None
    mean_pulse_pressure: float | None
    mean_pulse_bpm: float | None
    morning_mean_systolic: float | None
    morning_mean_diastolic: float | None
    evening_mean_systolic: float | None
    evening_mean_diastolic: float | None
    n_morning: int
    n_evening: int
    classes: tuple[str, ...]
    class_counts: dict[str, int]
    mean_class: str | None
    crisis: bool
    crisis_readings: tuple[int, ...]


def _mean(x: FloatArray) -> float | None:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def bp_summary(
    t_s: FloatArray,
    systolic: FloatArray,
    diastolic: FloatArray,
    pulse: FloatArray | None = None,
    *,
    guideline: Guideline = "acc-aha-2017",
    utc_offset_s: float = 0.0,
) -> BpResult:
    """Classes of every reading, means (all, morning, evening), pulse pressure, crisis flag."""
    t = np.asarray(t_s, dtype=np.float64)
    sys_ = np.asarray(systolic, dtype=np.float64)
    dia = np.asarray(diastolic, dtype=np.float64)
    if guideline not in GUIDELINES:
        raise ValueError(f"unknown guideline {guideline!r}; use one of {', '.join(GUIDELINES)}")
    classes = tuple(classify(float(s), float(d), guideline) for s, d in zip(sys_, dia, strict=True))
    crisis_at = tuple(
        int(i) for i in range(sys_.size) if is_crisis(float(sys_[i]), float(dia[i]))
    )
    hour = ((t + utc_offset_s) // 3600 % 24).astype(np.int64)
    morning = (hour >= MORNING_HOURS[0]) & (hour < MORNING_HOURS[1])
    evening = (hour >= EVENING_HOURS[0]) & (hour < EVENING_HOURS[1])
    mean_sys, mean_dia = _mean(sys_), _mean(dia)
    order = {name: k for k, name in enumerate(
        [row[0] for row in (_ACC_AHA if guideline == "acc-aha-2017" else _ESC_ESH)]
        + ["hypertensive_crisis"]
    )}
    counts = Counter(classes)
    return BpResult(
        n=int(sys_.size),
        guideline=guideline,
        mean_systolic=mean_sys,
        mean_diastolic=mean_dia,
        mean_pulse_pressure=_mean(sys_ - dia),
        mean_pulse_bpm=_mean(np.asarray(pulse, dtype=np.float64)) if pulse is not None else None,
        morning_mean_systolic=_mean(sys_[morning]),
        morning_mean_diastolic=_mean(dia[morning]),
        evening_mean_systolic=_mean(sys_[evening]),
        evening_mean_diastolic=_mean(dia[evening]),
        n_morning=int(np.count_nonzero(morning)),
        n_evening=int(np.count_nonzero(evening)),
        classes=classes,
        class_counts=dict(sorted(counts.items(), key=lambda kv: order.get(kv[0], 99))),
        mean_class=(
            classify(mean_sys, mean_dia, guideline)
            if mean_sys is not None and mean_dia is not None else None
        ),
        crisis=bool(crisis_at),
        crisis_readings=crisis_at,
    )
