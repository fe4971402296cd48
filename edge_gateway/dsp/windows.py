"""Windowed Summaries: the pure step between stored readings and the outbox.

The scheduler (outside dsp/) reads a window of readings from SQLite and hands the arrays here;
each function returns one :class:`~edge_gateway.reading.Summary` whose ``algorithm`` names the
code that made it and whose ``coverage`` is the share of the window with valid data.  Nothing
here reads a clock: ``created_at`` is the window end unless the caller passes the time.

Times are seconds since the Unix epoch (UTC), one per value, as stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..reading import Summary, utc
from . import bp as bp_mod
from . import glucose as glucose_mod
from . import hrv as hrv_mod
from . import rhythm as rhythm_mod

FloatArray = NDArray[np.float64]


def _window(
    times_utc_s: FloatArray, window_start: datetime, window_end: datetime
) -> tuple[NDArray[np.bool_], float]:
    start, end = utc(window_start).timestamp(), utc(window_end).timestamp()
    if end <= start:
        raise ValueError("window_end must be after window_start")
    t = np.asarray(times_utc_s, dtype=np.float64)
    return (t >= start) & (t < end), end - start


def _freeze(metrics: dict[str, Any]) -> Mapping[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, float) and not np.isfinite(value):
            value = None
        clean[key] = value
    return MappingProxyType(clean)


def _summary(
    kind: str, patient_id: str | None, window_start: datetime, window_end: datetime,
    metrics: dict[str, Any], coverage: float, algorithm: str, created_at: datetime | None,
    device_id: str | None,
) -> Summary:
    return Summary(
        patient_id=patient_id,
        kind=kind,
        window_start=utc(window_start),
        window_end=utc(window_end),
        metrics=_freeze(metrics),
        coverage=float(min(1.0, max(0.0, coverage))),
        algorithm=algorithm,
        created_at=utc(created_at) if created_at is not None else utc(window_end),
        device_id=device_id,
    )


def summarize_hrv(
    times_utc_s: FloatArray, rr_ms: FloatArray, window_start: datetime, window_end: datetime,
    patient_id: str | None, *, created_at: datetime | None = None, device_id: str | None = None,
) -> Summary:
    """HRV of the RR intervals whose beat falls in [window_start, window_end)."""
    sel, span = _window(times_utc_s, window_start, window_end)
    t = np.asarray(times_utc_s, dtype=np.float64)[sel]
    rr = np.asarray(rr_ms, dtype=np.float64)[sel]
    result = hrv_mod.hrv(rr, t, window_s=span)
    metrics = result.as_dict()
    coverage = metrics.pop("coverage")
    return _summary("hrv", patient_id, window_start, window_end, metrics, coverage,
                    hrv_mod.ALGORITHM, created_at, device_id)


def summarize_rhythm(
    times_utc_s: FloatArray, rr_ms: FloatArray, window_start: datetime, window_end: datetime,
    patient_id: str | None, *, created_at: datetime | None = None, device_id: str | None = None,
) -> Summary:
    """AF burden and episodes, pauses, brady/tachycardia and ectopy in the window.

    Episode and pause beat indices count from the first beat of the window; their times are
    epoch seconds.
    """
    sel, span = _window(times_utc_s, window_start, window_end)
    t = np.asarray(times_utc_s, dtype=np.float64)[sel]
    rr = np.asarray(rr_ms, dtype=np.float64)[sel]
    result = rhythm_mod.analyze_rhythm(rr, t, window_s=span)
    metrics: dict[str, Any] = {
        "n_beats": result.n_beats,
        "af_burden_pct": result.af_burden_pct,
        "af_episodes": tuple(
            MappingProxyType({"start_beat": e.start_beat, "end_beat": e.end_beat,
                              "start_s": e.start_s, "end_s": e.end_s})
            for e in result.af_episodes
        ),
        "pauses": tuple(
            MappingProxyType({"beat": p.beat, "duration_ms": p.duration_ms, "severe": p.severe})
            for p in result.pauses
        ),
        "bradycardia_pct": result.bradycardia_pct,
        "tachycardia_pct": result.tachycardia_pct,
        "ectopic_beats": result.ectopic_beats,
        "mean_hr_bpm": result.mean_hr_bpm,
    }
    return _summary("rhythm", patient_id, window_start, window_end, metrics, result.coverage,
                    rhythm_mod.ALGORITHM, created_at, device_id)


def summarize_glucose(
    times_utc_s: FloatArray, glucose_mg_dl: FloatArray, window_start: datetime,
    window_end: datetime, patient_id: str | None, *, created_at: datetime | None = None,
    device_id: str | None = None, interval_s: float | None = None,
) -> Summary:
    """Consensus metrics, MAGE, AGP and trend of the readings in the window."""
    sel, span = _window(times_utc_s, window_start, window_end)
    t = np.asarray(times_utc_s, dtype=np.float64)[sel]
    g = np.asarray(glucose_mg_dl, dtype=np.float64)[sel]
    result = glucose_mod.glucose_metrics(t, g, window_s=span, interval_s=interval_s)
    metrics = result.as_dict()
    trend = metrics.pop("trend")
    metrics.update({f"trend_{k}": v for k, v in trend.items()})
    metrics["agp"] = tuple(MappingProxyType(row) for row in metrics["agp"])
    coverage = (result.coverage_pct or 0.0) / 100.0
    return _summary("glucose", patient_id, window_start, window_end, metrics, coverage,
                    glucose_mod.ALGORITHM, created_at, device_id)


def summarize_bp(
    times_utc_s: FloatArray, systolic_mmhg: FloatArray, diastolic_mmhg: FloatArray,
    window_start: datetime, window_end: datetime, patient_id: str | None, *,
    pulse_bpm: FloatArray | None = None, guideline: bp_mod.Guideline = "acc-aha-2017",
    created_at: datetime | None = None, device_id: str | None = None,
) -> Summary:
    """Classes, means and the crisis flag of the measurements in the window.

    Coverage is 1 when the window holds at least one measurement (a cuff measures on demand;
    there is no expected rate to fall short of), else 0.
    """
    sel, _ = _window(times_utc_s, window_start, window_end)
    t = np.asarray(times_utc_s, dtype=np.float64)[sel]
    pulse = np.asarray(pulse_bpm, dtype=np.float64)[sel] if pulse_bpm is not None else None
    result = bp_mod.bp_summary(
        t, np.asarray(systolic_mmhg, dtype=np.float64)[sel],
        np.asarray(diastolic_mmhg, dtype=np.float64)[sel], pulse, guideline=guideline,
    )
    metrics: dict[str, Any] = {
        "n": result.n,
        "guideline": result.guideline,
        "mean_systolic_mmhg": result.mean_systolic,
        "mean_diastolic_mmhg": result.mean_diastolic,
        "mean_pulse_pressure_mmhg": result.mean_pulse_pressure,
        "mean_pulse_bpm": result.mean_pulse_bpm,
        "morning_mean_systolic_mmhg": result.morning_mean_systolic,
        "morning_mean_diastolic_mmhg": result.morning_mean_diastolic,
        "evening_mean_systolic_mmhg": result.evening_mean_systolic,
        "evening_mean_diastolic_mmhg": result.evening_mean_diastolic,
        "classes": MappingProxyType(dict(result.class_counts)),
        "mean_class": result.mean_class,
        "hypertensive_crisis": result.crisis,
    }
    return _summary("bp", patient_id, window_start, window_end, metrics,
                    1.0 if result.n else 0.0, bp_mod.ALGORITHM, created_at, device_id)


def epoch(dt: datetime) -> float:
    """Seconds since the epoch of an aware datetime (helper for callers building arrays)."""
    return utc(dt).timestamp()


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
