"""What the patient page shows, from the synced summaries (pure: dicts in, dicts out).

The numbers are the hub's own: AGP percentiles and time in ranges come from the newest
``glucose_14d`` summary (``dsp.glucose``), BP classes from the one table in ``dsp.bp``, AF
episodes are merged exactly as the hub's report merges them (``care.report.af_episodes``),
and the range labels, colours and targets are the report's (``care.report.TIR_BANDS``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from edge_gateway.care.report import BP_CLASSES, TIR_BANDS, af_episodes
from edge_gateway.cloud.console import svg
from edge_gateway.dsp import bp
from edge_gateway.reading import parse_iso

#: Summary kinds the patient page reads (the hub's DSP jobs, runtime/dsp_scheduler.py).
KINDS = ("glucose_14d", "glucose_daily", "glucose_meter_daily", "bp_weekly", "rhythm",
         "rhythm_daily", "hrv", "hrv_daily")


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _day(text: Any) -> str:
    t = parse_iso(text) if isinstance(text, str) else None
    return t.strftime("%Y-%m-%d") if t else "?"


def glucose(latest14: Mapping[str, Any] | None, daily: Sequence[Mapping[str, Any]]
            ) -> dict[str, Any] | None:
    if latest14 is None and not daily:
        return None
    out: dict[str, Any] = {"window": None, "metrics": {}, "agp_svg": None, "tir_svg": None,
                           "bands": []}
    if latest14 is not None:
        m = dict(latest14.get("metrics") or {})
        out["window"] = (latest14.get("window_start"), latest14.get("window_end"))
        out["metrics"] = m
        out["coverage"] = _num(latest14.get("coverage"))
        bands = [(label, _num(m.get(key)) or 0.0, colour, target)
                 for label, key, colour, target in TIR_BANDS]
        out["bands"] = bands
        out["agp_svg"] = svg.agp(list(m.get("agp") or []))
        out["tir_svg"] = svg.tir(bands)
    out["daily"] = [{"day": _day(d.get("window_start")),
                     "mean": _num((d.get("metrics") or {}).get("mean_mg_dl")),
                     "tir": _num((d.get("metrics") or {}).get("tir_pct")),
                     "tbr": (_num((d.get("metrics") or {}).get("tbr1_pct")) or 0.0)
                     + (_num((d.get("metrics") or {}).get("tbr2_pct")) or 0.0),
                     "n": (d.get("metrics") or {}).get("n")} for d in daily][-14:]
    return out


def bp_weeks(weekly: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per weekly BP summary, newest first, classed by the one table (ACC/AHA 2017
    unless the summary says which guideline it used)."""
    colours = {name: colour for name, _label, colour in BP_CLASSES}
    rows = []
    for s in weekly:
        m = s.get("metrics") or {}
        sys_, dia = _num(m.get("mean_systolic")), _num(m.get("mean_diastolic"))
        guideline = str(m.get("guideline") or bp.DEFAULT_GUIDELINE)
        try:
            name = m.get("mean_class") or (bp.classify(sys_, dia, guideline)
                                           if sys_ is not None and dia is not None else None)
            label = bp.label_of(str(name), guideline) if name else None
        except ValueError:
            name, label = None, None
        counts = m.get("class_counts") or {}
        rows.append({
            "week": _day(s.get("window_start")), "n": m.get("n"), "sys": sys_, "dia": dia,
            "pulse": _num(m.get("mean_pulse_bpm")), "class": label,
            "colour": colours.get(str(name), "#999999"), "guideline": guideline,
            "morning": (_num(m.get("morning_mean_systolic")),
                        _num(m.get("morning_mean_diastolic"))),
            "evening": (_num(m.get("evening_mean_systolic")),
                        _num(m.get("evening_mean_diastolic"))),
            "counts": ", ".join(f"{bp.label_of(str(k), guideline)} {v}"
                                for k, v in counts.items()) if isinstance(counts, dict) else "",
            "crisis": bool(m.get("crisis")),
        })
    return list(reversed(rows))


def _windows(summ: Sequence[Mapping[str, Any]]) -> list[tuple[datetime, datetime,
                                                              dict[str, Any]]]:
    out = []
    for s in summ:
        a, b = parse_iso(s.get("window_start")), parse_iso(s.get("window_end"))
        if a is not None and b is not None:
            out.append((a, b, dict(s.get("metrics") or {})))
    return out


def rhythm(daily: Sequence[Mapping[str, Any]], short: Sequence[Mapping[str, Any]]
           ) -> dict[str, Any] | None:
    """AF episodes (merged as the hub's report does) and burden, from the daily rhythm
    summaries, or from the 5-minute ones for days without a daily summary yet."""
    wins = _windows(daily)
    covered = {a.date() for a, _b, _m in wins}
    wins += [w for w in _windows(short) if w[0].date() not in covered]
    if not wins:
        return None
    wins.sort(key=lambda w: w[0])
    beats = sum(_num(m.get("n_beats")) or 0.0 for _a, _b, m in wins)
    af_beats = sum((_num(m.get("n_beats")) or 0.0) * (_num(m.get("af_burden_pct")) or 0.0)
                   / 100.0 for _a, _b, m in wins)
    per_day: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for a, _b, m in wins:
        n = _num(m.get("n_beats")) or 0.0
        per_day[a.strftime("%Y-%m-%d")][0] += n
        per_day[a.strftime("%Y-%m-%d")][1] += n * (_num(m.get("af_burden_pct")) or 0.0) / 100
    days = [(d, 100.0 * v[1] / v[0] if v[0] else None) for d, v in sorted(per_day.items())]
    episodes = af_episodes(wins)
    return {
        "burden_pct": 100.0 * af_beats / beats if beats else None,
        "hours": sum((b - a).total_seconds() for a, b, _m in wins) / 3600.0,
        "episodes": [{"start": a, "end": b, "minutes": (b - a).total_seconds() / 60.0,
                      "burden": burden} for a, b, burden in episodes][-60:],
        "n_episodes": len(episodes),
        "svg": svg.bars(days[-30:], title="AF burden per day", unit="% of beats"),
    }


def hrv(daily: Sequence[Mapping[str, Any]], short: Sequence[Mapping[str, Any]]
        ) -> dict[str, Any] | None:
    """HRV trend per day: the daily summaries, else the day's 5-minute ones averaged."""
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    have_daily = {_day(s.get("window_start")) for s in daily}
    for s in [*daily, *(s for s in short if _day(s.get("window_start")) not in have_daily)]:
        m = s.get("metrics") or {}
        for key in ("sdnn_ms", "rmssd_ms", "mean_hr_bpm"):
            v = _num(m.get(key))
            if v is not None:
                per[_day(s.get("window_start"))][key].append(v)
    if not per:
        return None

    def mean(day: str, key: str) -> float | None:
        vals = per[day].get(key) or []
        return sum(vals) / len(vals) if vals else None

    days = sorted(per)[-30:]
    sdnn = [(d, mean(d, "sdnn_ms")) for d in days]
    rmssd = [(d, mean(d, "rmssd_ms")) for d in days]
    hr = [(d, mean(d, "mean_hr_bpm")) for d in days]
    return {
        "svg": svg.trend({"SDNN": sdnn, "RMSSD": rmssd},
                         title="Heart-rate variability per day", unit="ms"),
        "hr_svg": svg.trend({"mean heart rate": hr}, title="Mean heart rate per day",
                            unit="/min"),
    }
