"""What a caregiver does, as library calls: patients, thresholds, alerts; the audit log.

The CLI (``edge_gateway/cli/caregiver.py``) is a thin layer over these functions.  Every change
writes one ``audit_log`` row in the same transaction as the change: who (the OS user running
the CLI), when, what, and on what, never a reading value (a privacy request must not leave
glucose values behind in the audit log).  Changes bump ``meta.settings_version`` so the running
daemon re-reads without a restart.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from edge_gateway.alerts import engine as A
from edge_gateway.alerts import thresholds as T
from edge_gateway.errors import NotFound, UsageError
from edge_gateway.reading import iso
from edge_gateway.store import Store

_PATIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def os_actor() -> str:
    """The OS user running the CLI; names the real person behind ``sudo`` too."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container with an arbitrary uid)
        user = f"uid:{os.getuid()}"
    sudo = os.environ.get("SUDO_USER")
    return f"{sudo} (as {user})" if sudo and sudo != user else user


def audit(conn: sqlite3.Connection, actor: str, action: str, target: str | None,
          details: Mapping[str, Any] | None = None, *, at: datetime | None = None) -> None:
    """One audit row, inside the caller's transaction.  ``details`` must hold no readings."""
    conn.execute(
        "INSERT INTO audit_log (at, actor, action, target, details) VALUES (?, ?, ?, ?, ?)",
        (iso(at or datetime.now(UTC)), actor, action, target,
         json.dumps(dict(details), separators=(",", ":"), default=str) if details else None))


def audit_entries(store: Store, *, limit: int = 100) -> list[dict[str, Any]]:
    rows = store.conn.execute(
        "SELECT at, actor, action, target, details FROM audit_log ORDER BY id DESC LIMIT ?",
        (limit,))
    return [{"at": at, "actor": actor, "action": action, "target": target,
             "details": json.loads(d) if d else None} for at, actor, action, target, d in rows]


def note_access(store: Store, action: str, patient: str, details: Mapping[str, Any],
                *, actor: str | None = None) -> None:
    """Audit a read of a patient's data leaving the gateway (an export, a report)."""
    with store.transaction() as conn:
        audit(conn, actor or os_actor(), action, patient, details)


# --------------------------------------------------------------------------- patients
def check_patient_id(patient_id: str) -> str:
    if not _PATIENT_ID.match(patient_id):
        raise UsageError(f"patient id {patient_id!r} must be 1-64 letters, digits, '-' or '_'",
                         hint="e.g. alice or p-0042")
    return patient_id


def require_patient(store: Store, patient_id: str) -> None:
    if store.conn.execute("SELECT 1 FROM patients WHERE id = ?", (patient_id,)).fetchone() is None:
        raise NotFound("patient", patient_id, hint="`edge-gateway patients list` shows them")


def add_patient(store: Store, patient_id: str, *, name: str | None = None,
                notes: str | None = None, actor: str | None = None) -> dict[str, Any]:
    check_patient_id(patient_id)
    with store.transaction() as conn:
        existed = conn.execute("SELECT 1 FROM patients WHERE id = ?",
                               (patient_id,)).fetchone() is not None
        if existed:
            raise UsageError(f"patient {patient_id!r} already exists",
                             hint="`edge-gateway patients show` displays it")
        conn.execute("INSERT INTO patients (id, name, notes, created_at) VALUES (?, ?, ?, ?)",
                     (patient_id, name, notes, iso(datetime.now(UTC))))
        # The name is personal data; the audit log says it was set, not what it is.
        audit(conn, actor or os_actor(), "patient.add", patient_id,
              {"name_set": name is not None, "notes_set": notes is not None})
        T.bump_settings_version(conn)
    return show_patient(store, patient_id)


def list_patients(store: Store) -> list[dict[str, Any]]:
    out = []
    for pid, name, created in store.conn.execute(
            "SELECT id, name, created_at FROM patients ORDER BY id").fetchall():
        out.append({"id": pid, "name": name, "created_at": created, **_patient_counts(store, pid)})
    return out


def _patient_counts(store: Store, pid: str) -> dict[str, Any]:
    c = store.conn
    devices = [r[0] for r in c.execute(
        "SELECT id FROM devices WHERE patient_id = ? UNION SELECT device_id FROM device_users"
        " WHERE patient_id = ? ORDER BY 1", (pid, pid))]
    n, last = c.execute("SELECT count(*), max(time) FROM readings WHERE patient_id = ?",
                        (pid,)).fetchone()
    open_alerts = c.execute("SELECT count(*) FROM alerts WHERE patient_id = ? AND state !="
                            " 'resolved'", (pid,)).fetchone()[0]
    return {"devices": devices, "readings": int(n), "last_reading_at": last,
            "open_alerts": int(open_alerts)}


def show_patient(store: Store, patient_id: str) -> dict[str, Any]:
    row = store.conn.execute("SELECT id, name, notes, created_at FROM patients WHERE id = ?",
                             (patient_id,)).fetchone()
    if row is None:
        raise NotFound("patient", patient_id, hint="`edge-gateway patients list` shows them")
    th = T.load(store, patient_id)
    overrides = {k: th.texts[k] for k, src in th.sources.items() if src != "default"}
    return {"id": row[0], "name": row[1], "notes": row[2], "created_at": row[3],
            **_patient_counts(store, patient_id), "threshold_overrides": overrides}


def remove_patient(store: Store, patient_id: str, *, purge: bool = False,
                   actor: str | None = None) -> dict[str, int]:
    """Remove a patient; with ``purge`` also every reading, frame, summary and alert of theirs
    and their unsent outbox items (a privacy request).  Returns the rows deleted per table."""
    require_patient(store, patient_id)
    deleted: dict[str, int] = {}
    with store.transaction() as conn:
        if purge:
            p = (patient_id,)
            deleted["raw_frames"] = conn.execute(
                "DELETE FROM raw_frames WHERE id IN (SELECT raw_frame_id FROM readings"
                " WHERE patient_id = ? AND raw_frame_id IS NOT NULL)", p).rowcount
            for table in ("readings", "summaries", "alerts"):
                deleted[table] = conn.execute(
                    f"DELETE FROM {table} WHERE patient_id = ?", p).rowcount
            # Sent items are already at the broker; unsent ones must not leave after this.
            deleted["outbox"] = conn.execute(
                "DELETE FROM outbox WHERE patient_id = ? AND sent_at IS NULL", p).rowcount
        deleted["settings"] = conn.execute(
            "DELETE FROM settings WHERE scope = ?", (T.scope_for(patient_id),)).rowcount
        conn.execute("DELETE FROM patients WHERE id = ?", (patient_id,))
        audit(conn, actor or os_actor(), "patient.purge" if purge else "patient.remove",
              patient_id, {"deleted": deleted})
        T.bump_settings_version(conn)
    return deleted


# --------------------------------------------------------------------------- thresholds
def _target(store: Store, patient: str) -> str | None:
    if patient == T.GATEWAY_TARGET:
        return None
    check_patient_id(patient)
    require_patient(store, patient)
    return patient


def show_thresholds(store: Store, patient: str) -> list[dict[str, Any]]:
    th = T.load(store, _target(store, patient))
    return [{"key": k, "value": th.texts[k], "canonical": th.values[k],
             "unit": s.dim.canonical, "source": th.sources[k], "default": s.default,
             "help": s.help} for k, s in T.SPECS.items()]


def set_threshold(store: Store, patient: str, key: str, value: str, *,
                  actor: str | None = None) -> dict[str, Any]:
    pid = _target(store, patient)
    q = T.write(store, pid, key, value, audit=lambda conn: audit(
        conn, actor or os_actor(), "threshold.set", patient, {"key": key, "value": value}))
    assert q is not None
    return {"patient": patient, "key": key, "value": q.text, "canonical": q.value,
            "unit": q.unit}


def reset_threshold(store: Store, patient: str, key: str | None, *,
                    actor: str | None = None) -> dict[str, Any]:
    """Back to the gateway-wide value or the default; ``key=None`` resets every key."""
    pid = _target(store, patient)

    def note(conn: sqlite3.Connection) -> None:
        audit(conn, actor or os_actor(), "threshold.reset", patient, {"key": key or "*"})

    if key is None:
        n = T.reset_all(store, pid, audit=note)
        return {"patient": patient, "reset": n}
    T.write(store, pid, key, None, audit=note)
    th = T.load(store, pid)
    return {"patient": patient, "key": key, "value": th.texts[key], "source": th.sources[key]}


# --------------------------------------------------------------------------- alerts
def list_alerts(store: Store, *, patient: str | None = None, include_resolved: bool = False,
                limit: int = 200) -> list[dict[str, Any]]:
    if patient is not None:
        require_patient(store, patient)
    return [A.alert_dict(a) for a in A.list_alerts(
        store.conn, patient_id=patient, include_resolved=include_resolved, limit=limit)]


def acknowledge(store: Store, alert_id: int, *, actor: str | None = None,
                at: datetime | None = None) -> tuple[dict[str, Any], A.AlertTransition | None]:
    """Acknowledge (stored, audited, queued for the broker); returns the alert and the
    transition, None when it already was acknowledged, for the caller's local hook."""
    who = actor or os_actor()
    when = at or datetime.now(UTC)
    with store.transaction() as conn:
        t = A.acknowledge(store, conn, alert_id, who, when)
        audit(conn, who, "alert.ack", str(alert_id), {"already": t is None}, at=when)
    return A.alert_dict(A.load_alert(store.conn, alert_id)), t


def ack_alert(store: Store, alert_id: int, *, actor: str | None = None,
              at: datetime | None = None) -> dict[str, Any]:
    return acknowledge(store, alert_id, actor=actor, at=at)[0]


def alert_history(store: Store, *, patient: str | None = None,
                  limit: int = 200) -> list[dict[str, Any]]:
    out = []
    for a in A.list_alerts(store.conn, patient_id=patient, include_resolved=True, limit=limit):
        d = A.alert_dict(a)
        assert a.id is not None
        d["events"] = A.alert_events(store.conn, a.id)
        out.append(d)
    if patient is not None and not out:
        require_patient(store, patient)
    return out
