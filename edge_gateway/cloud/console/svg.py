"""Inline SVG charts for the console (pure: numbers in, markup out; no JavaScript, print well).

The cloud holds summaries, not readings, so the charts draw what the hubs computed: the AGP
percentiles of the newest ``glucose_14d`` summary, its time in ranges, and daily trends.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

W, H = 720, 240
PAD_L, PAD_R, PAD_T, PAD_B = 48, 16, 12, 28


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(float(v)) else None


def _open(title: str, w: int = W, h: int = H) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img"'
            f' aria-label="{escape(title)}" class="chart"><title>{escape(title)}</title>']


def _y_axis(out: list[str], lo: float, hi: float, ticks: Sequence[float], unit: str,
            y: object) -> None:
    assert callable(y)
    for t in ticks:
        yy = y(t)
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{yy:.1f}" y2="{yy:.1f}"'
                   ' class="grid"/>')
        out.append(f'<text x="{PAD_L - 4}" y="{yy + 4:.1f}" text-anchor="end">{t:g}</text>')
    mid = (PAD_T + H - PAD_B) / 2
    out.append(f'<text x="12" y="{mid:.0f}" transform="rotate(-90 12 {mid:.0f})"'
               f' text-anchor="middle" class="unit">{escape(unit)}</text>')


def agp(rows: Sequence[Mapping[str, object]], *, low: float = 70.0, high: float = 180.0
        ) -> str:
    """The ambulatory glucose profile: 5–95 and 25–75 % bands and the median by hour."""
    lo, hi = 40.0, 350.0

    def x(h: float) -> float:
        return PAD_L + (W - PAD_L - PAD_R) * h / 24.0

    def y(v: float) -> float:
        v = min(hi, max(lo, v))
        return PAD_T + (H - PAD_T - PAD_B) * (1 - (v - lo) / (hi - lo))

    out = _open("Ambulatory glucose profile, 14 days (mg/dL by hour of day)")
    out.append(f'<rect x="{PAD_L}" y="{y(high):.1f}" width="{W - PAD_L - PAD_R}"'
               f' height="{y(low) - y(high):.1f}" class="target"/>')
    _y_axis(out, lo, hi, (70, 180, 250, 350), "mg/dL", y)
    for hh in range(0, 25, 3):
        out.append(f'<text x="{x(hh):.1f}" y="{H - 8}" text-anchor="middle">'
                   f'{hh:02d}:00</text>')
    pts = [(float(str(r["hour"])) + 0.5, r) for r in rows
           if _num(r.get("p50")) is not None and _num(r.get("hour")) is not None]
    if not pts:
        out.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no CGM data</text>')
        return "".join([*out, "</svg>"])

    def band(a: str, b: str, cls: str) -> None:
        upper = [f"{x(h):.1f},{y(_num(r[b]) or 0):.1f}" for h, r in pts]
        lower = [f"{x(h):.1f},{y(_num(r[a]) or 0):.1f}" for h, r in reversed(pts)]
        out.append(f'<polygon points="{" ".join(upper + lower)}" class="{cls}"/>')

    band("p5", "p95", "band90")
    band("p25", "p75", "band50")
    line = " ".join(f"{x(h):.1f},{y(_num(r['p50']) or 0):.1f}" for h, r in pts)
    out.append(f'<polyline points="{line}" class="median"/>')
    return "".join([*out, "</svg>"])


def tir(bands: Sequence[tuple[str, float, str, str]]) -> str:
    """Time in ranges as one stacked bar: (label, percent, colour, target) from the top."""
    w, h = 360, 220
    out = _open("Time in ranges", w, h)
    total = sum(max(0.0, p) for _, p, _, _ in bands) or 1.0
    y = 8.0
    for _label, pct, colour, _target in bands:
        hh = (h - 16) * max(0.0, pct) / total
        out.append(f'<rect x="8" y="{y:.1f}" width="48" height="{hh:.1f}"'
                   f' fill="{escape(colour)}"/>')
        y += hh
    ty = 24.0
    for label, pct, colour, target in bands:
        out.append(f'<rect x="72" y="{ty - 10:.1f}" width="10" height="10"'
                   f' fill="{escape(colour)}"/>')
        out.append(f'<text x="88" y="{ty:.1f}">{escape(label)}: <tspan class="strong">'
                   f'{pct:.1f} %</tspan> (target {escape(target)})</text>')
        ty += 40
    return "".join([*out, "</svg>"])


def trend(series: Mapping[str, Sequence[tuple[str, float | None]]], *, title: str, unit: str,
          ) -> str:
    """Daily lines (label -> [(day, value)]), one colour class per series."""
    days = sorted({d for pts in series.values() for d, _ in pts})
    values = [v for pts in series.values() for _, v in pts if v is not None]
    out = _open(title)
    if not days or not values:
        out.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text>')
        return "".join([*out, "</svg>"])
    lo, hi = min(0.0, min(values)), max(values) * 1.1 or 1.0
    step = 10 ** math.floor(math.log10(hi)) if hi > 0 else 1
    ticks = [t * step for t in range(0, int(hi / step) + 1)]
    ticks = ticks[:: max(1, len(ticks) // 5)]
    n = max(1, len(days) - 1)

    def x(i: int) -> float:
        return PAD_L + (W - PAD_L - PAD_R) * (i / n if len(days) > 1 else 0.5)

    def y(v: float) -> float:
        return PAD_T + (H - PAD_T - PAD_B) * (1 - (v - lo) / (hi - lo))

    _y_axis(out, lo, hi, ticks, unit, y)
    every = max(1, len(days) // 7)
    for i, d in enumerate(days):
        if i % every == 0:
            out.append(f'<text x="{x(i):.1f}" y="{H - 8}" text-anchor="middle">'
                       f'{escape(d[5:])}</text>')
    index = {d: i for i, d in enumerate(days)}
    for k, (name, pts) in enumerate(series.items()):
        coords = [f"{x(index[d]):.1f},{y(v):.1f}" for d, v in pts if v is not None]
        if coords:
            out.append(f'<polyline points="{" ".join(coords)}" class="s{k}"/>')
            for c in coords:
                cx, cy = c.split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" class="s{k}"/>')
        out.append(f'<text x="{W - PAD_R - 130}" y="{PAD_T + 14 + 16 * k}"'
                   f' class="s{k} legend">— {escape(name)}</text>')
    return "".join([*out, "</svg>"])


def bars(points: Sequence[tuple[str, float | None]], *, title: str, unit: str) -> str:
    """Daily bars (AF burden per day)."""
    out = _open(title, W, 160)
    vals = [v for _, v in points if v is not None]
    if not points or not vals:
        out.append(f'<text x="{W / 2}" y="80" text-anchor="middle">no data</text>')
        return "".join([*out, "</svg>"])
    hi = max(10.0, max(vals))
    bw = (W - PAD_L - PAD_R) / len(points)
    base = 160 - PAD_B
    mid = (PAD_T + 160 - PAD_B) / 2
    out.append(f'<text x="12" y="{mid:.0f}" transform="rotate(-90 12 {mid:.0f})"'
               f' text-anchor="middle" class="unit">{escape(unit)}</text>')
    out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{PAD_T}" y2="{PAD_T}" class="grid"/>')
    out.append(f'<text x="{PAD_L - 4}" y="{PAD_T + 4}" text-anchor="end">{hi:.0f}</text>')
    out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{base}" y2="{base}" class="grid"/>')
    every = max(1, len(points) // 7)
    for i, (d, v) in enumerate(points):
        xx = PAD_L + i * bw
        if v is not None and v > 0:
            hh = (base - PAD_T) * v / hi
            out.append(f'<rect x="{xx + 1:.1f}" y="{base - hh:.1f}" width="{bw - 2:.1f}"'
                       f' height="{hh:.1f}" class="af"><title>{escape(d)}: {v:.1f} %</title>'
                       '</rect>')
        if i % every == 0:
            out.append(f'<text x="{xx + bw / 2:.1f}" y="{160 - 8}" text-anchor="middle">'
                       f'{escape(d[5:])}</text>')
    return "".join([*out, "</svg>"])
