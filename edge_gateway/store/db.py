"""The SQLite store: the gateway's source of truth.

WAL journal, ``synchronous=FULL``; a storage cap through ``max_page_count`` with eviction of old,
already-synced data before the cap is reached; a random database id made at creation (used in
message ids so a restored backup never reuses one).  sqlite-utils gives us the table helpers;
the connection is plain ``sqlite3`` so transactions stay explicit.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge_gateway.errors import NotFound, StorageFull, StoreError
from edge_gateway.reading import Reading, iso
from edge_gateway.store import migrate

#: 1 KiB pages: a commit of one second of streamed readings dirties a handful of B-tree leaves,
#: and WAL writes whole pages, so small pages cut the bytes written per reading about 3x on an
#: SD card (measured by benchmarks/bench_store.py).
PAGE_SIZE = 1024
#: Start evicting when this share of the cap is used.
EVICT_AT = 0.90
#: Evict down to this share.
EVICT_TO = 0.80


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """A raw frame as received, kept beside what it decoded to."""

    device_id: str
    characteristic: str
    received_at: datetime
    payload: bytes
    error: str | None = None  # set when the frame was rejected


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    """One open database.  Not thread-safe: use it from one thread (the daemon's loop)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, cap_bytes: int | None, *,
                 readonly: bool = False) -> None:
        self.conn = conn
        self.path = path
        self.readonly = readonly
        self._db: Any = None
        self.cap_bytes = cap_bytes
        self.keep_raw = True
        row = conn.execute("SELECT value FROM meta WHERE key = 'db_id'").fetchone()
        self.db_id: str = row[0]

    @property
    def db(self) -> Any:
        """A sqlite-utils ``Database`` on the same connection (imported on first use: with
        pandas installed, importing sqlite-utils costs over a second of start-up)."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls, path: str | Path, *, cap_bytes: int | None = None, create: bool = True,
        readonly: bool = False,
    ) -> Store:
        """Open (and create and migrate) the database at ``path``.

        Files are created 0640 in a 0750 directory: the service user owns them and a caregiver
        in its group can read them with the CLI.
        """
        path = Path(path)
        if not path.exists():
            if not create or readonly:
                raise NotFound(
                    "database", str(path),
                    hint="run the daemon once (edge-gateway run) or pass --db to an existing file",
                )
            if not path.parent.exists():
                path.parent.mkdir(parents=True, mode=0o750)
            old = os.umask(0o027)
            try:
                path.touch(mode=0o640)
            finally:
                os.umask(old)
        try:
            if readonly:
                conn = sqlite3.connect(
                    f"file:{path}?mode=ro", uri=True, isolation_level=None,
                    check_same_thread=False,
                )
            else:
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 5000")
            if not readonly:
                _configure(conn, cap_bytes)
                migrate.migrate(conn)
                _ensure_identity(conn)
                for suffix in ("-wal", "-shm"):
                    side = Path(str(path) + suffix)
                    if side.exists():
                        os.chmod(side, 0o640)
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as err:
            raise StoreError(
                f"{path}: cannot open the database: {err}",
                hint="check the path and permissions; `edge-gateway db check` inspects it",
            ) from err
        return cls(conn, path, cap_bytes, readonly=readonly)

    def close(self) -> None:
        """Checkpoint (unless opened read-only: a reader must not write) and close."""
        try:
            if not self.readonly:
                self.checkpoint()
        finally:
            self.conn.close()

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One explicit write transaction (BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """Join the caller's open transaction when there is one, else run our own.

        Repository writes go through this, so a caller groups them (a caregiver change and its
        audit row, a summary and its outbox row) with ``with store.transaction():``.
        """
        if self.conn.in_transaction:
            yield self.conn
        else:
            with self.transaction() as conn:
                yield conn

    @contextmanager
    def relaxed_sync(self) -> Iterator[None]:
        """Commit without fsync (``synchronous = NORMAL``) inside the block, FULL again after.

        For sync's settling only: losing a "sent" mark to a power cut (never to a process
        crash: the WAL write itself is done) only means those items are published again, which
        at-least-once delivery allows.  An fsync per PUBACK batch would cap the drain rate at
        the disk's sync rate; the next ``FULL`` commit of anything else syncs these frames too.
        """
        self.conn.execute("PRAGMA synchronous = NORMAL")
        try:
            yield
        finally:
            self.conn.execute("PRAGMA synchronous = FULL")

    def stream(self, sql: str, args: Sequence[Any] = (), *,
               arraysize: int = 500) -> Iterator[Any]:
        """Stream a query's rows on a dedicated cursor (several may stay open at once, as in
        an export merging readings, summaries and alerts), ``arraysize`` rows at a time."""
        cur = self.conn.cursor()
        cur.arraysize = arraysize
        cur.execute(sql, args)
        while True:
            batch = cur.fetchmany()
            if not batch:
                return
            yield from batch

    def checkpoint(self) -> None:
        """Fold the WAL into the database file and truncate it (on shutdown and backups)."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ------------------------------------------------------------------ frames & readings
    def write_batch(
        self, frames: Sequence[tuple[FrameRecord, Sequence[Reading]]]
    ) -> tuple[int, int]:
        """Store raw frames and their readings in ONE transaction.

        Returns (frames stored, new readings).  Readings whose natural key is already present
        are ignored (idempotent: re-downloading a meter's memory never duplicates).
        """
        if not frames:
            return (0, 0)
        try:
            return self._write_batch(frames)
        except sqlite3.OperationalError as err:
            if "full" not in str(err):
                raise
        # The cap was hit inside the transaction: make room and try once more.
        self.evict(force=True)
        try:
            return self._write_batch(frames)
        except sqlite3.OperationalError as err:
            if "full" not in str(err):
                raise
            raise StorageFull(
                f"{self.path}: storage cap of {self.cap_bytes} bytes reached and nothing left "
                "to evict", hint="raise storage.max_bytes or let the outbox drain",
            ) from err

    def _write_batch(
        self, frames: Sequence[tuple[FrameRecord, Sequence[Reading]]]
    ) -> tuple[int, int]:
        with self.transaction() as conn:
            # Frame ids are assigned here (inside the write lock) so that frames and readings
            # go in with two executemany calls instead of one statement per frame.
            first = int(conn.execute("SELECT coalesce(max(id), 0) FROM raw_frames")
                        .fetchone()[0]) + 1
            keep = self.keep_raw
            conn.executemany(
                "INSERT INTO raw_frames (id, device_id, characteristic, received_at, payload,"
                " status, error) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(first + i, f.device_id, f.characteristic, iso(f.received_at),
                  f.payload if keep or f.error else None,
                  "rejected" if f.error else "ok", f.error)
                 for i, (f, _) in enumerate(frames)],
            )
            rows = [_reading_row(r, first + i) for i, (_, rs) in enumerate(frames) for r in rs]
            new = self._insert_counted(conn, rows)
        return (len(frames), new)

    def add_readings(self, readings: Iterable[Reading]) -> int:
        """Insert readings without a raw frame (tests, imports); returns how many were new."""
        rows = [_reading_row(r, r.raw_frame_id) for r in readings]
        with self.transaction() as conn:
            return self._insert_counted(conn, rows)

    @staticmethod
    def _insert_counted(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> int:
        """Insert reading rows (ignoring known natural keys); keep the per-device statistics
        (`status`, silent-device alerts) up to date so nothing ever scans the readings table.
        Rows are grouped by device and receive minute: a one-second batch is one group."""
        groups: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        for row in rows:
            groups.setdefault((row[0], row[8][:16]), []).append(row)
        new = 0
        for (device_id, minute), group in groups.items():
            before = conn.total_changes
            conn.executemany(_INSERT_READING, group)
            added = conn.total_changes - before
            if not added:
                continue
            new += added
            conn.execute(
                "UPDATE devices SET readings_total = readings_total + ?,"
                " last_reading_at = max(coalesce(last_reading_at, ''), ?) WHERE id = ?",
                (added, max(row[8] for row in group), device_id))
            conn.execute(
                "INSERT INTO device_minutes (device_id, minute, readings) VALUES (?, ?, ?)"
                " ON CONFLICT(device_id, minute) DO UPDATE SET"
                " readings = readings + excluded.readings", (device_id, minute, added))
        return new

    # ------------------------------------------------------------------ devices & patients
    def add_patient(
        self, patient_id: str, name: str | None = None, notes: str | None = None
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO patients (id, name, notes, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET name = coalesce(excluded.name, name),"
                " notes = coalesce(excluded.notes, notes)",
                (patient_id, name, notes, iso(_now())),
            )

    def upsert_device(
        self, device_id: str, *, profile: str, name: str | None = None,
        address: str | None = None, transport: str = "ble", patient_id: str | None = None,
        bonded: bool | None = None,
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO devices (id, address, name, profile, transport, patient_id, bonded,"
                " added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                " address = coalesce(excluded.address, address),"
                " name = coalesce(excluded.name, name), profile = excluded.profile,"
                " transport = excluded.transport,"
                " patient_id = coalesce(excluded.patient_id, patient_id),"
                " bonded = max(bonded, excluded.bonded)",
                (device_id, address, name, profile, transport, patient_id,
                 int(bool(bonded)), iso(_now())),
            )

    def device(self, device_id: str) -> dict[str, Any]:
        rows = list(self.db["devices"].rows_where("id = ?", [device_id]))
        if not rows:
            raise NotFound("device", device_id, hint="`edge-gateway devices list` shows them")
        return dict(rows[0])

    def set_connected(self, device_id: str, connected: bool, at: datetime) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE devices SET connected = ?, connected_changed_at = ?,"
                " last_seen_at = CASE WHEN ? THEN ? ELSE last_seen_at END WHERE id = ?",
                (int(connected), iso(at), int(connected), iso(at), device_id),
            )

    def update_device_state(self, device_id: str, **fields: Any) -> None:
        """Update daemon-owned device columns (reset_epoch, last_record, clock_offset_s, ...)."""
        allowed = {"reset_epoch", "last_record", "clock_offset_s", "battery_pct", "details",
                   "last_seen_at", "bonded", "name"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"not daemon-owned device columns: {sorted(bad)}")
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        values = [json.dumps(v) if isinstance(v, dict | list) else v for v in fields.values()]
        with self.transaction() as conn:
            conn.execute(f"UPDATE devices SET {sets} WHERE id = ?", [*values, device_id])

    # ------------------------------------------------------------------ counters & meta
    def bump(self, name: str, by: int = 1, conn: sqlite3.Connection | None = None) -> None:
        sql = ("INSERT INTO counters (name, value) VALUES (?, ?)"
               " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value")
        if conn is not None:
            conn.execute(sql, (name, by))
        else:
            with self.transaction() as c:
                c.execute(sql, (name, by))

    def counter(self, name: str) -> int:
        row = self.conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set one meta value; joins the caller's open transaction (the DSP's progress mark)."""
        with self.write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    # ------------------------------------------------------------------ size & eviction
    def used_bytes(self) -> int:
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * self.conn.execute("PRAGMA page_size").fetchone()[0])

    def file_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                total += p.stat().st_size
        return total

    def evict(
        self, *, retention: timedelta = timedelta(days=90), force: bool = False,
        now: datetime | None = None, batch: int = 500,
    ) -> int:
        """Delete old raw frames and readings when the cap is near; return rows deleted.

        Only data older than the retention window AND older than every summary still waiting
        in the outbox is evictable, oldest first.  Unsynced summaries and alerts are never
        evicted.  When nothing evictable is left, raw frames stop being kept (``keep_raw``) so
        that readings can still be stored; the caller raises the storage alert.
        """
        if self.cap_bytes is None:
            return 0
        if not force and self.used_bytes() < EVICT_AT * self.cap_bytes:
            return 0
        now = now or _now()
        cutoff = iso(now - retention)
        assert cutoff is not None
        row = self.conn.execute(
            "SELECT min(s.window_start) FROM outbox o JOIN summaries s"
            " ON o.ref_table = 'summaries' AND o.ref_id = s.id WHERE o.sent_at IS NULL"
        ).fetchone()
        if row and row[0] is not None and row[0] < cutoff:
            cutoff = row[0]
        deleted = 0
        target = EVICT_TO * self.cap_bytes
        while force or self.used_bytes() > target:
            force = False
            with self.transaction() as conn:
                n_frames = conn.execute(
                    "DELETE FROM raw_frames WHERE id IN (SELECT id FROM raw_frames"
                    " WHERE received_at < ? ORDER BY id LIMIT ?)", (cutoff, batch)).rowcount
                n_readings = conn.execute(
                    "DELETE FROM readings WHERE id IN (SELECT id FROM readings"
                    " WHERE received_at < ? ORDER BY id LIMIT ?)", (cutoff, batch)).rowcount
                n_sent = conn.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
                    " WHERE sent_at IS NOT NULL AND sent_at < ? ORDER BY id LIMIT ?)",
                    (cutoff, batch)).rowcount
                if n_frames:
                    self.bump("evicted.raw_frames", n_frames, conn)
                if n_readings:
                    self.bump("evicted.readings", n_readings, conn)
                if n_sent:
                    self.bump("evicted.outbox_sent", n_sent, conn)
            deleted += n_frames + n_readings + n_sent
            if n_frames + n_readings + n_sent == 0:
                break
        if self.used_bytes() > EVICT_AT * self.cap_bytes:
            self.keep_raw = False
        return deleted

    def prune_stats(self, now: datetime | None = None) -> int:
        """Drop per-minute reading counts older than 48 h (only the last 24 h are reported)."""
        cutoff = iso((now or _now()) - timedelta(hours=48))
        assert cutoff is not None
        with self.transaction() as conn:
            return conn.execute("DELETE FROM device_minutes WHERE minute < ?",
                                (cutoff[:16],)).rowcount

    def readings_since(self, device_id: str, since: datetime) -> int:
        """Readings received from ``since`` on (to the minute), from the per-minute counts."""
        start = iso(since)
        assert start is not None
        row = self.conn.execute(
            "SELECT coalesce(sum(readings), 0) FROM device_minutes WHERE device_id = ?"
            " AND minute >= ?", (device_id, start[:16])).fetchone()
        return int(row[0])

    def evicted(self) -> int:
        row = self.conn.execute(
            "SELECT coalesce(sum(value), 0) FROM counters WHERE name LIKE 'evicted.%'"
        ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ maintenance
    def integrity_check(self) -> list[str]:
        return [r[0] for r in self.conn.execute("PRAGMA integrity_check")]

    def backup(self, dest: str | Path) -> Path:
        """Copy the live database with SQLite's online backup API (safe while the daemon runs)."""
        dest = Path(dest)
        if dest.exists():
            raise StoreError(f"{dest}: already exists", hint="choose a new file name")
        old = os.umask(0o027)
        try:
            target = sqlite3.connect(dest)
            try:
                self.conn.backup(target)
            finally:
                target.close()
        finally:
            os.umask(old)
        os.chmod(dest, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP)
        return dest

    def table_counts(self) -> dict[str, int]:
        names = [r[0] for r in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name")]
        return {n: int(self.conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0])
                for n in names}


def period_filter(col: str, patient_id: str, since: str | None,
                  until: str | None) -> tuple[str, list[Any]]:
    """`` AND <col> >= ?`` (and `` AND <col> < ?`` with an end) for a query that starts
    ``WHERE patient_id = ?``, with the arguments of all three."""
    sql = f" AND {col} >= ?" + (f" AND {col} < ?" if until else "")
    return sql, [patient_id, since] + ([until] if until else [])


_INSERT_READING = (
    "INSERT OR IGNORE INTO readings (device_id, patient_id, characteristic, kind, value, unit,"
    " special, time, received_at, device_time, record_key, reset_epoch, raw_frame_id, extra)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _reading_row(r: Reading, frame_id: int | None) -> tuple[Any, ...]:
    return (
        r.device_id, r.patient_id, r.characteristic, r.kind, r.value, r.unit, r.special,
        iso(r.time), iso(r.received_at), r.device_time, r.record_key, r.reset_epoch, frame_id,
        json.dumps(dict(r.extra), separators=(",", ":"), default=str) if r.extra else None,
    )


def _configure(conn: sqlite3.Connection, cap_bytes: int | None) -> None:
    if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        raise StoreError(f"could not switch the database to WAL (got {mode})")
    conn.execute("PRAGMA synchronous = FULL")
    # Keep the WAL from growing without bound on a full disk: checkpoint every 1000 pages and
    # truncate the WAL file back to 4 MiB after a checkpoint.
    conn.execute("PRAGMA wal_autocheckpoint = 1000")
    conn.execute(f"PRAGMA journal_size_limit = {4 * 1024 * 1024}")
    if cap_bytes is not None:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {max(cap_bytes // page, 64)}")


def _ensure_identity(conn: sqlite3.Connection) -> None:
    if conn.execute("SELECT 1 FROM meta WHERE key = 'db_id'").fetchone() is None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO meta (key, value) VALUES ('db_id', ?)", (uuid.uuid4().hex[:12],))
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?)",
                     (iso(_now()),))
        conn.execute("COMMIT")
