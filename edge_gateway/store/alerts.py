"""Alert rows and their event history.  The life cycle itself is ``alerts/engine.py``'s: this
module only reads and writes the rows it hands over (columns as in :data:`COLUMNS`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from edge_gateway.store.db import Store, period_filter

#: The columns of an alert row as loaded, in order.
COLUMNS = ("id", "key", "rule", "patient_id", "device_id", "severity", "level", "state",
           "message", "raised_at", "value", "unit", "last_notified_at", "escalated_at",
           "acknowledged_at", "acknowledged_by", "resolved_at", "clear_since", "last_event_at",
           "notify_count", "updated_at", "details")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM alerts"


# --------------------------------------------------------------------------- reads
def open_rows(store: Store) -> list[tuple[Any, ...]]:
    """Every alert not yet resolved (served by the partial index on open alerts)."""
    return store.conn.execute(_SELECT + " WHERE state != 'resolved'").fetchall()


def row(store: Store, alert_id: int) -> tuple[Any, ...] | None:
    found: tuple[Any, ...] | None = store.conn.execute(
        _SELECT + " WHERE id = ?", (alert_id,)).fetchone()
    return found


def rows(store: Store, *, patient_id: str | None = None, include_resolved: bool = False,
         limit: int = 200) -> list[tuple[Any, ...]]:
    """Alerts, newest raised first."""
    where, args = [], []
    if not include_resolved:
        where.append("state != 'resolved'")
    if patient_id is not None:
        where.append("patient_id = ?")
        args.append(patient_id)
    sql = _SELECT
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY raised_at DESC, id DESC LIMIT ?"
    return store.conn.execute(sql, [*args, limit]).fetchall()


def events(store: Store, alert_id: int) -> list[tuple[str, str, str | None]]:
    """(state, at, details JSON) of one alert's events, oldest first."""
    return store.conn.execute(
        "SELECT state, at, details FROM alert_events WHERE alert_id = ? ORDER BY id",
        (alert_id,)).fetchall()


def resolved_spans(store: Store, key: str, limit: int = 64) -> list[tuple[str, str]]:
    """(raised_at, resolved_at) of the newest ``limit`` resolved alerts of one
    de-duplication key, newest first (the engine's guard against raising an alert again
    from a re-delivered reading, across restarts)."""
    return store.conn.execute(
        "SELECT raised_at, resolved_at FROM alerts WHERE key = ? AND state = 'resolved'"
        " AND resolved_at IS NOT NULL ORDER BY raised_at DESC LIMIT ?", (key, limit)).fetchall()


def open_count(store: Store) -> int:
    return int(store.conn.execute(
        "SELECT count(*) FROM alerts WHERE state != 'resolved'").fetchone()[0])


def newest_open(store: Store, limit: int = 5) -> list[tuple[str, str]]:
    """(severity, message) of the newest open alerts."""
    return store.conn.execute(
        "SELECT severity, message FROM alerts WHERE state != 'resolved' ORDER BY id DESC"
        " LIMIT ?", (limit,)).fetchall()


def raised_between(store: Store, patient_id: str, lo: str | None,
                   hi: str | None) -> list[tuple[int, str, str, str, str, str, str | None]]:
    """(id, rule, severity, state, message, raised_at, resolved_at) of the patient's alerts
    raised in ``[lo, hi)``, in time order."""
    return store.conn.execute(
        "SELECT id, rule, severity, state, message, raised_at, resolved_at FROM"
        " alerts WHERE patient_id = ? AND raised_at >= ? AND raised_at < ?"
        " ORDER BY raised_at", (patient_id, lo, hi)).fetchall()


def export_rows(store: Store, patient_id: str, since: str | None,
                until: str | None) -> Iterator[Any]:
    """(id, device, rule, value, unit, state, severity, message, raised_at, resolved_at,
    acknowledged_by) of the patient's alerts from ``since`` (to ``until``), streamed."""
    bounds, args = period_filter("raised_at", patient_id, since, until)
    return store.stream(
        "SELECT id, device_id, rule, value, unit, state, severity, message,"
        " raised_at, resolved_at, acknowledged_by FROM alerts WHERE patient_id = ?"
        + bounds + " ORDER BY raised_at, id", args)


# --------------------------------------------------------------------------- writes
def insert(store: Store, values: Mapping[str, Any]) -> int:
    """A new alert row from column -> value; returns its id."""
    cols = list(values)
    with store.write() as conn:
        cur = conn.execute(
            f"INSERT INTO alerts ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [values[c] for c in cols])
        return int(cur.lastrowid or 0)


def update(store: Store, alert_id: int, values: Mapping[str, Any]) -> None:
    sets = ", ".join(f"{c} = ?" for c in values)
    with store.write() as conn:
        conn.execute(f"UPDATE alerts SET {sets} WHERE id = ?", [*values.values(), alert_id])


def add_event(store: Store, alert_id: int | None, state: str, at: str | None,
              details: str) -> None:
    with store.write() as conn:
        conn.execute(
            "INSERT INTO alert_events (alert_id, state, at, details) VALUES (?, ?, ?, ?)",
            (alert_id, state, at, details))
