"""Read-only queries for the integrations that follow the database: Home Assistant discovery
(``sync/homeassistant.py``) and the Nightscout uploader (``sync/nightscout.py``).

Both follow new rows by id (``readings.id``, ``summaries.id`` are rowids: a range scan on the
primary key, cheap at any table size) instead of hooking into the writer, so a restart or a
missed wake-up never loses a reading: the follower simply reads from where it was.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edge_gateway.store.db import Store


@dataclass(frozen=True, slots=True)
class ReadingRow:
    id: int
    device_id: str
    patient_id: str | None
    kind: str
    value: float | None
    unit: str
    time: str  # ISO 8601 UTC text, as stored (derived from the device's own time)
    extra: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SummaryRow:
    id: int
    patient_id: str | None
    kind: str
    window_end: str
    metrics: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeviceRow:
    id: str
    name: str
    profile: str
    patient_ids: tuple[str, ...]  # the device's patient and any user slots' patients
    battery_pct: float | None
    enabled: bool


_READING_COLS = "id, device_id, patient_id, kind, value, unit, time, extra"


def _reading(r: Sequence[Any]) -> ReadingRow:
    extra = json.loads(r[7]) if r[7] else {}
    return ReadingRow(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6],
                      extra if isinstance(extra, dict) else {})


def max_reading_id(store: Store) -> int:
    return int(store.conn.execute("SELECT ifnull(max(id), 0) FROM readings").fetchone()[0])


def max_summary_id(store: Store) -> int:
    return int(store.conn.execute("SELECT ifnull(max(id), 0) FROM summaries").fetchone()[0])


def readings_after(store: Store, after_id: int, kinds: Sequence[str], *, limit: int = 5000,
                   patient_id: str | None = None, since: str | None = None) -> list[ReadingRow]:
    """Readings of ``kinds`` with id > ``after_id`` in id order (optionally one patient's, and
    only those whose time is at or after ``since``)."""
    marks = ",".join("?" * len(kinds))
    sql = (f"SELECT {_READING_COLS} FROM readings WHERE id > ? AND kind IN ({marks})"
           " AND value IS NOT NULL")
    params: list[Any] = [after_id, *kinds]
    if patient_id is not None:
        sql += " AND patient_id = ?"
        params.append(patient_id)
    if since is not None:
        sql += " AND time >= ?"
        params.append(since)
    sql += " ORDER BY id LIMIT ?"
    params.append(limit)
    return [_reading(r) for r in store.conn.execute(sql, params)]


def id_window_end(store: Store, after_id: int, limit: int) -> int:
    """The highest reading id among the next ``limit`` ids after ``after_id`` (the point a
    follower that scanned them has reached, whatever their kinds)."""
    row = store.conn.execute(
        "SELECT max(id) FROM (SELECT id FROM readings WHERE id > ? ORDER BY id LIMIT ?)",
        (after_id, limit)).fetchone()
    return int(row[0]) if row and row[0] is not None else after_id


def latest_readings(store: Store, patient_id: str, kinds: Sequence[str]) -> list[ReadingRow]:
    """The newest reading (by its time) of each kind of one patient."""
    out = []
    for kind in kinds:
        r = store.conn.execute(
            f"SELECT {_READING_COLS} FROM readings WHERE patient_id = ? AND kind = ?"
            " AND value IS NOT NULL ORDER BY time DESC LIMIT 1", (patient_id, kind)).fetchone()
        if r is not None:
            out.append(_reading(r))
    return out


def summaries_after(store: Store, after_id: int, kinds: Sequence[str],
                    limit: int = 1000) -> list[SummaryRow]:
    marks = ",".join("?" * len(kinds))
    rows = store.conn.execute(
        f"SELECT id, patient_id, kind, window_end, metrics FROM summaries WHERE id > ?"
        f" AND kind IN ({marks}) ORDER BY id LIMIT ?", (after_id, *kinds, limit))
    return [SummaryRow(int(r[0]), r[1], r[2], r[3], json.loads(r[4])) for r in rows]


def latest_summaries(store: Store, patient_id: str, kinds: Sequence[str]) -> list[SummaryRow]:
    out = []
    for kind in kinds:
        r = store.conn.execute(
            "SELECT id, patient_id, kind, window_end, metrics FROM summaries"
            " WHERE patient_id = ? AND kind = ? ORDER BY window_end DESC LIMIT 1",
            (patient_id, kind)).fetchone()
        if r is not None:
            out.append(SummaryRow(int(r[0]), r[1], r[2], r[3], json.loads(r[4])))
    return out


def patients(store: Store) -> list[tuple[str, str]]:
    """(id, display name) of every patient."""
    return [(r[0], r[1] or r[0])
            for r in store.conn.execute("SELECT id, name FROM patients ORDER BY id")]


def devices(store: Store) -> list[DeviceRow]:
    users: dict[str, list[str]] = {}
    for dev, patient in store.conn.execute(
            "SELECT device_id, patient_id FROM device_users ORDER BY device_id, user_id"):
        users.setdefault(dev, []).append(patient)
    out = []
    for r in store.conn.execute(
            "SELECT id, name, profile, patient_id, battery_pct, enabled FROM devices ORDER BY id"):
        owners = [r[3]] if r[3] else []
        owners += [p for p in users.get(r[0], []) if p not in owners]
        out.append(DeviceRow(r[0], r[1] or r[0], r[2], tuple(owners), r[4], bool(r[5])))
    return out


def alert_rules(store: Store) -> list[tuple[str, str, int]]:
    """(patient, rule, open alerts now) for every rule ever raised for a patient."""
    return [(r[0], r[1], int(r[2])) for r in store.conn.execute(
        "SELECT patient_id, rule, sum(state != 'resolved') FROM alerts"
        " WHERE patient_id IS NOT NULL GROUP BY patient_id, rule ORDER BY patient_id, rule")]
