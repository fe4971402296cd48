"""The durable outbox: ``add / batch(n) / accept(ids) / reject(ids, error)``.

The SQLite row is the only source of truth for what must reach the broker; paho's in-memory
queue dies with the process and is never relied on.  A row is settled (``sent_at`` set) only
after the broker acknowledged it with a success reason code.  Rows are never deleted here:
``Store.evict`` removes old *sent* rows when space runs short, and the ``sync.sent`` counter
keeps the total.

Sequence numbers come from a monotonic counter, not from ``max(id) + 1``: once eviction has
deleted the newest sent rows, SQLite would hand out the same rowid again, and a re-used
sequence would be a re-used message id.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge_gateway.reading import Alert, Reading, Summary, iso
from edge_gateway.store.db import Store

#: Send order: alerts first, then summaries, then bulk readings (``outbox.priority``).
PRIORITY_ALERT = 0
PRIORITY_SUMMARY = 1
PRIORITY_BULK = 2
PRIORITY_NAMES = {PRIORITY_ALERT: "alert", PRIORITY_SUMMARY: "summary", PRIORITY_BULK: "bulk"}

SEQ_COUNTER = "outbox.seq"
SENT_COUNTER = "sync.sent"
FAILED_COUNTER = "sync.failed_attempts"
META_GATEWAY = "gateway_id"
# The key `edge-gateway status` reads for its last_sync_at: one fact, one place.
META_LAST_SUCCESS = "last_sync_at"
META_LAST_ERROR = "sync.last_error"
META_LAST_ERROR_AT = "sync.last_error_at"
#: Keep error texts short: they are stored per row and shown in `sync status`.
_MAX_ERROR = 300
#: The destination of every row before 0007 and of everything the MQTT sync publishes; other
#: destinations (``nightscout:<name>``) keep their counters and meta under ``sync.<dest>.``.
DEST_MQTT = "mqtt"


def _names(destination: str) -> tuple[str, str, str, str, str]:
    """(sent counter, failed counter, last success, last error, last error at) of a
    destination: MQTT keeps the names it always had."""
    if destination == DEST_MQTT:
        return (SENT_COUNTER, FAILED_COUNTER, META_LAST_SUCCESS, META_LAST_ERROR,
                META_LAST_ERROR_AT)
    pre = f"sync.{destination}."
    return (pre + "sent", pre + "failed_attempts", pre + "last_success_at", pre + "last_error",
            pre + "last_error_at")


@dataclass(frozen=True, slots=True)
class Item:
    """One outbox row as the payload builder needs it."""

    seq: int
    msg_id: str
    priority: int
    kind: str  # "alert" | "summary" | "reading" | "command" (a console command's result)
    patient_id: str | None
    created_at: str  # ISO 8601 UTC text, as stored
    raw: str  # the item as compact JSON text, as the outbox keeps it
    destination: str = DEST_MQTT

    @property
    def body(self) -> dict[str, Any]:
        obj = json.loads(self.raw)
        assert isinstance(obj, dict)
        return obj


def message_id(gateway: str, db_id: str, seq: int) -> str:
    """``<gateway>:<db_id>:<seq>``: unique per database, never reused after a restore."""
    return f"{gateway}:{db_id}:{seq}"


def gateway_id(store: Store) -> str:
    """The gateway id message ids are made with (set by the daemon from the config)."""
    return store.meta(META_GATEWAY) or os.uname().nodename


# ---------------------------------------------------------------------- item bodies
def summary_body(summary_id: int | None, s: Summary) -> dict[str, Any]:
    """What the outbox keeps for a summary (the envelope is added at publish time)."""
    return {
        "summary_id": summary_id, "kind": s.kind, "patient": s.patient_id, "device": s.device_id,
        "window_start": iso(s.window_start), "window_end": iso(s.window_end),
        "metrics": dict(s.metrics), "coverage": s.coverage, "algorithm": s.algorithm,
        "created_at": iso(s.created_at),
    }


def alert_body(alert_id: int | None, a: Alert) -> dict[str, Any]:
    return {
        "alert_id": alert_id, "rule": a.rule, "severity": a.severity, "state": a.state,
        "message": a.message, "raised_at": iso(a.raised_at), "key": a.key, "value": a.value,
        "unit": a.unit, "patient": a.patient_id, "device": a.device_id,
        "details": dict(a.details),
    }


def reading_body(reading_id: int | None, r: Reading) -> dict[str, Any]:
    """What the outbox keeps for a raw reading (bulk sync)."""
    return {
        "reading_id": reading_id, "kind": r.kind, "value": r.value, "unit": r.unit,
        "special": r.special, "time": iso(r.time), "received_at": iso(r.received_at),
        "device_time": r.device_time, "patient": r.patient_id, "device": r.device_id,
        "characteristic": r.characteristic, "record_key": r.record_key,
    }


class Outbox:
    """The outbox of one store, seen from one ``destination`` (default: the MQTT broker): it
    batches, settles and counts that destination's rows only.  Use from the thread that owns
    the store (the daemon's loop)."""

    def __init__(self, store: Store, gateway: str | None = None, *,
                 destination: str = DEST_MQTT) -> None:
        self.store = store
        self.destination = destination
        if gateway is not None and store.meta(META_GATEWAY) != gateway:
            store.set_meta(META_GATEWAY, gateway)
        self.gateway = gateway_id(store)

    # ------------------------------------------------------------------ add
    def add(
        self, kind: str, body: Mapping[str, Any], *, priority: int, created_at: datetime,
        patient_id: str | None = None, ref_table: str | None = None, ref_id: int | None = None,
        destination: str | None = None,
    ) -> str:
        """Queue one item for ``destination`` (default: this outbox's); returns its message
        id.  Joins the caller's open transaction."""
        if priority not in PRIORITY_NAMES:
            raise ValueError(f"priority must be one of {sorted(PRIORITY_NAMES)}")
        text = json.dumps(dict(body), separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False, default=str)
        with self.store.write() as conn:
            self.store.bump(SEQ_COUNTER, 1, conn)
            seq = int(conn.execute("SELECT value FROM counters WHERE name = ?",
                                   (SEQ_COUNTER,)).fetchone()[0])
            msg_id = message_id(self.gateway, self.store.db_id, seq)
            conn.execute(
                "INSERT INTO outbox (id, msg_id, priority, kind, patient_id, ref_table, ref_id,"
                " payload, created_at, destination) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, msg_id, priority, kind, patient_id, ref_table, ref_id, text,
                 iso(created_at), destination or self.destination),
            )
        return msg_id

    # ------------------------------------------------------------------ batch
    def batch(self, n: int, *, exclude: Iterable[int] = ()) -> list[Item]:
        """Up to ``n`` pending items in send order: priority, then sequence.

        ``exclude`` holds sequence numbers already in flight on the current connection.
        """
        skip = set(exclude)
        out: list[Item] = []
        # Page through the partial index rather than NOT IN (...) with a growing list.
        last: tuple[int, int] = (-1, 0)
        while len(out) < n:
            rows = self.store.conn.execute(
                "SELECT id, msg_id, priority, kind, patient_id, created_at, payload FROM outbox"
                " WHERE sent_at IS NULL AND destination = ? AND (priority, id) > (?, ?)"
                " ORDER BY priority, id LIMIT ?",
                (self.destination, last[0], last[1], n - len(out) + len(skip)),
            ).fetchall()
            if not rows:
                break
            for r in rows:
                if r[0] in skip:
                    continue
                out.append(Item(seq=r[0], msg_id=r[1], priority=r[2], kind=r[3],
                                patient_id=r[4], created_at=r[5], raw=r[6],
                                destination=self.destination))
                if len(out) >= n:
                    break
            last = (rows[-1][2], rows[-1][0])
        return out

    # ------------------------------------------------------------------ settle
    def accept(self, ids: Sequence[int], at: datetime) -> int:
        """Mark items acknowledged by the broker; returns how many were newly settled."""
        when = iso(at)
        sent, _failed, last_ok, _err, _err_at = _names(self.destination)
        return self._attempted(
            ids, "sent_at = ?, attempts = attempts + 1, last_attempt_at = ?, last_error = NULL",
            (when, when), sent, {last_ok: when})

    def reject(self, ids: Sequence[int], error: str, at: datetime) -> int:
        """Record a failed attempt; the items stay pending and are retried later."""
        when, error = iso(at), error[:_MAX_ERROR]
        _sent, failed, _ok, last_err, last_err_at = _names(self.destination)
        return self._attempted(
            ids, "attempts = attempts + 1, last_attempt_at = ?, last_error = ?",
            (when, error), failed, {last_err: error, last_err_at: when})

    def _attempted(self, ids: Sequence[int], assignments: str, params: tuple[Any, ...],
                   counter: str, meta: Mapping[str, str | None]) -> int:
        """One delivery attempt's outcome, in one transaction: update the pending items among
        ``ids``, count them under ``counter``, note ``meta``; returns how many were updated."""
        if not ids:
            return 0
        with self.store.write() as conn:
            n = _update_pending(conn, assignments, params, ids)
            if n:
                self.store.bump(counter, n, conn)
            for key, value in meta.items():
                _set_meta(conn, key, value)
        return n

    def note_error(self, error: str, at: datetime) -> None:
        """Remember a link-level error (broker unreachable) that settled no item."""
        *_, last_err, last_err_at = _names(self.destination)
        with self.store.write() as conn:
            _set_meta(conn, last_err, error[:_MAX_ERROR])
            _set_meta(conn, last_err_at, iso(at) or "")

    # ------------------------------------------------------------------ status
    def pending(self) -> int:
        return pending_count(self.store, self.destination)

    def status(self) -> dict[str, Any]:
        """The facts `sync status` shows; counts are outbox items since the database began."""
        return status(self.store, self.destination)


def pending_count(store: Store, destination: str = DEST_MQTT) -> int:
    """How many items wait for ``destination`` (default: the broker)."""
    return int(store.conn.execute(
        "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND destination = ?",
        (destination,)).fetchone()[0])


def destinations(store: Store) -> list[str]:
    """Every destination the outbox holds rows for (MQTT always)."""
    found = {r[0] for r in store.conn.execute("SELECT DISTINCT destination FROM outbox")}
    return sorted(found | {DEST_MQTT})


def pending_and_oldest(store: Store) -> tuple[int, str | None]:
    """How many items wait for the broker, and when the oldest of them was queued."""
    n, oldest = store.conn.execute(
        "SELECT count(*), min(created_at) FROM outbox WHERE sent_at IS NULL").fetchone()
    return int(n), oldest


def oldest_pending_at(store: Store) -> str | None:
    """When the oldest item still waiting for the broker was queued (None: nothing waits)."""
    oldest: str | None = store.conn.execute(
        "SELECT min(created_at) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
    return oldest


def last_sent_at(store: Store) -> str | None:
    """The newest broker acknowledgement the rows still show (sent rows may be evicted)."""
    last: str | None = store.conn.execute(
        "SELECT max(sent_at) FROM outbox WHERE destination = ?", (DEST_MQTT,)).fetchone()[0]
    return last


def sent_rows(store: Store) -> int:
    """Acknowledged items still held (eviction removes old ones; ``sync.sent`` counts all)."""
    return int(store.conn.execute(
        "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL AND destination = ?",
        (DEST_MQTT,)).fetchone()[0])


def status(store: Store, destination: str = DEST_MQTT) -> dict[str, Any]:
    """One destination's counts (default: the broker's, as `sync status` always showed)."""
    conn = store.conn
    sent, failed_n, last_ok, last_err, last_err_at = _names(destination)
    by_priority = {name: 0 for name in PRIORITY_NAMES.values()}
    for prio, count in conn.execute(
            "SELECT priority, count(*) FROM outbox WHERE sent_at IS NULL AND destination = ?"
            " GROUP BY priority", (destination,)):
        by_priority[PRIORITY_NAMES.get(prio, str(prio))] = int(count)
    failed, oldest = conn.execute(
        "SELECT count(last_error), min(created_at) FROM outbox"
        " WHERE sent_at IS NULL AND destination = ?", (destination,)).fetchone()
    last_success = store.meta(last_ok)
    if last_success is None:  # a database from before the meta key: the rows still know
        last_success = conn.execute("SELECT max(sent_at) FROM outbox WHERE destination = ?",
                                    (destination,)).fetchone()[0]
    return {
        "pending": sum(by_priority.values()),
        "pending_by_priority": by_priority,
        "sent": store.counter(sent),
        "failed": int(failed),
        "failed_attempts": store.counter(failed_n),
        "oldest_pending_at": oldest,
        "last_success_at": last_success,
        "last_error": store.meta(last_err),
        "last_error_at": store.meta(last_err_at),
    }


def _set_meta(conn: sqlite3.Connection, key: str, value: str | None) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)"
                 " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value or ""))


def _update_pending(conn: sqlite3.Connection, assignments: str, params: tuple[Any, ...],
                    ids: Sequence[int]) -> int:
    """``UPDATE outbox SET <assignments>`` on the still-pending rows among ``ids``."""
    n = 0
    for i in range(0, len(ids), 500):  # stay well under SQLite's bound-parameter limit
        chunk = ids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        n += conn.execute(f"UPDATE outbox SET {assignments}"
                          f" WHERE sent_at IS NULL AND id IN ({marks})", (*params, *chunk)).rowcount
    return n


# ---------------------------------------------------------------------- producers' entry points
def enqueue_summary(store: Store, summary_id: int | None, summary: Summary) -> str:
    """Queue a stored summary for the broker.  Call it inside the transaction that stored it."""
    return Outbox(store).add(
        "summary", summary_body(summary_id, summary), priority=PRIORITY_SUMMARY,
        created_at=summary.created_at, patient_id=summary.patient_id,
        ref_table="summaries", ref_id=summary_id,
    )


def enqueue_alert(store: Store, alert_id: int | None, alert: Alert, at: datetime) -> str:
    """Queue an alert event (raised, escalated, acknowledged, resolved); ``at`` is its time."""
    return Outbox(store).add(
        "alert", alert_body(alert_id, alert), priority=PRIORITY_ALERT, created_at=at,
        patient_id=alert.patient_id, ref_table="alerts", ref_id=alert_id,
    )


def enqueue_reading(store: Store, reading_id: int | None, body: Mapping[str, Any],
                    created_at: datetime, patient_id: str | None = None) -> str:
    """Queue a raw reading (bulk, lowest priority) when ``sync.bulk`` is configured."""
    return Outbox(store).add(
        "reading", body, priority=PRIORITY_BULK, created_at=created_at, patient_id=patient_id,
        ref_table="readings", ref_id=reading_id,
    )


def enqueue_readings(store: Store, readings: Iterable[Reading]) -> int:
    """Queue committed readings for bulk sync (``sync.bulk = true``), in one transaction."""
    ob = Outbox(store)
    n = 0
    with store.write():
        for r in readings:
            ob.add("reading", reading_body(None, r), priority=PRIORITY_BULK,
                   created_at=r.received_at, patient_id=r.patient_id, ref_table="readings")
            n += 1
    return n
