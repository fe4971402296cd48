"""Blood pressure: per-reading classification and averages.

The one table of BP classes (:data:`CLASSES`) — the alert rule (``alerts/rules.py``), the
report and the export all classify through it.  Each guideline keeps its own boundary
convention; a reading takes the highest class whose bound it reaches ("and/or": systolic *or*
diastolic):

- ACC/AHA 2017 (Whelton et al., Hypertension 2018): normal < 120 and < 80; elevated 120–129
  and < 80 (systolic only); stage 1 130–139 or 80–89; stage 2 ≥ 140 or ≥ 90; hypertensive
  crisis **> 180 and/or > 120** (strictly above, as the guideline writes it).
- ESH 2023 (Mancia et al., J Hypertens 2023; the cut-offs of ESC/ESH 2018): optimal < 120 and
  < 80; normal 120–129 and/or 80–84; high normal 130–139 and/or 85–89; grade 1 140–159 and/or
  90–99; grade 2 160–179 and/or 100–109; grade 3 **≥ 180 and/or ≥ 110**.  Isolated systolic
  hypertension (≥ 140 with < 90) is graded by its systolic value, as the guideline does.
  ``esc-esh-2018`` is accepted as another name for it (same bounds).
- ESC 2024 (McEvoy et al., Eur Heart J 2024): non-elevated < 120 and < 70; elevated 120–139
  and/or 70–89; hypertension ≥ 140 and/or ≥ 90.  It has no severe grade of its own; its
  crisis level is ESH grade 3's (≥ 180 and/or ≥ 110), which ESC 2024 also uses for "severe".

The crisis level of a guideline is its top class (:func:`is_crisis`, :func:`crisis_part`).
Morning readings are those taken 04:00–11:59 and evening readings 18:00–23:59 local time
(``utc_offset_s``), the windows of home BP monitoring protocols.  Pressures in mmHg
(``units.mmhg`` converts kPa).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
Guideline = Literal["acc-aha-2017", "esh-2023", "esc-2024", "esc-esh-2018"]

ALGORITHM = "bp/2"
GUIDELINES: tuple[Guideline, ...] = ("acc-aha-2017", "esh-2023", "esc-2024", "esc-esh-2018")
MORNING_HOURS = (4, 12)
EVENING_HOURS = (18, 24)
_INF = float("inf")


@dataclass(frozen=True, slots=True)
class BpClass:
    """One row of a guideline's table: the class is reached when systolic reaches
    ``systolic`` or diastolic reaches ``diastolic`` — at or above, or strictly above when
    ``strict`` (ACC/AHA's crisis)."""

    name: str
    label: str
    systolic: float
    diastolic: float
    strict: bool = False

    def reached(self, systolic: float, diastolic: float) -> bool:
        if self.strict:
            return systolic > self.systolic or diastolic > self.diastolic
        return systolic >= self.systolic or diastolic >= self.diastolic


#: Guideline -> its classes, lowest first; the last one is the guideline's crisis level.
CLASSES: dict[str, tuple[BpClass, ...]] = {
    "acc-aha-2017": (
        BpClass("normal", "Normal", 0.0, 0.0),
        BpClass("elevated", "Elevated", 120.0, _INF),
        BpClass("stage_1", "Stage 1 hypertension", 130.0, 80.0),
        BpClass("stage_2", "Stage 2 hypertension", 140.0, 90.0),
        BpClass("hypertensive_crisis", "Hypertensive crisis", 180.0, 120.0, strict=True),
    ),
    "esh-2023": (
        BpClass("optimal", "Optimal", 0.0, 0.0),
        BpClass("normal", "Normal", 120.0, 80.0),
        BpClass("high_normal", "High normal", 130.0, 85.0),
        BpClass("grade_1", "Grade 1 hypertension", 140.0, 90.0),
        BpClass("grade_2", "Grade 2 hypertension", 160.0, 100.0),
        BpClass("grade_3", "Grade 3 hypertension", 180.0, 110.0),
    ),
    "esc-2024": (
        BpClass("non_elevated", "Non-elevated", 0.0, 0.0),
        BpClass("elevated", "Elevated", 120.0, 70.0),
        BpClass("hypertension", "Hypertension", 140.0, 90.0),
        BpClass("severe_hypertension", "Severe hypertension", 180.0, 110.0),
    ),
}
CLASSES["esc-esh-2018"] = CLASSES["esh-2023"]
#: The guideline the alert rule and the report use unless told otherwise.
DEFAULT_GUIDELINE: Guideline = "acc-aha-2017"
CRISIS_SYSTOLIC = CLASSES[DEFAULT_GUIDELINE][-1].systolic
CRISIS_DIASTOLIC = CLASSES[DEFAULT_GUIDELINE][-1].diastolic


def table(guideline: str = DEFAULT_GUIDELINE) -> tuple[BpClass, ...]:
    """The classes of ``guideline``, lowest first (``ValueError`` for an unknown name)."""
    try:
        return CLASSES[guideline]
    except KeyError:
        raise ValueError(f"unknown guideline {guideline!r}; use one of "
                         f"{', '.join(GUIDELINES)}") from None


def is_crisis(systolic: float, diastolic: float,
              guideline: str = DEFAULT_GUIDELINE) -> bool:
    """Whether a reading reaches ``guideline``'s crisis level (its top class)."""
    return table(guideline)[-1].reached(systolic, diastolic)


def crisis_part(part: str, value: float,
                limit: float | None = None, guideline: str = DEFAULT_GUIDELINE) -> bool:
    """Whether one component reaches the crisis level, with the guideline's own convention
    (> for ACC/AHA, ≥ for ESH); ``limit`` replaces the guideline's bound (a per-patient
    threshold).  The alert rule sees systolic and diastolic as separate readings.  ``part``
    is ``"systolic"`` or ``"diastolic"``."""
    top = table(guideline)[-1]
    bound = (top.systolic if part == "systolic" else top.diastolic) if limit is None else limit
    return value > bound if top.strict else value >= bound


def classify(systolic: float, diastolic: float,
             guideline: str = DEFAULT_GUIDELINE) -> str:
    """The category of one reading under ``guideline``."""
    rows = table(guideline)
    label = rows[0].name
    for row in rows:
        if row.reached(systolic, diastolic):
            label = row.name
    return label


def label_of(name: str, guideline: str = DEFAULT_GUIDELINE) -> str:
    """The display label of class ``name`` under ``guideline``."""
    for row in table(guideline):
        if row.name == name:
            return row.label
    return name


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
    rows = table(guideline)
    classes = tuple(classify(float(s), float(d), guideline) for s, d in zip(sys_, dia, strict=True))
    crisis_at = tuple(
        int(i) for i in range(sys_.size) if is_crisis(float(sys_[i]), float(dia[i]), guideline)
    )
    hour = ((t + utc_offset_s) // 3600 % 24).astype(np.int64)
    morning = (hour >= MORNING_HOURS[0]) & (hour < MORNING_HOURS[1])
    evening = (hour >= EVENING_HOURS[0]) & (hour < EVENING_HOURS[1])
    mean_sys, mean_dia = _mean(sys_), _mean(dia)
    order = {row.name: k for k, row in enumerate(rows)}
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
