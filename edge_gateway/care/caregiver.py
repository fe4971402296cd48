"""What a caregiver does, as library calls: patients, thresholds, alerts.

The CLI (``edge_gateway/cli/caregiver.py``) is a thin layer over these functions.  Every change
writes one audit row (:mod:`edge_gateway.store.audit`) in the same transaction as the change:
who (the OS user running the CLI), when, what, and on what, never a reading value (a privacy
request must not leave glucose values behind in the audit log).  Changes bump
``meta.settings_version`` so the running daemon re-reads without a restart.  The SQL is the
store's (:mod:`edge_gateway.store.patients`, ``settings``, ``alerts``); the transaction
boundaries are drawn here.
"""

from __future__ import annotations

import re
import syslog
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from edge_gateway.alerts import engine as A
from edge_gateway.alerts import thresholds as T
from edge_gateway.errors import NotFound, UsageError
from edge_gateway.reading import iso
from edge_gateway.store import Store
from edge_gateway.store import audit as audit_log
from edge_gateway.store import patients as patient_rows
from edge_gateway.store import settings as setting_rows
from edge_gateway.store.audit import os_actor

_PATIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def note_access(store: Store, action: str, patient: str, details: Mapping[str, Any],
                *, actor: str | None = None) -> None:
    """Audit a read of a patient's data leaving the gateway (an export, a report).

    A caregiver's account that may only read the database (a member of the service group)
    cannot add the audit row; the access then goes to the system log (the journal) instead,
    one line with the same fields."""
    who = actor or os_actor()
    if store.readonly:
        fields = " ".join(f"{k}={v}" for k, v in details.items())
        syslog.openlog("edge-gateway", syslog.LOG_PID, syslog.LOG_AUTHPRIV)
        syslog.syslog(syslog.LOG_NOTICE,
                      f"audit action={action} target={patient} actor={who} {fields}")
        return
    with store.transaction():
        audit_log.record(store, who, action, patient, details)


# --------------------------------------------------------------------------- patients
def check_patient_id(patient_id: str) -> str:
    if not _PATIENT_ID.match(patient_id):
        raise UsageError(f"patient id {patient_id!r} must be 1-64 letters, digits, '-' or '_'",
                         hint="e.g. alice or p-0042")
    return patient_id


def require_patient(store: Store, patient_id: str) -> None:
    patient_rows.require(store, patient_id)


def add_patient(store: Store, patient_id: str, *, name: str | None = None,
                notes: str | None = None, actor: str | None = None) -> dict[str, Any]:
    check_patient_id(patient_id)
    with store.transaction():
        if patient_rows.exists(store, patient_id):
            raise UsageError(f"patient {patient_id!r} already exists",
                             hint="`edge-gateway patients show` displays it")
        patient_rows.insert(store, patient_id, name, notes, iso(datetime.now(UTC)))
        # The name is personal data; the audit log says it was set, not what it is.
        audit_log.record(store, actor or os_actor(), "patient.add", patient_id,
                         {"name_set": name is not None, "notes_set": notes is not None})
        setting_rows.bump_version(store)
    return show_patient(store, patient_id)


def list_patients(store: Store) -> list[dict[str, Any]]:
    return [{"id": pid, "name": name, "created_at": created,
             **patient_rows.activity(store, pid)}
            for pid, name, created in patient_rows.listing(store)]


def show_patient(store: Store, patient_id: str) -> dict[str, Any]:
    row = patient_rows.get(store, patient_id)
    if row is None:
        raise NotFound("patient", patient_id, hint="`edge-gateway patients list` shows them")
    th = T.load(store, patient_id)
    overrides = {k: th.texts[k] for k, src in th.sources.items() if src != "default"}
    return {"id": row.id, "name": row.name, "notes": row.notes, "created_at": row.created_at,
            **patient_rows.activity(store, patient_id), "threshold_overrides": overrides}


def remove_patient(store: Store, patient_id: str, *, purge: bool = False,
                   actor: str | None = None) -> dict[str, int]:
    """Remove a patient; with ``purge`` also every reading, frame, summary and alert of theirs
    and their unsent outbox items (a privacy request).  Returns the rows deleted per table."""
    require_patient(store, patient_id)
    deleted: dict[str, int] = {}
    with store.transaction():
        if purge:
            deleted.update(patient_rows.purge_data(store, patient_id))
        deleted["settings"] = setting_rows.delete_scope(store, T.scope_for(patient_id))
        patient_rows.delete(store, patient_id)
        audit_log.record(store, actor or os_actor(),
                         "patient.purge" if purge else "patient.remove",
                         patient_id, {"deleted": deleted})
        setting_rows.bump_version(store)
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
    q = T.write(store, pid, key, value, audit=lambda: audit_log.record(
        store, actor or os_actor(), "threshold.set", patient, {"key": key, "value": value}))
    assert q is not None
    return {"patient": patient, "key": key, "value": q.text, "canonical": q.value,
            "unit": q.unit}


def reset_threshold(store: Store, patient: str, key: str | None, *,
                    actor: str | None = None) -> dict[str, Any]:
    """Back to the gateway-wide value or the default; ``key=None`` resets every key."""
    pid = _target(store, patient)

    def note() -> None:
        audit_log.record(store, actor or os_actor(), "threshold.reset", patient,
                         {"key": key or "*"})

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
        store, patient_id=patient, include_resolved=include_resolved, limit=limit)]


def acknowledge(store: Store, alert_id: int, *, actor: str | None = None,
                at: datetime | None = None) -> tuple[dict[str, Any], A.AlertTransition | None]:
    """Acknowledge (stored, audited, queued for the broker); returns the alert and the
    transition, None when it already was acknowledged, for the caller's local hook."""
    who = actor or os_actor()
    when = at or datetime.now(UTC)
    # Joins the caller's transaction when there is one (a console command records its outcome
    # and result item with the acknowledgement), else runs its own.
    with store.write():
        t = A.acknowledge(store, alert_id, who, when)
        audit_log.record(store, who, "alert.ack", str(alert_id), {"already": t is None},
                         at=when)
    return A.alert_dict(A.load_alert(store, alert_id)), t


def ack_alert(store: Store, alert_id: int, *, actor: str | None = None,
              at: datetime | None = None) -> dict[str, Any]:
    return acknowledge(store, alert_id, actor=actor, at=at)[0]


def alert_history(store: Store, *, patient: str | None = None,
                  limit: int = 200) -> list[dict[str, Any]]:
    out = []
    for a in A.list_alerts(store, patient_id=patient, include_resolved=True, limit=limit):
        d = A.alert_dict(a)
        assert a.id is not None
        d["events"] = A.alert_events(store, a.id)
        out.append(d)
    if patient is not None and not out:
        require_patient(store, patient)
    return out
