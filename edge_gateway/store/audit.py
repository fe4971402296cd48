"""The audit log: who changed what, and when, in the same transaction as the change.

A caregiver's change (a patient, a threshold, a device) and a read of a patient's data leaving
the gateway (an export, a report) each write one ``audit_log`` row: who (the OS user running
the CLI), when, what, and on what, never a reading value (a privacy request must not leave
glucose values behind in the audit log).
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from edge_gateway.reading import iso
from edge_gateway.store.db import Store


def os_actor() -> str:
    """The account running the CLI: the real uid's name from the password database.

    Environment variables any user can set (``LOGNAME``, ``USER``) are never trusted; the
    ``sudo`` caller (``SUDO_USER``, checked against ``SUDO_UID``) is named only when the real
    uid is 0, i.e. the command runs as root through sudo, e.g. ``alice (as root)``.  Under
    ``sudo -u edge-gateway`` the actor is ``edge-gateway`` (sudo logs who ran it).
    """
    uid = os.getuid()
    user = _account(uid)
    sudo_uid = os.environ.get("SUDO_UID", "")
    if uid == 0 and sudo_uid.isdigit() and int(sudo_uid) != 0:
        return f"{_account(int(sudo_uid))} (as {user})"
    return user


def _account(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # no passwd entry (a container with an arbitrary uid)
        return f"uid:{uid}"


def record(store: Store, actor: str, action: str, target: str | None,
           details: Mapping[str, Any] | None = None, *, at: datetime | None = None) -> None:
    """One audit row, inside the caller's open transaction (or its own when there is none).

    ``details`` must hold no readings."""
    with store.write() as conn:
        conn.execute(
            "INSERT INTO audit_log (at, actor, action, target, details) VALUES (?, ?, ?, ?, ?)",
            (iso(at or datetime.now(UTC)), actor, action, target,
             json.dumps(dict(details), separators=(",", ":"), default=str) if details else None))


def entries(store: Store, *, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` audit rows, newest first."""
    rows = store.conn.execute(
        "SELECT at, actor, action, target, details FROM audit_log ORDER BY id DESC LIMIT ?",
        (limit,))
    return [{"at": at, "actor": actor, "action": action, "target": target,
             "details": json.loads(d) if d else None} for at, actor, action, target, d in rows]
