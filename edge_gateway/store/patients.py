"""Patients: who readings, summaries and alerts belong to."""

from __future__ import annotations

from typing import Any, NamedTuple

from edge_gateway.errors import NotFound
from edge_gateway.store.db import Store


class PatientRow(NamedTuple):
    id: str
    name: str | None
    notes: str | None
    created_at: str


def exists(store: Store, patient_id: str) -> bool:
    return store.conn.execute("SELECT 1 FROM patients WHERE id = ?",
                              (patient_id,)).fetchone() is not None


def require(store: Store, patient_id: str) -> None:
    """:class:`NotFound` unless the patient exists."""
    if not exists(store, patient_id):
        raise NotFound("patient", patient_id, hint="`edge-gateway patients list` shows them")


def get(store: Store, patient_id: str) -> PatientRow | None:
    row = store.conn.execute("SELECT id, name, notes, created_at FROM patients WHERE id = ?",
                             (patient_id,)).fetchone()
    return None if row is None else PatientRow(*row)


def name_of(store: Store, patient_id: str) -> str | None:
    row = store.conn.execute("SELECT name FROM patients WHERE id = ?", (patient_id,)).fetchone()
    return row[0] if row else None


def ids(store: Store) -> list[str]:
    """Every patient id, in order."""
    return [r[0] for r in store.conn.execute("SELECT id FROM patients ORDER BY id").fetchall()]


def listing(store: Store) -> list[tuple[str, str | None, str]]:
    """(id, name, created_at) of every patient, in id order."""
    return [(pid, name, created) for pid, name, created in store.conn.execute(
        "SELECT id, name, created_at FROM patients ORDER BY id").fetchall()]


def insert(store: Store, patient_id: str, name: str | None, notes: str | None,
           created_at: str | None) -> None:
    """A new patient (the caller checked it is new; see ``Store.add_patient`` for an upsert)."""
    with store.write() as conn:
        conn.execute("INSERT INTO patients (id, name, notes, created_at) VALUES (?, ?, ?, ?)",
                     (patient_id, name, notes, created_at))


def activity(store: Store, patient_id: str) -> dict[str, Any]:
    """The patient's devices (own or a user slot), readings held, newest reading time and
    open alerts."""
    c = store.conn
    devices = [r[0] for r in c.execute(
        "SELECT id FROM devices WHERE patient_id = ? UNION SELECT device_id FROM device_users"
        " WHERE patient_id = ? ORDER BY 1", (patient_id, patient_id))]
    n, last = c.execute("SELECT count(*), max(time) FROM readings WHERE patient_id = ?",
                        (patient_id,)).fetchone()
    open_alerts = c.execute("SELECT count(*) FROM alerts WHERE patient_id = ? AND state !="
                            " 'resolved'", (patient_id,)).fetchone()[0]
    return {"devices": devices, "readings": int(n), "last_reading_at": last,
            "open_alerts": int(open_alerts)}


def purge_data(store: Store, patient_id: str) -> dict[str, int]:
    """Delete every reading, raw frame, summary and alert of the patient and their unsent
    outbox items (a privacy request); returns the rows deleted per table."""
    deleted: dict[str, int] = {}
    p = (patient_id,)
    with store.write() as conn:
        deleted["raw_frames"] = conn.execute(
            "DELETE FROM raw_frames WHERE id IN (SELECT raw_frame_id FROM readings"
            " WHERE patient_id = ? AND raw_frame_id IS NOT NULL)", p).rowcount
        for table in ("readings", "summaries", "alerts"):
            deleted[table] = conn.execute(
                f"DELETE FROM {table} WHERE patient_id = ?", p).rowcount
        # Sent items are already at the broker; unsent ones must not leave after this.
        deleted["outbox"] = conn.execute(
            "DELETE FROM outbox WHERE patient_id = ? AND sent_at IS NULL", p).rowcount
    return deleted


def delete(store: Store, patient_id: str) -> None:
    with store.write() as conn:
        conn.execute("DELETE FROM patients WHERE id = ?", (patient_id,))
