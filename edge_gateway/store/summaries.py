"""Summaries: the DSP's windowed results, unique per patient, device, kind, window and
algorithm (so a redone window never duplicates)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from edge_gateway.reading import Summary, iso
from edge_gateway.store.db import Store, period_filter


def add(store: Store, summary: Summary, *,
        json_default: Callable[[Any], Any] | None = None) -> int | None:
    """Store one summary (joins the caller's transaction); returns its id, or None when this
    window was already summarised.  ``json_default`` serialises odd metric values."""
    with store.write() as conn:
        cur = conn.execute(
            "INSERT OR IGNORE INTO summaries (patient_id, device_id, kind, window_start,"
            " window_end, metrics, coverage, algorithm, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (summary.patient_id, summary.device_id, summary.kind,
             iso(summary.window_start), iso(summary.window_end),
             json.dumps(summary.metrics, default=json_default), summary.coverage,
             summary.algorithm, iso(summary.created_at)))
        return int(cur.lastrowid or 0) if cur.rowcount else None


def counts_by_kind(store: Store) -> list[tuple[str, int]]:
    return [(k, int(n)) for k, n in store.conn.execute(
        "SELECT kind, count(*) FROM summaries GROUP BY kind ORDER BY kind").fetchall()]


def heart_windows(store: Store, patient_id: str, lo: str | None,
                  hi: str | None) -> Iterator[tuple[str, str, str, str]]:
    """(window start, window end, kind, metrics JSON) of the patient's ``hrv`` and ``rhythm``
    summaries starting in ``[lo, hi)``, in time order."""
    yield from store.conn.execute(
        "SELECT window_start, window_end, kind, metrics FROM summaries WHERE patient_id = ?"
        " AND kind IN ('hrv', 'rhythm') AND window_start >= ? AND window_start < ?"
        " ORDER BY window_start", (patient_id, lo, hi))


def export_rows(store: Store, patient_id: str, since: str | None,
                until: str | None) -> Iterator[Any]:
    """(id, device, kind, window_start, window_end, metrics JSON, coverage, algorithm) of the
    patient's summaries from ``since`` (to ``until``), streamed in window order."""
    bounds, args = period_filter("window_start", patient_id, since, until)
    return store.stream(
        "SELECT id, device_id, kind, window_start, window_end, metrics, coverage,"
        " algorithm FROM summaries WHERE patient_id = ?" + bounds
        + " ORDER BY window_start, id", args)
