"""The console commands a hub has handled (``command_log``) and their counters.

A command id is handled once: a row whose signature held (``verified``) blocks its id for good,
so the retained message the broker re-delivers on every reconnect is only counted as a replay.
A refusal whose signature did not hold blocks only the very same bytes: a forged message
must not be able to pre-empt the console's real command with the same id.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from edge_gateway.store.db import Store

#: Outcomes counted (``commands.<outcome>`` in ``counters``); ``replayed`` has no row.
OUTCOMES = ("applied", "rejected", "expired", "replayed")
_COLUMNS = ("id", "command", "patient_id", "actor", "status", "reason", "verified",
            "payload_sha256", "received_at", "result_msg_id")


@dataclass(frozen=True, slots=True)
class Handled:
    """One ``command_log`` row."""

    id: str
    command: str | None
    patient_id: str | None
    actor: str | None
    status: str
    reason: str | None
    verified: bool
    payload_sha256: str
    received_at: str
    result_msg_id: str | None = None


def seen(store: Store, command_id: str, payload_sha256: str) -> bool:
    """True when this id was handled with a good signature, or these bytes were handled."""
    row = store.conn.execute(
        "SELECT verified, payload_sha256 FROM command_log WHERE id = ?", (command_id,)
    ).fetchone()
    return row is not None and (bool(row[0]) or row[1] == payload_sha256)


def record(store: Store, h: Handled) -> None:
    """Remember one handled command (joins the caller's transaction).  A verified outcome
    replaces an earlier unverified refusal of the same id; nothing replaces a verified one."""
    values = (h.id, h.command, h.patient_id, h.actor, h.status, h.reason, int(h.verified),
              h.payload_sha256, h.received_at, h.result_msg_id)
    with store.write() as conn:
        conn.execute(
            f"INSERT INTO command_log ({', '.join(_COLUMNS)})"
            f" VALUES ({', '.join('?' * len(_COLUMNS))})"
            " ON CONFLICT(id) DO UPDATE SET command = excluded.command,"
            " patient_id = excluded.patient_id, actor = excluded.actor,"
            " status = excluded.status, reason = excluded.reason,"
            " verified = excluded.verified, payload_sha256 = excluded.payload_sha256,"
            " received_at = excluded.received_at, result_msg_id = excluded.result_msg_id"
            " WHERE command_log.verified = 0", values)


def count(store: Store, outcome: str) -> None:
    """One more ``outcome`` (joins the caller's transaction)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}")
    with store.write() as conn:
        store.bump(f"commands.{outcome}", 1, conn)


def get(store: Store, command_id: str) -> Handled | None:
    row = store.conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM command_log WHERE id = ?", (command_id,)
    ).fetchone()
    if row is None:
        return None
    d = dict(zip(_COLUMNS, row, strict=True))
    d["verified"] = bool(d["verified"])
    return Handled(**d)


def stats(store: Store) -> dict[str, Any]:
    """The counters and the newest handled command, for ``status`` and ``sync status``."""
    out: dict[str, Any] = {o: store.counter(f"commands.{o}") for o in OUTCOMES}
    try:
        last = store.conn.execute(
            "SELECT id, command, status, reason, received_at FROM command_log"
            " ORDER BY received_at DESC, rowid DESC LIMIT 1").fetchone()
    except sqlite3.OperationalError:  # a read-only open of a database before 0009
        last = None
    out["last"] = None if last is None else dict(
        zip(("id", "command", "status", "reason", "received_at"), last, strict=True))
    return out


@contextlib.contextmanager
def savepoint(store: Store, name: str = "command") -> Iterator[None]:
    """A savepoint inside the caller's transaction: an exception rolls back only what ran
    inside (the command's change), then propagates; the caller still records the refusal."""
    conn = store.conn
    if not conn.in_transaction:
        raise RuntimeError("savepoint() needs an open transaction")
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
        raise
    conn.execute(f"RELEASE {name}")
