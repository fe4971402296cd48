"""The DSP scheduler: turns stored streams into windowed Summaries.

It reads readings from SQLite (on the daemon's loop), hands plain numpy arrays to the pure
functions of ``edge_gateway.dsp`` in a worker thread (``asyncio.to_thread``), and stores each
Summary with its algorithm version together with its outbox row in one transaction.  Progress
is kept per job and patient in ``meta`` (``dsp.<job>.<patient>`` = end of the last window done),
so a restart resumes where it stopped and a window is never summarised twice (the summaries
table is unique on patient, kind, window and algorithm as well).

Windows: HRV and rhythm every 5 minutes (UTC-aligned; ``daemon.short_window_min``) and per
site-local day; CGM glucose per site-local day and over the last 14 days (computed once a day),
meter glucose per day; blood pressure per site-local week.  Per-reading glucose checks (level 1
and 2 lows, predicted low from the trend) are the alert engine's, on every committed batch.
Readings are attributed to patients when stored; devices not assigned to a patient are kept
but not summarised.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from edge_gateway.logfmt import log
from edge_gateway.reading import Summary, iso, parse_iso
from edge_gateway.store import Store
from edge_gateway.store import patients as patient_rows
from edge_gateway.store import readings as reading_rows
from edge_gateway.store import summaries as summary_rows
from edge_gateway.store.outbox import enqueue_summary
from edge_gateway.units import bp_records

LOG = logging.getLogger("edge_gateway.dsp")


@dataclass(frozen=True, slots=True)
class Series:
    """The readings of one window: times (s since the window start), values, extra JSON."""

    start: datetime
    end: datetime
    times_s: np.ndarray
    values: np.ndarray
    extras: tuple[str | None, ...]
    kinds: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    #: Site time zone offset from UTC at the window start (hour-of-day profiles).
    utc_offset_s: float = 0.0
    #: Readings before ``start`` loaded as context (``lead_s`` seconds), times negative.
    lead_s: float = 0.0


#: compute(series) -> (metrics, coverage 0..1, algorithm) or None when nothing can be said.
Compute = Callable[[Series], tuple[dict[str, Any], float, str] | None]


@dataclass(frozen=True, slots=True)
class Job:
    name: str                      # summary kind
    reading_kinds: tuple[str, ...]
    span: str                      # "short" (5 min), "day", "14day", "week"
    compute: Compute
    backlog: timedelta             # how far back a first run goes
    lead: timedelta = timedelta(0)  # context loaded before each window (detector warm-up)


def _floor_minutes(t: datetime, minutes: int) -> datetime:
    epoch = int(t.timestamp()) // (60 * minutes) * (60 * minutes)
    return datetime.fromtimestamp(epoch, UTC)


def windows(span: str, start: datetime, now: datetime, tz: ZoneInfo, lag: timedelta,
            short_minutes: int = 5) -> list[tuple[datetime, datetime]]:
    """Complete windows of ``span`` from ``start`` (a window boundary) until ``now - lag``."""
    limit = now - lag
    out: list[tuple[datetime, datetime]] = []
    if span == "short":
        step = timedelta(minutes=short_minutes)
        w = _floor_minutes(start, short_minutes)
        while w + step <= limit and len(out) < 2000:
            out.append((w, w + step))
            w += step
        return out
    # Calendar spans are aligned to local midnight in the site's time zone.
    local = start.astimezone(tz).date()
    if span == "week":
        local -= timedelta(days=local.weekday())
    days = 7 if span == "week" else 1
    while len(out) < 400:
        w_start = datetime.combine(local, time(0), tz).astimezone(UTC)
        nxt = local + timedelta(days=days)
        w_end = datetime.combine(nxt, time(0), tz).astimezone(UTC)
        if w_end > limit:
            break
        if span == "14day":
            out.append((w_end - timedelta(days=14), w_end))
        else:
            out.append((w_start, w_end))
        local = nxt
    return out


class DspScheduler:
    def __init__(self, store: Store, tz: ZoneInfo, jobs: Sequence[Job] | None = None, *,
                 lag: timedelta = timedelta(seconds=30), short_minutes: int = 5,
                 on_summary: Callable[[Summary, int], None] | None = None) -> None:
        self.store = store
        self.tz = tz
        self.short_minutes = short_minutes
        self.jobs = list(jobs) if jobs is not None else default_jobs()
        self.lag = lag
        self.on_summary = on_summary
        self.made = 0

    def patients(self) -> list[str]:
        """Every patient (a cheap table; windows without readings cost one indexed query)."""
        return patient_rows.ids(self.store)

    def _first_time(self, patient: str, kinds: Sequence[str]) -> datetime | None:
        return parse_iso(reading_rows.first_time(self.store, patient, kinds))

    def load(self, patient: str, kinds: Sequence[str], start: datetime, end: datetime,
             lead: timedelta = timedelta(0)) -> Series:
        first, last = iso(start - lead), iso(end)
        assert first is not None and last is not None
        rows = reading_rows.window(self.store, patient, kinds, first, last)
        t0 = start.timestamp()
        times = np.fromiter(((parse_iso(r[0]) or start).timestamp() - t0 for r in rows),
                            dtype=np.float64, count=len(rows))
        values = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
        offset = start.astimezone(self.tz).utcoffset()
        return Series(start, end, times, values, tuple(r[2] for r in rows),
                      tuple(r[3] for r in rows), tuple(r[4] for r in rows),
                      offset.total_seconds() if offset else 0.0, lead.total_seconds())

    async def run_once(self, now: datetime) -> int:
        """Summarise every complete window that is due; return how many summaries were made.

        The summaries of one job and patient are committed in one transaction together with
        their outbox rows and the progress mark, so a crash redoes at most that batch (and
        the unique index on summaries keeps a redo from duplicating anything).
        """
        made = 0
        patients = self.patients()
        for job in self.jobs:
            for patient in patients:
                key = f"dsp.{job.name}.{patient}"
                done = parse_iso(self.store.meta(key))
                if done is None:
                    first = self._first_time(patient, job.reading_kinds)
                    if first is None:
                        continue
                    done = max(first, now - job.backlog)
                ready: list[Summary] = []
                last_end: datetime | None = None
                for w_start, w_end in windows(job.span, done, now, self.tz, self.lag,
                                              self.short_minutes):
                    series = self.load(patient, job.reading_kinds, w_start, w_end, job.lead)
                    last_end = w_end
                    if not np.any(series.times_s >= 0):
                        continue
                    result = await asyncio.to_thread(job.compute, series)
                    if result is not None:
                        metrics, coverage, algorithm = result
                        ready.append(Summary(
                            patient_id=patient, kind=job.name, window_start=w_start,
                            window_end=w_end, metrics=metrics, coverage=coverage,
                            algorithm=algorithm, created_at=datetime.now(UTC)))
                if last_end is not None:
                    # The 14-day window slides by a day; progress is its end either way.
                    made += self._store(ready, key, last_end)
        self.made += made
        return made

    def _store(self, summaries: list[Summary], progress_key: str, progress: datetime) -> int:
        stored: list[tuple[Summary, int]] = []
        # Summaries, their outbox rows and the progress mark commit together.
        with self.store.transaction():
            for summary in summaries:
                summary_id = summary_rows.add(self.store, summary, json_default=_json_default)
                if summary_id is not None:
                    enqueue_summary(self.store, summary_id, summary)
                    stored.append((summary, summary_id))
            self.store.set_meta(progress_key, iso(progress) or "")
        if self.on_summary is not None:
            for summary, summary_id in stored:
                self.on_summary(summary, summary_id)
        return len(stored)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, datetime):
        return iso(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ---------------------------------------------------------------------------------- jobs
#: How far the receive clock may run ahead of the beats delivered before we call it a gap: a
#: strap notifies about once a second, with the beats since the last notification, and the
#: link adds latency.  More than this means notifications (and their beats) were lost.
NOTIFY_SLACK_S = 1.5


def beat_times(series: Series) -> np.ndarray:
    """Beat times (s from the window start) for RR intervals stored per notification.

    Inside an unbroken stream the beats are placed by the RR intervals themselves (the strap
    measured them; receive times jitter with the notification cadence).  When the receive
    clock runs ahead of the beats delivered by more than ``NOTIFY_SLACK_S`` — notifications
    were lost to link loss or contact loss — the series is re-anchored at the receive time,
    and the jump splits it in ``dsp.clean`` instead of being interpolated across.
    """
    t = series.times_s
    rr_s = series.values / 1000.0
    n = t.size
    out = np.empty(n, dtype=np.float64)
    clock: float | None = None
    j = 0
    while j < n:
        i = j
        while i + 1 < n and t[i + 1] == t[j]:
            i += 1
        total = float(rr_s[j:i + 1].sum())
        if clock is None or float(t[j]) - (clock + total) > NOTIFY_SLACK_S:
            clock = float(t[j]) - total
        for k in range(j, i + 1):
            clock += float(rr_s[k])
            out[k] = clock
        j = i + 1
    return out


def _in_window(series: Series) -> tuple[np.ndarray, np.ndarray]:
    keep = series.times_s >= 0
    return series.values[keep], series.times_s[keep]


def _hrv(series: Series) -> tuple[dict[str, Any], float, str] | None:
    from edge_gateway.dsp import hrv as hrv_mod

    rr, _ = _in_window(series)
    if rr.size < 10:
        return None
    window_s = (series.end - series.start).total_seconds()
    beats = beat_times(series)[series.times_s >= 0]
    res = hrv_mod.hrv(rr, beats, window_s=window_s)
    return res.as_dict(), float(res.coverage), hrv_mod.ALGORITHM


def _rhythm(series: Series) -> tuple[dict[str, Any], float, str] | None:
    """AF, irregular-not-AF, pauses, brady/tachycardia, ectopy.  The detector runs over the
    window plus its lead (so the smoothing it needs is warm at the window's first beat); only
    beats inside the window count."""
    from edge_gateway.dsp import rhythm

    rr_all = series.values
    inside = series.times_s >= 0
    if np.count_nonzero(inside) < 10:
        return None
    beats_all = beat_times(series)
    af_all, irregular_all = rhythm.classify(rr_all)
    af, irregular = af_all[inside], irregular_all[inside]
    rr, beats = rr_all[inside], beats_all[inside]
    res = rhythm.analyze_rhythm(rr, beats, window_s=(series.end - series.start).total_seconds())
    t0 = series.start
    episodes = []
    longest = 0.0
    for a, b in rhythm.true_runs(af):
        start_s = float(beats[a] - rr[a] / 1000.0)
        end_s = float(beats[b])
        longest = max(longest, end_s - start_s)
        episodes.append({"start": iso(t0 + timedelta(seconds=start_s)),
                         "end": iso(t0 + timedelta(seconds=end_s)),
                         "beats": int(b - a + 1)})
    pauses = [p.duration_ms for p in res.pauses]
    metrics: dict[str, Any] = {
        "n_beats": int(rr.size),
        "mean_hr_bpm": res.mean_hr_bpm,
        "af_burden_pct": round(100.0 * float(np.mean(af)), 2),
        "af_episodes": episodes,
        "af_longest_episode_s": round(longest, 1),
        "pauses": len(pauses),
        "severe_pauses": sum(1 for p in res.pauses if p.severe),
        "longest_pause_ms": max(pauses) if pauses else None,
        "bradycardia_pct": res.bradycardia_pct,
        "tachycardia_pct": res.tachycardia_pct,
        "ectopic_beats": res.ectopic_beats,
        "irregular_pct": round(100.0 * float(np.mean(irregular)), 2),
    }
    return metrics, float(res.coverage), rhythm.ALGORITHM


def _glucose(series: Series) -> tuple[dict[str, Any], float, str] | None:
    from edge_gateway.dsp import glucose

    g, t = _in_window(series)
    if g.size == 0:
        return None
    res = glucose.glucose_metrics(t + series.start.timestamp(), g,
                                  window_s=(series.end - series.start).total_seconds(),
                                  utc_offset_s=series.utc_offset_s)
    cov = (res.coverage_pct or 0.0) / 100.0
    return res.as_dict(), min(1.0, cov), glucose.ALGORITHM


def _bp(series: Series) -> tuple[dict[str, Any], float, str] | None:
    """Blood pressure: systolic, diastolic and pulse of one measurement share a record key."""
    from dataclasses import asdict

    from edge_gateway.dsp import bp

    rows = [row for row in zip(series.times_s, series.values, series.kinds, series.keys,
                               strict=True) if row[0] >= 0]
    recs = [rec for rec in bp_records(rows, key=lambda row: row[3], kind=lambda row: row[2])
            .values() if rec.complete]
    if not recs:
        return None
    t = np.array([float(rec.first[0]) for rec in recs]) + series.start.timestamp()
    sys_ = np.array([float(rec.parts["sys"][1]) for rec in recs])
    dia = np.array([float(rec.parts["dia"][1]) for rec in recs])
    pulse = np.array([float(rec.parts["pulse"][1]) if "pulse" in rec.parts else np.nan
                      for rec in recs])
    res = bp.bp_summary(t, sys_, dia, pulse, utc_offset_s=series.utc_offset_s)
    return asdict(res), 1.0, bp.ALGORITHM


def default_jobs() -> list[Job]:
    rr = ("rr_interval",)
    return [
        Job("hrv", rr, "short", _hrv, timedelta(days=2)),
        Job("rhythm", rr, "short", _rhythm, timedelta(days=2), lead=timedelta(minutes=2)),
        Job("hrv_daily", rr, "day", _hrv, timedelta(days=14)),
        Job("rhythm_daily", rr, "day", _rhythm, timedelta(days=14)),
        Job("glucose_daily", ("cgm_glucose",), "day", _glucose, timedelta(days=14)),
        Job("glucose_14d", ("cgm_glucose",), "14day", _glucose, timedelta(days=1)),
        Job("glucose_meter_daily", ("glucose",), "day", _glucose, timedelta(days=14)),
        Job("bp_weekly", ("bp_systolic", "bp_diastolic", "pulse_rate"), "week", _bp,
            timedelta(days=28)),
    ]


async def run_scheduler(store: Store, tz: ZoneInfo, interval_s: float,
                        stopping: Callable[[float], Any],
                        on_summary: Callable[[Summary, int], None] | None = None,
                        short_minutes: int = 5) -> None:
    """The daemon task: look for due windows every ``interval_s``."""
    sched = DspScheduler(store, tz, on_summary=on_summary, short_minutes=short_minutes)
    while True:
        try:
            made = await sched.run_once(datetime.now(UTC))
            if made:
                log(LOG, logging.INFO, "dsp.summaries", made=made, total=sched.made)
        except Exception as err:  # keep the daemon alive; the next round retries
            LOG.exception("dsp.failed", extra={"fields": {"error": str(err)}})
        if await stopping(interval_s):
            return
