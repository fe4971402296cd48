"""A printable patient report: one self-contained HTML page (or a PDF) a clinic can file.

Sections: the ambulatory glucose profile (percentile bands by time of day) with time in
ranges; heart rate and HRV trend; AF episodes; a blood-pressure table with guideline classes;
device coverage; the alerts of the period.  Plots are drawn with matplotlib (imported here
only, through ``matplotlib.figure.Figure`` so no global pyplot state or GUI backend is
involved) and embedded as inline SVG, so the file needs nothing else to display or print.

Data are aggregated in SQL where they are dense (a 1 Hz heart rate is averaged per minute
before it reaches Python), so two weeks fit comfortably in a Raspberry Pi's memory.
"""

from __future__ import annotations

import html
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

import numpy as np

from edge_gateway import __version__ as VERSION
from edge_gateway.alerts.rules import (
    DIASTOLIC_KINDS,
    GLUCOSE_KINDS,
    SYSTOLIC_KINDS,
    glucose_mgdl,
)
from edge_gateway.dsp.bp import table as bp_table
from edge_gateway.reading import iso, parse_iso
from edge_gateway.store import Store
from edge_gateway.store import alerts as alert_rows
from edge_gateway.store import patients as patient_rows
from edge_gateway.store import readings as reading_rows
from edge_gateway.store import summaries as summary_rows
from edge_gateway.units import MGDL_PER_MMOLL, bp_records, mmhg

# Consensus ranges (Battelino et al., Diabetes Care 2019) with their targets; the shares come
# from edge_gateway.dsp.glucose under these metric names.
TIR_BANDS = (  # label, dsp metric, colour, target text
    ("Very high > 250", "tar2_pct", "#e8743b", "< 5 %"),
    ("High 181–250", "tar1_pct", "#f5c342", "< 25 %"),
    ("In range 70–180", "tir_pct", "#4caf50", "> 70 %"),
    ("Low 54–69", "tbr1_pct", "#e53935", "< 4 %"),
    ("Very low < 54", "tbr2_pct", "#8e0000", "< 1 %"),
)
AGP_BIN_MIN = 20
# ACC/AHA 2017 categories from the one table (edge_gateway.dsp.bp.CLASSES), most severe
# first: (dsp name, label, colour).
_BP_COLOURS = ("#8e0000", "#e53935", "#f57c00", "#f5c342", "#4caf50")
BP_CLASSES = tuple(
    (row.name, row.label, colour)
    for row, colour in zip(reversed(bp_table("acc-aha-2017")), _BP_COLOURS, strict=True))
#: A device with more readings than this per day is a stream (coverage in 5-minute slots);
#: fewer, a spot-check device (readings per day).
STREAM_PER_DAY = 48


def bp_class(sys: float, dia: float) -> tuple[str, str]:
    """(label, colour) of one measurement's ACC/AHA 2017 category (from ``dsp.bp``)."""
    from edge_gateway.dsp import bp

    name = bp.classify(sys, dia, "acc-aha-2017")
    for key, label, colour in BP_CLASSES:
        if key == name:
            return label, colour
    return name, "#999999"


@dataclass
class ReportData:
    patient: str
    name: str | None
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    tz: ZoneInfo
    cgm_t: list[datetime] = field(default_factory=list)
    cgm_v: list[float] = field(default_factory=list)
    hr_minutes: list[tuple[datetime, float]] = field(default_factory=list)
    hrv: list[tuple[datetime, float | None, float | None]] = field(default_factory=list)
    rhythm: list[tuple[datetime, datetime, dict[str, Any]]] = field(default_factory=list)
    bp: list[dict[str, Any]] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def days(self) -> list[date]:
        first = self.start.astimezone(self.tz).date()
        last = (self.end - timedelta(microseconds=1)).astimezone(self.tz).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# --------------------------------------------------------------------------- loading
def load(store: Store, patient: str, *, end: datetime, days: int, tz: ZoneInfo) -> ReportData:
    # Whole local days even across a DST change: step back by calendar days in the zone.
    local_end = end.astimezone(tz)
    start = datetime.combine(local_end.date() - timedelta(days=days), local_end.timetz()) \
        .replace(tzinfo=tz).astimezone(end.tzinfo)
    d = ReportData(patient, patient_rows.name_of(store, patient), start, end, tz)
    lo, hi = iso(start), iso(end)
    for t, v, unit in reading_rows.timed_values(store, patient, ("cgm_glucose",), lo, hi):
        d.cgm_t.append(_t(t))
        d.cgm_v.append(glucose_mgdl(v, unit))
    if not d.cgm_t:  # no CGM: a meter's readings still give a (sparse) profile
        for t, v, unit in reading_rows.timed_values(store, patient, tuple(GLUCOSE_KINDS),
                                                    lo, hi):
            d.cgm_t.append(_t(t))
            d.cgm_v.append(glucose_mgdl(v, unit))
    d.hr_minutes = [(_t(m + ":00.000000Z"), v)
                    for m, v in reading_rows.minute_means(store, patient, "heart_rate", lo, hi)]
    for ws, we, kind, metrics in summary_rows.heart_windows(store, patient, lo, hi):
        m = json.loads(metrics)
        if kind == "hrv":
            d.hrv.append((_t(ws), _num(m.get("sdnn_ms")), _num(m.get("rmssd_ms"))))
        else:
            d.rhythm.append((_t(ws), _t(we), m))
    d.bp = _load_bp(store, patient, lo, hi)
    d.devices = _load_devices(store, patient, lo, hi, days, tz)
    d.alerts = [{"id": i, "rule": r, "severity": s, "state": st, "message": msg,
                 "raised_at": _t(ra), "resolved_at": parse_iso(rs)}
                for i, r, s, st, msg, ra, rs in alert_rows.raised_between(store, patient, lo, hi)]
    return d


def _t(text: str) -> datetime:
    t = parse_iso(text)
    assert t is not None
    return t


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _load_bp(store: Store, patient: str, lo: str | None, hi: str | None) -> list[dict[str, Any]]:
    kinds = (*SYSTOLIC_KINDS, *DIASTOLIC_KINDS, "pulse_rate")
    rows = reading_rows.record_values(store, patient, kinds, lo, hi)
    out: list[dict[str, Any]] = []
    # One measurement = the readings of one device sharing a record key.
    for rec in bp_records(rows, key=lambda r: (r[0], r[1]), kind=lambda r: r[2]).values():
        if rec.complete:
            dev, _, _, t, _, _ = rec.first
            g: dict[str, Any] = {"time": _t(t), "device": dev}
            g.update((part, mmhg(r[4], r[5])) for part, r in rec.parts.items())
            out.append(g)
    for g in out:
        g["class"], g["colour"] = bp_class(g["sys"], g["dia"])
    return sorted(out, key=lambda g: g["time"])


def _load_devices(store: Store, patient: str, lo: str | None, hi: str | None,
                  days: int, tz: ZoneInfo) -> list[dict[str, Any]]:
    # Distinct 5-minute slots come from the store (at most 288 a day per device), to be binned
    # here by *local* day.
    out = []
    for dev, profile, n, first, last in reading_rows.device_totals(store, patient, lo, hi):
        per_day: dict[date, int] = defaultdict(int)
        slots = 0
        for key in reading_rows.five_minute_slots(store, patient, dev, lo, hi):
            per_day[_t(key + ":00.000000Z").astimezone(tz).date()] += 1
            slots += 1
        stream = n / max(days, 1) > STREAM_PER_DAY
        out.append({"device": dev, "profile": profile, "readings": int(n),
                    "first": _t(first), "last": _t(last), "stream": stream,
                    "coverage": slots / (days * 288) if stream else None,
                    "per_day": dict(per_day), "per_day_count": n / max(days, 1)})
    return out


# --------------------------------------------------------------------------- metrics
def glucose_metrics(times: Sequence[datetime], values: Sequence[float],
                    window_s: float | None = None) -> dict[str, Any]:
    """Consensus CGM metrics from ``dsp.glucose``, with the range shares keyed by label."""
    from edge_gateway.dsp import glucose

    if not values:
        return {}
    t = np.array([x.timestamp() for x in times], dtype=np.float64)
    res = glucose.glucose_metrics(t, np.asarray(values, dtype=np.float64), window_s=window_s)
    m = res.as_dict()
    return {"n": res.n, "mean": res.mean_mg_dl, "gmi": res.gmi_pct, "cv": res.cv_pct,
            "active": res.coverage_pct, "hypo_events": res.hypo_events,
            "bands": {label: m[key] or 0.0 for label, key, _, _ in TIR_BANDS}}


def agp_percentiles(times: Sequence[datetime], values: Sequence[float],
                    tz: ZoneInfo) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(bin centres in hours, percentiles 5/25/50/75/95 per bin) by local time of day.

    Finer than ``dsp.glucose.agp_profile``'s hourly rows (a smoother plot), and binned by each
    reading's own local time, so a DST change inside the period does not shift an hour.
    """
    nbins = 24 * 60 // AGP_BIN_MIN
    buckets: list[list[float]] = [[] for _ in range(nbins)]
    for t, v in zip(times, values, strict=True):
        lt = t.astimezone(tz)
        buckets[(lt.hour * 60 + lt.minute) // AGP_BIN_MIN].append(v)
    pct = np.full((nbins, 5), np.nan)
    for i, b in enumerate(buckets):
        if len(b) >= 3:
            pct[i] = np.percentile(b, [5, 25, 50, 75, 95])
    centres = (np.arange(nbins) + 0.5) * AGP_BIN_MIN / 60.0
    return centres, pct


# --------------------------------------------------------------------------- figures
def _figure(w: float, h: float) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), layout="constrained")
    return fig


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: we inline it


def fig_agp(d: ReportData, gm: dict[str, Any]) -> Any:
    fig = _figure(9.5, 3.6)
    ax, bar = fig.subplots(1, 2, width_ratios=[5, 1])
    x, p = agp_percentiles(d.cgm_t, d.cgm_v, d.tz)
    ax.axhspan(70, 180, color="#4caf50", alpha=0.10, lw=0)
    for y, style in ((54, ":"), (70, "-"), (180, "-"), (250, ":")):
        ax.axhline(y, color="#4caf50" if y in (70, 180) else "#999999", lw=0.8, ls=style)
    ax.fill_between(x, p[:, 0], p[:, 4], color="#90caf9", alpha=0.5, lw=0, label="5–95 %")
    ax.fill_between(x, p[:, 1], p[:, 3], color="#1e88e5", alpha=0.6, lw=0, label="25–75 %")
    ax.plot(x, p[:, 2], color="#0d47a1", lw=2, label="median")
    ax.set_xlim(0, 24)
    ax.set_xticks(range(0, 25, 3), [f"{h:02d}:00" for h in range(0, 25, 3)])
    ax.set_ylim(40, max(300, float(np.nanmax(p[:, 4])) + 10 if np.isfinite(p).any() else 300))
    ax.set_ylabel("glucose (mg/dL)")
    ax.set_xlabel(f"time of day ({d.tz.key})")
    ax.set_title("Ambulatory glucose profile", loc="left", fontsize=11)
    ax.legend(loc="upper right", fontsize=8, ncols=3, frameon=False)
    ax.grid(axis="x", color="#eeeeee")
    bottom = 0.0
    for label, _, colour, _ in reversed(TIR_BANDS):
        share = gm["bands"][label]
        bar.bar(0, share, bottom=bottom, color=colour, width=0.6)
        if share >= 2:
            short = label.rsplit(" ", 1)[0].removesuffix(" >").removesuffix(" <")
            bar.text(0.42, bottom + share / 2, f"{share:.0f} %  {short}", va="center",
                     fontsize=8)
        bottom += share
    bar.set_xlim(-0.4, 1.9)
    bar.set_ylim(0, 100)
    bar.axis("off")
    bar.set_title("Time in ranges", loc="left", fontsize=11)
    return fig


def _daily(points: Iterable[tuple[datetime, float | None]], tz: ZoneInfo,
           days: Sequence[date]) -> dict[date, list[float]]:
    by: dict[date, list[float]] = defaultdict(list)
    for t, v in points:
        if v is not None:
            by[t.astimezone(tz).date()].append(v)
    return {day: by.get(day, []) for day in days}


def fig_heart(d: ReportData) -> Any:
    """Heart rate by day and, when there are HRV summaries, HRV by day; an empty panel is
    left out rather than drawn with a meaningless axis."""
    panels = [p for p, has in (("hr", bool(d.hr_minutes)), ("hrv", bool(d.hrv))) if has]
    fig = _figure(9.5, 3.2)  # one width for every figure: the same type size on paper
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    days = d.days
    xs = np.arange(len(days))
    for a, panel in zip(axes, panels, strict=True):
        if panel == "hr":
            hr = _daily(d.hr_minutes, d.tz, days)
            q = np.array([np.percentile(v, [10, 50, 90]) if v else [np.nan] * 3
                          for v in hr.values()])
            a.fill_between(xs, q[:, 0], q[:, 2], color="#ef9a9a", alpha=0.6, lw=0,
                           label="10–90 %")
            a.plot(xs, q[:, 1], "o-", color="#c62828", ms=3, label="median")
            a.set_title("Heart rate by day (/min)", loc="left", fontsize=11)
        else:
            sd = _daily(((t, v) for t, v, _ in d.hrv), d.tz, days)
            rm = _daily(((t, v) for t, _, v in d.hrv), d.tz, days)
            a.plot(xs, [np.median(v) if v else np.nan for v in sd.values()], "o-", ms=3,
                   color="#6a1b9a", label="SDNN")
            a.plot(xs, [np.median(v) if v else np.nan for v in rm.values()], "s--", ms=3,
                   color="#00897b", label="RMSSD")
            a.set_title("HRV by day, median of 5-min windows (ms)", loc="left", fontsize=11)
        step = max(1, len(days) // 7)
        a.set_xticks(xs[::step], [day.strftime("%d %b") for day in days[::step]], fontsize=8)
        a.set_xlim(-0.5, len(days) - 0.5)
        a.legend(fontsize=8, frameon=False)
        a.grid(color="#eeeeee")
    return fig


def fig_coverage(d: ReportData) -> Any:
    days = d.days
    fig = _figure(9.5, 0.6 + 0.35 * max(1, len(d.devices)))
    ax = fig.subplots()
    grid = np.full((max(1, len(d.devices)), len(days)), np.nan)
    for i, dev in enumerate(d.devices):
        for j, day in enumerate(days):
            n = dev["per_day"].get(day, 0)
            grid[i, j] = min(1.0, n / 288) if dev["stream"] else (1.0 if n else 0.0)
    ax.imshow(grid, aspect="auto", cmap="Greens", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(d.devices)), [dev["device"] for dev in d.devices], fontsize=8)
    step = max(1, len(days) // 14)
    ax.set_xticks(range(0, len(days), step), [day.strftime("%d") for day in days[::step]],
                  fontsize=8)
    ax.set_title("Device coverage by day (streams: share of 5-min slots; spot devices: any "
                 "reading)", loc="left", fontsize=10)
    return fig


# --------------------------------------------------------------------------- HTML
def _e(v: Any) -> str:
    return html.escape(str(v))


def _local(t: datetime | None, tz: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return "–" if t is None else t.astimezone(tz).strftime(fmt)


def _table_head(*columns: str) -> str:
    """A table's opening and header row (its rows and ``</table>`` follow)."""
    return "<table><tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"


_CSS = """
@page { size: A4; margin: 12mm; }
body { font-family: "DejaVu Sans", Arial, sans-serif; color: #222; max-width: 190mm;
       margin: 0 auto; font-size: 10pt; }
h1 { font-size: 16pt; margin: 0 0 2mm; } h2 { font-size: 12pt; margin: 6mm 0 2mm;
     border-bottom: 1px solid #ccc; page-break-after: avoid; }
.meta { color: #555; margin-bottom: 3mm; }
.tiles { display: flex; flex-wrap: wrap; gap: 3mm; }
.tile { border: 1px solid #ddd; border-radius: 2mm; padding: 2mm 3mm; min-width: 32mm; }
.tile b { display: block; font-size: 13pt; } .tile span { color: #666; font-size: 8pt; }
table { border-collapse: collapse; width: 100%; margin: 2mm 0; font-size: 9pt; }
th, td { border: 1px solid #ddd; padding: 1mm 2mm; text-align: left; }
th { background: #f3f3f3; } td.n { text-align: right; }
.badge { display: inline-block; width: 3mm; height: 3mm; border-radius: 50%;
         margin-right: 1.5mm; vertical-align: middle; }
.fig svg { width: 100%; height: auto; } .fig { page-break-inside: avoid; }
.note { color: #666; font-size: 8pt; } section { page-break-inside: auto; }
"""


def render_html(d: ReportData) -> str:
    tz = d.tz
    gm = glucose_metrics(d.cgm_t, d.cgm_v, (d.end - d.start).total_seconds())
    days = d.days
    out: list[str] = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Report {_e(d.patient)} {days[0]} – {days[-1]}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Health report: {_e(d.name or d.patient)}</h1>",
        f"<div class='meta'>Patient id <b>{_e(d.patient)}</b> · {days[0]:%d %b %Y} – "
        f"{days[-1]:%d %b %Y} ({len(days)} days) · times in {_e(tz.key)} · "
        f"edge-gateway {VERSION}</div>",
    ]
    tiles = []
    if gm:
        tiles += [("Time in range 70–180", f"{gm['bands']['In range 70–180']:.0f} %",
                   "target > 70 %"),
                  ("Mean glucose", f"{gm['mean']:.0f} mg/dL", f"GMI {gm['gmi']:.1f} %"),
                  ("Glucose variability", f"{gm['cv'] or 0:.0f} % CV", "target ≤ 36 %")]
    if d.hr_minutes:
        hrs = np.array([v for _, v in d.hr_minutes])
        tiles.append(("Heart rate", f"{np.median(hrs):.0f} /min",
                      f"range {np.percentile(hrs, 5):.0f}–{np.percentile(hrs, 95):.0f}"))
    if d.bp:
        tiles.append(("Blood pressure (mean)",
                      f"{np.mean([b['sys'] for b in d.bp]):.0f}/"
                      f"{np.mean([b['dia'] for b in d.bp]):.0f}", f"{len(d.bp)} measurements"))
    tiles.append(("Alerts", str(len(d.alerts)),
                  f"{sum(a['severity'] in ('urgent', 'critical') for a in d.alerts)} urgent"))
    out.append("<div class='tiles'>" + "".join(
        f"<div class='tile'><span>{_e(a)}</span><b>{_e(b)}</b><span>{_e(c)}</span></div>"
        for a, b, c in tiles) + "</div>")
    out += _glucose_section(d, gm)
    out += _heart_section(d)
    out += _af_section(d)
    out += _bp_section(d)
    out += _coverage_section(d)
    out += _alerts_section(d)
    out.append("<p class='note'>Glucose ranges and targets: International Consensus on Time "
               "in Range (Battelino et al., Diabetes Care 2019); GMI = 3.31 + 0.02392 × mean "
               "glucose (mg/dL). Blood-pressure classes: ACC/AHA 2017. This report summarises "
               "home measurements; it is not a diagnosis.</p></body></html>")
    return "\n".join(out)


def _glucose_section(d: ReportData, gm: dict[str, Any]) -> list[str]:
    out = ["<section><h2>Glucose</h2>"]
    if not gm:
        return [*out, "<p>No glucose readings in this period.</p></section>"]
    out.append(f"<div class='fig'>{_svg(fig_agp(d, gm))}</div>")
    out.append(_table_head("Range", "Share of readings", "Target"))
    for label, _, colour, target in TIR_BANDS:
        out.append(f"<tr><td><span class='badge' style='background:{colour}'></span>"
                   f"{_e(label)} mg/dL</td><td class='n'>{gm['bands'][label]:.1f} %</td>"
                   f"<td>{_e(target)}</td></tr>")
    active = "–" if gm["active"] is None else f"{gm['active']:.0f} %"
    out.append(f"</table><p class='note'>{gm['n']} readings, CGM active {active} of the "
               f"period; mean {gm['mean']:.0f} mg/dL "
               f"({gm['mean'] / MGDL_PER_MMOLL:.1f} mmol/L), GMI {gm['gmi']:.1f} %, "
               f"CV {gm['cv'] or 0:.1f} %; {gm['hypo_events']} hypoglycaemic "
               "events (below 70 for 15 min or more). Bands: 5th–95th and 25th–75th "
               f"percentiles per {AGP_BIN_MIN}-minute slot of the day.</p></section>")
    return out


def _heart_section(d: ReportData) -> list[str]:
    out = ["<section><h2>Heart rate and heart-rate variability</h2>"]
    if not d.hr_minutes and not d.hrv:
        return [*out, "<p>No heart-rate data in this period.</p></section>"]
    out.append(f"<div class='fig'>{_svg(fig_heart(d))}</div>")
    if not d.hrv:
        out.append("<p class='note'>No HRV summaries in this period.</p>")
    return [*out, "</section>"]


#: AF runs closer than this (a window boundary, a few sinus beats) are one episode in the table.
AF_MERGE_GAP = timedelta(minutes=2)


def af_episodes(rhythm: Sequence[tuple[datetime, datetime, dict[str, Any]]]
                ) -> list[tuple[datetime, datetime, float | None]]:
    """(start, end, burden % or None) of AF episodes, merged across summary windows.

    Rhythm summaries list their episodes (``af_episodes``: start/end); a summary with only a
    burden counts as one episode spanning its window.
    """
    runs: list[tuple[datetime, datetime, float | None]] = []
    for ws, we, m in rhythm:
        burden = _num(m.get("af_burden_pct"))
        listed = m.get("af_episodes")
        if isinstance(listed, list) and listed:
            for ep in listed:
                a, b = parse_iso(ep.get("start")), parse_iso(ep.get("end"))
                if a is not None and b is not None:
                    runs.append((a, b, None))
        elif burden:
            runs.append((ws, we, burden))
    runs.sort(key=lambda r: r[0])
    merged: list[tuple[datetime, datetime, float | None]] = []
    for a, b, burden in runs:
        if merged and a - merged[-1][1] <= AF_MERGE_GAP:
            pa, pb, pburden = merged[-1]
            both = None if pburden is None or burden is None else (pburden + burden) / 2
            merged[-1] = (pa, max(pb, b), both)
        else:
            merged.append((a, b, burden))
    return merged


def _af_section(d: ReportData) -> list[str]:
    out = ["<section><h2>Atrial fibrillation</h2>"]
    episodes = af_episodes(d.rhythm)
    af_alerts = [a for a in d.alerts if a["rule"] == "af"]
    if not episodes and not af_alerts:
        hours = sum((we - ws).total_seconds() for ws, we, _ in d.rhythm) / 3600
        return [*out, f"<p>No AF detected ({hours:.0f} hours of rhythm analysed).</p></section>"]
    if episodes:
        # Episodes listed from a burden only span their whole window: weigh by the burden.
        total = sum((b - a).total_seconds() * (1 if burden is None else burden / 100)
                    for a, b, burden in episodes)
        out.append(f"<p>{len(episodes)} AF episode(s); about {total / 60:.0f} minutes of AF "
                   "in total.</p>" + _table_head("Start", "End", "Duration",
                                                 "AF burden in the episode's windows"))
        for a, b, burden in episodes[:60]:
            out.append(f"<tr><td>{_local(a, d.tz)}</td><td>{_local(b, d.tz)}</td>"
                       f"<td class='n'>{(b - a).total_seconds() / 60:.1f} min</td><td "
                       f"class='n'>{'–' if burden is None else f'{burden:.0f} %'}</td></tr>")
        out.append("</table>")
        if len(episodes) > 60:
            out.append(f"<p class='note'>… and {len(episodes) - 60} more episodes.</p>")
    if af_alerts:
        out.append("<p>AF alerts: " + "; ".join(
            f"{_local(a['raised_at'], d.tz)} – {_local(a['resolved_at'], d.tz)}"
            for a in af_alerts) + "</p>")
    return [*out, "</section>"]


def _bp_section(d: ReportData) -> list[str]:
    out = ["<section><h2>Blood pressure</h2>"]
    if not d.bp:
        return [*out, "<p>No blood-pressure measurements in this period.</p></section>"]
    counts: dict[str, int] = defaultdict(int)
    for b in d.bp:
        counts[b["class"]] += 1
    out.append("<p>" + " · ".join(
        f"<span class='badge' style='background:{c}'></span>{_e(label)}: {counts[label]}"
        for _, label, c in BP_CLASSES if counts[label]) + "</p>")
    out.append(_table_head("Date and time", "Systolic", "Diastolic", "Pulse",
                           "Class (ACC/AHA 2017)"))
    for b in d.bp:
        pulse = f"{b['pulse']:.0f}" if "pulse" in b else "–"
        out.append(f"<tr><td>{_local(b['time'], d.tz)}</td><td class='n'>{b['sys']:.0f}</td>"
                   f"<td class='n'>{b['dia']:.0f}</td><td class='n'>{pulse}</td>"
                   f"<td><span class='badge' style='background:{b['colour']}'></span>"
                   f"{_e(b['class'])}</td></tr>")
    return [*out, "</table><p class='note'>mmHg; pulse in /min.</p></section>"]


def _coverage_section(d: ReportData) -> list[str]:
    out = ["<section><h2>Device coverage</h2>"]
    if not d.devices:
        return [*out, "<p>No device data in this period.</p></section>"]
    out.append(f"<div class='fig'>{_svg(fig_coverage(d))}</div>")
    out.append(_table_head("Device", "Profile", "Readings", "First", "Last", "Coverage"))
    for dev in d.devices:
        cov = (f"{100 * dev['coverage']:.0f} % of 5-min slots" if dev["stream"]
               else f"{dev['per_day_count']:.1f} readings/day")
        out.append(f"<tr><td>{_e(dev['device'])}</td><td>{_e(dev['profile'])}</td>"
                   f"<td class='n'>{dev['readings']}</td><td>{_local(dev['first'], d.tz)}</td>"
                   f"<td>{_local(dev['last'], d.tz)}</td><td>{cov}</td></tr>")
    return [*out, "</table></section>"]


def _alerts_section(d: ReportData) -> list[str]:
    out = ["<section><h2>Alerts</h2>"]
    if not d.alerts:
        return [*out, "<p>No alerts in this period.</p></section>"]
    out.append(_table_head("Raised", "Resolved", "Severity", "Alert"))
    for a in d.alerts:
        out.append(f"<tr><td>{_local(a['raised_at'], d.tz)}</td>"
                   f"<td>{_local(a['resolved_at'], d.tz)}</td><td>{_e(a['severity'])}</td>"
                   f"<td>{_e(a['message'])}</td></tr>")
    return [*out, "</table></section>"]


# --------------------------------------------------------------------------- PDF and entry
def write_pdf(d: ReportData, out: Path | BinaryIO) -> None:
    """The same content through matplotlib's PDF backend: a summary page, then the plots."""
    from matplotlib.backends.backend_pdf import PdfPages

    gm = glucose_metrics(d.cgm_t, d.cgm_v, (d.end - d.start).total_seconds())
    days = d.days
    with PdfPages(out, metadata={"Title": f"Health report {d.patient}",
                                 "Creator": f"edge-gateway {VERSION}"}) as pdf:
        page = _figure(8.27, 11.69)
        lines = [f"Health report: {d.name or d.patient}",
                 f"{days[0]:%d %b %Y} – {days[-1]:%d %b %Y} ({len(days)} days), {d.tz.key}", ""]
        if gm:
            lines += [f"Time in range 70–180 mg/dL: {gm['bands']['In range 70–180']:.0f} %",
                      f"Mean glucose {gm['mean']:.0f} mg/dL, GMI {gm['gmi']:.1f} %, "
                      f"CV {gm['cv'] or 0:.0f} %", ""]
        lines.append(f"Blood pressure: {len(d.bp)} measurements")
        lines += [f"  {_local(b['time'], d.tz)}  {b['sys']:.0f}/{b['dia']:.0f}  {b['class']}"
                  for b in d.bp[:40]]
        lines += ["", f"Alerts: {len(d.alerts)}"]
        lines += [f"  {_local(a['raised_at'], d.tz)}  {a['message']}" for a in d.alerts[:20]]
        page.text(0.06, 0.96, "\n".join(lines), va="top", family="DejaVu Sans", fontsize=9)
        pdf.savefig(page)
        if gm:
            pdf.savefig(fig_agp(d, gm))
        if d.hr_minutes or d.hrv:
            pdf.savefig(fig_heart(d))
        if d.devices:
            pdf.savefig(fig_coverage(d))


def write_report(store: Store, patient: str, *, end: datetime, days: int, tz: ZoneInfo,
                 out: Path, fh: BinaryIO | None = None) -> Path:
    """Write the report for the ``days`` local days before ``end`` (UTC, exclusive).

    ``out``'s suffix picks the format (``.pdf`` or HTML); the bytes go to ``fh`` when given
    (a private file the caller opened, :mod:`edge_gateway.care.files`), else to ``out``."""
    d = load(store, patient, end=end, days=days, tz=tz)
    if out.suffix.lower() == ".pdf":
        write_pdf(d, fh if fh is not None else out)
    elif fh is not None:
        fh.write(render_html(d).encode("utf-8"))
    else:
        out.write_text(render_html(d), encoding="utf-8")
    return out
