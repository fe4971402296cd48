"""PostgreSQL for the fleet ingest: migrations, monthly partitions, one transaction per batch.

The only module that talks to PostgreSQL (psycopg 3).  Schema and partition creation run under
``pg_advisory_xact_lock`` so that instances starting together never race.  A batch of decoded
messages is committed in one transaction: items (``ON CONFLICT DO NOTHING`` on ``(id,
created_at)``), gateways, patients, alerts folded from alert items, dead letters and this
consumer's counters.  The caller acknowledges the messages only after :func:`commit` returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from edge_gateway.cloud.decode import (
    AlertEvent,
    DataMessage,
    DeadLetter,
    Decoded,
    StatusMessage,
)

SCHEMA_LOCK = 0x65677700  # "egw\0": schema migrations
PARTITION_LOCK = 0x65677701  # partition creation
#: Monthly partitions are made for items dated from this far back …
PARTITION_PAST = timedelta(days=400)
#: … to this far ahead; items outside (a hub whose clock was wrong) go to the DEFAULT one.
PARTITION_AHEAD = timedelta(days=35)

Connection = psycopg.Connection[Any]


def connect(dsn: str, *, timeout_s: int = 10) -> Connection:
    """An autocommit connection (transactions are explicit blocks)."""
    return psycopg.connect(dsn, autocommit=True, connect_timeout=timeout_s,
                           application_name="edge-gateway-cloud")


# ---------------------------------------------------------------------- migrations
def migrations() -> list[tuple[int, str, str]]:
    """(version, name, SQL text) of every migration file, in order."""
    pkg = resources.files("edge_gateway.cloud.store.migrations")
    out = []
    for entry in pkg.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            out.append((int(name[:4]), name, entry.read_text("utf-8")))
    return sorted(out)


def migrate(conn: Connection) -> int:
    """Create or bring the schema up to date; returns the version.  Safe to run from many
    instances at once (one takes the lock, the others then find nothing left to do)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS edge_gateway")
        conn.execute("CREATE TABLE IF NOT EXISTS edge_gateway.schema_version ("
                     " version integer PRIMARY KEY,"
                     " applied_at timestamptz NOT NULL DEFAULT now())")
        row = conn.execute("SELECT coalesce(max(version), 0) FROM edge_gateway.schema_version"
                           ).fetchone()
        current = int(row[0]) if row else 0
        for version, _name, text in migrations():
            if version > current:
                conn.execute(text.encode())  # no parameters: many statements in one go
                conn.execute("INSERT INTO edge_gateway.schema_version (version) VALUES (%s)",
                             (version,))
                current = version
    return current


# ---------------------------------------------------------------------- partitions
def month_of(t: datetime) -> datetime:
    t = t.astimezone(UTC)
    return datetime(t.year, t.month, 1, tzinfo=UTC)


def next_month(m: datetime) -> datetime:
    return datetime(m.year + (m.month == 12), m.month % 12 + 1, 1, tzinfo=UTC)


def partition_name(m: datetime) -> str:
    return f"item_rows_{m.year:04d}{m.month:02d}"


def wanted_months(times: Iterable[datetime], now: datetime) -> set[datetime]:
    """The months that get their own partition (the rest stay in DEFAULT)."""
    lo, hi = month_of(now - PARTITION_PAST), month_of(now + PARTITION_AHEAD)
    # (year, month) pairs first: one datetime per month, not per item (a batch holds
    # thousands); times already in UTC (the hubs send "Z") skip the conversion.
    pairs = {(t.year, t.month) for t in (t if t.tzinfo is UTC else t.astimezone(UTC)
                                         for t in times)}
    return {m for y, mo in pairs if lo <= (m := datetime(y, mo, 1, tzinfo=UTC)) <= hi}


class Partitions:
    """Monthly partitions made on demand; remembers what exists so a batch asks at most once."""

    def __init__(self) -> None:
        self.known: set[str] = set()

    def ensure(self, conn: Connection, months: Iterable[datetime]) -> list[str]:
        """Create the missing monthly partitions (own transaction, under the advisory lock):
        rows of that month already in DEFAULT are moved into the new one.  Returns created."""
        missing = sorted(m for m in months if partition_name(m) not in self.known)
        if not missing:
            return []
        created: list[str] = []
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
            for m in missing:
                name = partition_name(m)
                exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                                      (f"edge_gateway.{name}",)).fetchone()
                if not (exists and exists[0]):
                    _create_partition(conn, name, m, next_month(m))
                    created.append(name)
                self.known.add(name)
        return created


def _create_partition(conn: Connection, name: str, lo: datetime, hi: datetime) -> None:
    # CREATE … PARTITION OF fails while DEFAULT holds rows of that range: build the table,
    # move those rows over, then attach (all in the caller's transaction).
    ident = sql.Identifier("edge_gateway", name)
    conn.execute(sql.SQL("CREATE TABLE {} (LIKE edge_gateway.item_rows INCLUDING DEFAULTS)"
                         ).format(ident))
    conn.execute(sql.SQL(
        "WITH moved AS (DELETE FROM edge_gateway.item_rows_default"
        " WHERE created_at >= %s AND created_at < %s RETURNING *)"
        " INSERT INTO {} SELECT * FROM moved").format(ident), (lo, hi))
    conn.execute(sql.SQL("ALTER TABLE edge_gateway.item_rows ATTACH PARTITION {}"
                         " FOR VALUES FROM ({}) TO ({})").format(
                             ident, sql.Literal(lo.isoformat()), sql.Literal(hi.isoformat())))


# ---------------------------------------------------------------------- batches
@dataclass(frozen=True, slots=True)
class BatchResult:
    messages: int
    items: int  # items carried
    inserted: int  # items new to the database
    duplicates: int  # items already there (re-delivery, a second consumer, a re-send)
    dead_letters: int


_COLUMNS = "id, created_at, gateway, site, patient, kind, format, received_at, data"
# Fast path: COPY straight into item_rows inside a savepoint.  A batch with no item already
# stored (nearly all of them) then costs what a bare COPY costs.  A duplicate anywhere in it
# makes the COPY fail as a whole (unique violation), the savepoint is rolled back and the
# batch takes the slow path: COPY into a per-session staging table, then one INSERT … ON
# CONFLICT DO NOTHING (about 3 times the rate of adapting nine Python lists for an unnest()).
# Either way the rows are committed in the caller's one transaction, before any PUBACK.
_DIRECT = f"COPY edge_gateway.item_rows ({_COLUMNS}) FROM STDIN"
_STAGE = ("CREATE TEMP TABLE IF NOT EXISTS item_stage"
          " (LIKE edge_gateway.item_rows) ON COMMIT DELETE ROWS")
_COPY = f"COPY item_stage ({_COLUMNS}) FROM STDIN"
_MOVE = (f"INSERT INTO edge_gateway.item_rows ({_COLUMNS}) SELECT {_COLUMNS} FROM item_stage"
         " ON CONFLICT DO NOTHING RETURNING id, gateway")


def commit(conn: Connection, consumer: str, decoded: Sequence[Decoded],
           received: Sequence[datetime], lag_s: float | None = None) -> BatchResult:
    """Store one batch of decoded messages (each with its receive time) in one transaction."""
    assert len(received) == len(decoded)
    received_at = max(received) if received else datetime.now(UTC)
    pairs = [(d, t) for d, t in zip(decoded, received, strict=True)
             if isinstance(d, DataMessage)]
    data = [d for d, _t in pairs]
    n_items = sum(len(d.items) for d in data)
    dead = [(d, t) for d, t in zip(decoded, received, strict=True) if isinstance(d, DeadLetter)]
    status = [d for d in decoded if isinstance(d, StatusMessage)]
    with conn.transaction():
        new_ids: set[str] | None = None  # None: every item of the batch was new
        per_gateway: dict[str, int] = {}
        if n_items:
            try:
                with conn.transaction(), conn.cursor() as cur, cur.copy(_DIRECT) as cp:
                    _write_items(cp, pairs)
                for d in data:
                    per_gateway[d.gateway] = per_gateway.get(d.gateway, 0) + len(d.items)
            except psycopg.errors.UniqueViolation:
                conn.execute(_STAGE)
                with conn.cursor() as cur:
                    with cur.copy(_COPY) as cp:
                        _write_items(cp, pairs)
                    new_ids = set()
                    for item_id, gateway in cur.execute(_MOVE).fetchall():
                        new_ids.add(str(item_id))
                        per_gateway[str(gateway)] = per_gateway.get(str(gateway), 0) + 1
        inserted = n_items if new_ids is None else len(new_ids)
        _gateways(conn, data, per_gateway, received_at)
        _patients(conn, data)
        _alerts(conn, [a for d in data for a in d.alerts
                       if new_ids is None or a.item_id in new_ids])
        _status(conn, status, received_at)
        if dead:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO edge_gateway.dead_letter_rows"
                    " (topic, reason, payload, received_at, consumer) VALUES (%s, %s, %s, %s, %s)",
                    [(d.topic, d.reason, d.payload, t, consumer) for d, t in dead])
        dup = n_items - inserted
        conn.execute(
            "INSERT INTO edge_gateway.consumers AS c (consumer, messages, items, duplicates,"
            " dead_letters, last_commit_at, last_lag_s)"
            " VALUES (%s, %s, %s, %s, %s, clock_timestamp(), %s)"
            " ON CONFLICT (consumer) DO UPDATE SET messages = c.messages + EXCLUDED.messages,"
            " items = c.items + EXCLUDED.items, duplicates = c.duplicates + EXCLUDED.duplicates,"
            " dead_letters = c.dead_letters + EXCLUDED.dead_letters,"
            " last_commit_at = EXCLUDED.last_commit_at,"
            " last_lag_s = coalesce(EXCLUDED.last_lag_s, c.last_lag_s)",
            (consumer, len(decoded), inserted, dup, len(dead), lag_s))
    return BatchResult(len(decoded), n_items, inserted, dup, len(dead))


def _write_items(cp: psycopg.Copy, pairs: Sequence[tuple[DataMessage, datetime]]) -> None:
    write = cp.write_row
    for d, t in pairs:
        for r in d.items:
            write((r.id, r.created_at, r.gateway, r.site, r.patient, r.kind, r.format, t,
                   r.data))


def _gateways(conn: Connection, data: Sequence[DataMessage], new_items: dict[str, int],
              received_at: datetime) -> None:
    per: dict[str, list[Any]] = {}
    for d in data:
        newest = max(it.created_at for it in d.items)
        g = per.setdefault(d.gateway, [d.site, newest, new_items.get(d.gateway, 0)])
        g[0], g[1] = d.site, max(g[1], newest)
    if not per:
        return
    keys = sorted(per)  # one lock order for every consumer: no deadlock between them
    conn.execute(
        "INSERT INTO edge_gateway.gateways AS g (gateway, site, last_seen, newest_item_at, items)"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[],"
        " %s::bigint[]) ON CONFLICT (gateway) DO UPDATE SET site = EXCLUDED.site,"
        " last_seen = greatest(g.last_seen, EXCLUDED.last_seen),"
        " newest_item_at = greatest(g.newest_item_at, EXCLUDED.newest_item_at),"
        " items = g.items + EXCLUDED.items",
        (keys, [per[k][0] for k in keys], [received_at] * len(keys),
         [per[k][1] for k in keys], [per[k][2] for k in keys]))


def _patients(conn: Connection, data: Sequence[DataMessage]) -> None:
    per: dict[tuple[str, str], list[Any]] = {}
    for d in data:
        if d.patient is None:
            continue
        times = [it.created_at for it in d.items]
        p = per.setdefault((d.gateway, d.patient), [d.site, min(times), max(times)])
        p[1], p[2] = min(p[1], *times), max(p[2], *times)
    if not per:
        return
    keys = sorted(per)
    conn.execute(
        "INSERT INTO edge_gateway.patients AS p (gateway, patient, site, first_seen, last_seen)"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[],"
        " %s::timestamptz[]) ON CONFLICT (gateway, patient) DO UPDATE SET site = EXCLUDED.site,"
        " first_seen = least(p.first_seen, EXCLUDED.first_seen),"
        " last_seen = greatest(p.last_seen, EXCLUDED.last_seen)",
        ([k[0] for k in keys], [k[1] for k in keys], [per[k][0] for k in keys],
         [per[k][1] for k in keys], [per[k][2] for k in keys]))


def _alerts(conn: Connection, events: Sequence[AlertEvent]) -> None:
    if not events:
        return
    ordered = sorted(events, key=lambda a: (a.gateway, a.key, a.at))
    with conn.cursor() as cur:
        # One statement per event (an INSERT … ON CONFLICT DO UPDATE may not touch a row twice);
        # an older event arriving late only counts, it never rolls the state back.
        cur.executemany(
            "INSERT INTO edge_gateway.alerts AS a (gateway, alert_key, site, patient, rule,"
            " severity, state, message, raised_at, updated_at, last_item)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (gateway, alert_key) DO UPDATE SET events = a.events + 1,"
            " site = CASE WHEN EXCLUDED.updated_at >= a.updated_at THEN EXCLUDED.site"
            " ELSE a.site END,"
            " patient = CASE WHEN EXCLUDED.updated_at >= a.updated_at THEN EXCLUDED.patient"
            " ELSE a.patient END,"
            " rule = coalesce(a.rule, EXCLUDED.rule),"
            " severity = CASE WHEN EXCLUDED.updated_at >= a.updated_at THEN EXCLUDED.severity"
            " ELSE a.severity END,"
            " state = CASE WHEN EXCLUDED.updated_at >= a.updated_at THEN EXCLUDED.state"
            " ELSE a.state END,"
            " message = CASE WHEN EXCLUDED.updated_at >= a.updated_at THEN EXCLUDED.message"
            " ELSE a.message END,"
            " raised_at = coalesce(a.raised_at, EXCLUDED.raised_at),"
            " last_item = CASE WHEN EXCLUDED.updated_at >= a.updated_at THEN EXCLUDED.last_item"
            " ELSE a.last_item END,"
            " updated_at = greatest(a.updated_at, EXCLUDED.updated_at)",
            [(a.gateway, a.key, a.site, a.patient, a.rule, a.severity, a.state, a.message,
              a.raised_at, a.at, a.item_id) for a in ordered])


def _status(conn: Connection, status: Sequence[StatusMessage], received_at: datetime) -> None:
    # The same status can come twice (shared and unshared subscription): the newer one wins,
    # by the gateway's own time when it gave one.
    for s in sorted(status, key=lambda s: s.gateway):
        conn.execute(
            "INSERT INTO edge_gateway.gateways AS g (gateway, site, status, status_at,"
            " status_said_at, last_seen, version) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (gateway) DO UPDATE SET site = EXCLUDED.site,"
            " version = coalesce(EXCLUDED.version, g.version),"
            " status = CASE WHEN g.status_said_at IS NULL OR EXCLUDED.status_said_at IS NULL"
            " OR EXCLUDED.status_said_at >= g.status_said_at THEN EXCLUDED.status"
            " ELSE g.status END,"
            " status_said_at = greatest(g.status_said_at, EXCLUDED.status_said_at),"
            " status_at = EXCLUDED.status_at,"
            " last_seen = greatest(g.last_seen, EXCLUDED.last_seen)",
            (s.gateway, s.site, s.status, received_at, s.at, received_at, s.version))


# ---------------------------------------------------------------------- status
def status(conn: Connection) -> dict[str, Any]:
    """What ``edge-gateway cloud status`` prints (the contract's keys and a few more)."""
    def one(query: str) -> Any:
        row = conn.execute(query).fetchone()
        return row[0] if row else None

    totals = conn.execute(
        "SELECT coalesce(sum(messages), 0), coalesce(sum(items), 0),"
        " coalesce(sum(duplicates), 0), max(last_commit_at) FROM edge_gateway.consumers"
    ).fetchone()
    assert totals is not None
    lag = one("SELECT last_lag_s FROM edge_gateway.consumers"
              " ORDER BY last_commit_at DESC NULLS LAST LIMIT 1")
    gateways = [
        {"gateway": g, "site": s, "status": st, "last_seen": _iso(ls),
         "newest_item_at": _iso(ni), "items": int(n)}
        for g, s, st, ls, ni, n in conn.execute(
            "SELECT gateway, site, status, last_seen, newest_item_at, items"
            " FROM edge_gateway.gateways ORDER BY site, gateway").fetchall()]
    by_reason = {str(r): int(n) for r, n in conn.execute(
        "SELECT split_part(reason, ':', 1), count(*) FROM edge_gateway.dead_letter_rows"
        " GROUP BY 1 ORDER BY 1").fetchall()}
    consumers = [
        {"consumer": c, "messages": int(m), "items": int(i), "duplicates": int(d),
         "last_commit_at": _iso(t)}
        for c, m, i, d, t in conn.execute(
            "SELECT consumer, messages, items, duplicates, last_commit_at"
            " FROM edge_gateway.consumers ORDER BY consumer").fetchall()]
    return {
        "items": int(one("SELECT count(*) FROM edge_gateway.item_rows")),
        "duplicates_dropped": int(totals[2]),
        "dead_letters": sum(by_reason.values()),
        "dead_letters_by_reason": by_reason,
        "messages": int(totals[0]),
        "gateways_online": sum(1 for g in gateways if g["status"] == "online"),
        "gateways_offline": sum(1 for g in gateways if g["status"] == "offline"),
        "gateways": gateways,
        "patients": int(one("SELECT count(*) FROM edge_gateway.patients")),
        "open_alerts": int(one("SELECT count(*) FROM edge_gateway.alerts"
                               " WHERE state IS DISTINCT FROM 'resolved'")),
        "last_commit_at": _iso(totals[3]),
        "lag_s": None if lag is None else round(float(lag), 3),
        "consumers": consumers,
    }


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")
