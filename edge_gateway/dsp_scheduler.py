"""The DSP scheduler: turns stored streams into windowed Summaries.

It reads readings from SQLite (on the daemon's loop), hands plain numpy arrays to the pure
functions of ``edge_gateway.dsp`` in a worker thread (``asyncio.to_thread``), and stores each
Summary with its algorithm version together with its outbox row in one transaction.  Progress
is kept per job and patient in ``meta`` (``dsp.<job>.<patient>`` = end of the last window done),
so a restart resumes where it stopped and a window is never summarised twice (the summaries
table is unique on patient, kind, window and algorithm as well).

Windows: HRV and rhythm every 5 minutes (UTC-aligned) and per site-local day; glucose per
site-local day and over the last 14 days (computed once a day); blood pressure per site-local
week.  Readings are attributed to patients when stored; devices not assigned to a patient are
kept but not summarised.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from .logfmt import log
from .reading import Summary, iso, parse_iso
from .store import Store

LOG = logging.getLogger("edge_gateway.dsp")


@dataclass(frozen=True, slots=True)
class Series:
    """The readings of one window: times (s since the window start), values, extra JSON."""

    start: datetime
    end: datetime
    times_s: np.ndarray
    values: np.ndarray
    extras: tuple[str | None, ...]


#: compute(series) -> (metrics, coverage 0..1, algorithm) or None when nothing can be said.
Compute = Callable[[Series], tuple[dict[str, Any], float, str] | None]


@dataclass(frozen=True, slots=True)
class Job:
    name: str                      # summary kind
    reading_kinds: tuple[str, ...]
    span: str                      # "5min", "day", "14day", "week"
    compute: Compute
    backlog: timedelta             # how far back a first run goes


def _floor_5min(t: datetime) -> datetime:
    return t.replace(minute=t.minute - t.minute % 5, second=0, microsecond=0)


def windows(span: str, start: datetime, now: datetime, tz: ZoneInfo, lag: timedelta
            ) -> list[tuple[datetime, datetime]]:
    """Complete windows of ``span`` from ``start`` (a window boundary) until ``now - lag``."""
    limit = now - lag
    out: list[tuple[datetime, datetime]] = []
    if span == "5min":
        w = _floor_5min(start)
        while w + timedelta(minutes=5) <= limit and len(out) < 2000:
            out.append((w, w + timedelta(minutes=5)))
            w += timedelta(minutes=5)
        return out
    # Calendar spans are aligned to local midnight in the site's time zone.
    local = start.astimezone(tz).date()
    if span == "week":
        local -= timedelta(days=local.weekday())
    step = 7 if span == "week" else 1
    while len(out) < 400:
        w_start = datetime.combine(local, time(0), tz).astimezone(UTC)
        nxt = local + timedelta(days=step)
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
                 lag: timedelta = timedelta(seconds=30),
                 on_summary: Callable[[Summary, int], None] | None = None) -> None:
        self.store = store
        self.tz = tz
        self.jobs = list(jobs) if jobs is not None else default_jobs()
        self.lag = lag
        self.on_summary = on_summary
        self.made = 0

    def patients(self, kinds: Sequence[str]) -> list[str]:
        q = ",".join("?" * len(kinds))
        return [r[0] for r in self.store.conn.execute(
            f"SELECT DISTINCT patient_id FROM readings WHERE patient_id IS NOT NULL"
            f" AND kind IN ({q})", list(kinds))]

    def _first_time(self, patient: str, kinds: Sequence[str]) -> datetime | None:
        q = ",".join("?" * len(kinds))
        row = self.store.conn.execute(
            f"SELECT min(time) FROM readings WHERE patient_id = ? AND kind IN ({q})",
            [patient, *kinds]).fetchone()
        return parse_iso(row[0]) if row and row[0] else None

    def load(self, patient: str, kinds: Sequence[str], start: datetime, end: datetime
             ) -> Series:
        q = ",".join("?" * len(kinds))
        rows = self.store.conn.execute(
            f"SELECT time, value, extra FROM readings WHERE patient_id = ? AND kind IN ({q})"
            f" AND time >= ? AND time < ? AND value IS NOT NULL ORDER BY time, id",
            [patient, *kinds, iso(start), iso(end)]).fetchall()
        t0 = start.timestamp()
        times = np.fromiter(((parse_iso(r[0]) or start).timestamp() - t0 for r in rows),
                            dtype=np.float64, count=len(rows))
        values = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
        return Series(start, end, times, values, tuple(r[2] for r in rows))

    async def run_once(self, now: datetime) -> int:
        """Summarise every complete window that is due; return how many summaries were made."""
        made = 0
        for job in self.jobs:
            for patient in self.patients(job.reading_kinds):
                key = f"dsp.{job.name}.{patient}"
                done = parse_iso(self.store.meta(key))
                if done is None:
                    first = self._first_time(patient, job.reading_kinds)
                    if first is None:
                        continue
                    done = max(first, now - job.backlog)
                for w_start, w_end in windows(job.span, done, now, self.tz, self.lag):
                    series = self.load(patient, job.reading_kinds, w_start, w_end)
                    result = None
                    if series.values.size:
                        result = await asyncio.to_thread(job.compute, series)
                    if result is not None:
                        metrics, coverage, algorithm = result
                        made += self._store(Summary(
                            patient_id=patient, kind=job.name, window_start=w_start,
                            window_end=w_end, metrics=metrics, coverage=coverage,
                            algorithm=algorithm, created_at=datetime.now(UTC)))
                    # The 14-day window slides by a day; progress is its end either way.
                    self.store.set_meta(key, iso(w_end) or "")
        self.made += made
        return made

    def _store(self, summary: Summary) -> int:
        from .sync.outbox import enqueue_summary

        with self.store.transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO summaries (patient_id, device_id, kind, window_start,"
                " window_end, metrics, coverage, algorithm, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (summary.patient_id, summary.device_id, summary.kind, iso(summary.window_start),
                 iso(summary.window_end), json.dumps(summary.metrics, default=_json_default),
                 summary.coverage, summary.algorithm, iso(summary.created_at)))
            if cur.rowcount == 0:
                return 0
            summary_id = int(cur.lastrowid or 0)
            enqueue_summary(self.store, summary_id, summary)
        if self.on_summary is not None:
            self.on_summary(summary, summary_id)
        return 1


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, datetime):
        return iso(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ---------------------------------------------------------------------------------- jobs
def beat_times(series: Series) -> np.ndarray:
    """Beat times for RR intervals stored per notification.

    RR intervals of one heart-rate notification share its receive time; the beats inside it
    are spaced back from that time by the following intervals, so that lost notifications show
    as the beat clock running ahead of the RR sum (which splits the series, see dsp.clean).
    """
    t = series.times_s
    rr_s = series.values / 1000.0
    out = t.copy()
    n = t.size
    i = n - 1
    while i >= 0:
        j = i
        while j > 0 and t[j - 1] == t[i]:
            j -= 1
        # indices j..i share a receive time: the last beat is at t, earlier ones before it
        acc = 0.0
        for k in range(i, j - 1, -1):
            out[k] = t[i] - acc
            acc += rr_s[k]
        i = j - 1
    return out


def _hrv(series: Series) -> tuple[dict[str, Any], float, str] | None:
    from .dsp import hrv as hrv_mod

    if series.values.size < 10:
        return None
    window_s = (series.end - series.start).total_seconds()
    res = hrv_mod.hrv(series.values, beat_times(series), window_s=window_s)
    metrics = res.as_dict()
    return metrics, float(res.coverage), hrv_mod.ALGORITHM


def default_jobs() -> list[Job]:
    return [
        Job("hrv_5min", ("rr_interval",), "5min", _hrv, timedelta(days=2)),
        Job("hrv_daily", ("rr_interval",), "day", _hrv, timedelta(days=14)),
    ]


async def run_scheduler(store: Store, tz: ZoneInfo, interval_s: float,
                        stopping: Callable[[float], Any],
                        on_summary: Callable[[Summary, int], None] | None = None) -> None:
    """The daemon task: look for due windows every ``interval_s``."""
    sched = DspScheduler(store, tz, on_summary=on_summary)
    while True:
        try:
            made = await sched.run_once(datetime.now(UTC))
            if made:
                log(LOG, logging.INFO, "dsp.summaries", made=made, total=sched.made)
        except Exception as err:  # keep the daemon alive; the next round retries
            LOG.exception("dsp.failed", extra={"fields": {"error": str(err)}})
        if await stopping(interval_s):
            return
