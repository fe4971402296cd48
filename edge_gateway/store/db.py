"""The SQLite store: the gateway's source of truth.

WAL journal, ``synchronous=FULL``; a storage cap through ``max_page_count`` with eviction of old,
already-synced data before the cap is reached; a random database id made at creation (used in
message ids so a restored backup never reuses one).  sqlite-utils gives us the table helpers;
the connection is plain ``sqlite3`` so transactions stay explicit.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge_gateway.errors import (
    DiskFull,
    MigrationError,
    NotFound,
    StorageFull,
    StoreCorrupt,
    StoreError,
    StoreReadOnly,
)
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
#: A SQLITE_FULL with less than this free on the database's file system is the disk, not the
#: cap (a one-second batch and a WAL growing to its autocheckpoint need well under this).
DISK_LOW_BYTES = 2 * 1024 * 1024
#: Eviction rounds a write makes at the cap before it reports the store full.
WRITE_EVICT_ROUNDS = 4

# SQLite's primary result codes (sqlite3.h), for telling failures apart.
_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT = 3, 8, 10, 11
_SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 13, 14, 26


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


def free_bytes(path: Path) -> int | None:
    """Bytes free for this process on the file system holding ``path`` (None if unknown)."""
    try:
        st = os.statvfs(path.parent if not path.is_dir() else path)
    except OSError:
        return None
    return int(st.f_bavail * st.f_frsize)


def classify(err: sqlite3.Error, path: Path, cap_bytes: int | None = None
             ) -> StoreError | None:
    """What a SQLite failure was, as one of our errors (None: not a storage fault).

    SQLITE_FULL means either the cap (``max_page_count``) or the file system: the disk's free
    space tells which, so a full SD card never reads "storage cap reached".
    """
    code = getattr(err, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    text = str(err)
    if primary is None:  # not raised by SQLite itself: judge by the message
        primary = (_SQLITE_FULL if "full" in text else _SQLITE_CORRUPT if "malformed" in text
                   else _SQLITE_NOTADB if "not a database" in text
                   else _SQLITE_READONLY if "readonly" in text else None)
    where = str(path)
    if primary in (_SQLITE_FULL, _SQLITE_IOERR):
        free = free_bytes(path)
        if free is not None and free < DISK_LOW_BYTES:
            return DiskFull(where, free)
        if primary == _SQLITE_IOERR:
            return None
        # Space left on the disk: only the cap (max_page_count) can have stopped the write,
        # however far below it the database was (one large batch can need more than is left).
        if cap_bytes is not None:
            return StorageFull(where, cap_bytes)
        return DiskFull(where, free)
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return StoreCorrupt(where, text)
    if primary in (_SQLITE_READONLY, _SQLITE_PERM, _SQLITE_CANTOPEN):
        return StoreReadOnly(where, text)
    return None


def reader_uri(path: Path) -> str:
    """The URI a read-only connection opens ``path`` with.

    A reader in WAL mode needs the ``-wal`` and ``-shm`` files: while a writer (the daemon)
    has the database open they exist and a member of the service group may read them.  After
    a clean stop they are gone, and an account that cannot write to the folder cannot
    create them; then, and only then, the file is opened ``immutable=1`` (no locks, no WAL):
    with no ``-wal`` file nothing is pending outside the database file, and a writer that
    starts meanwhile writes to a new WAL, reaching the database file only at a checkpoint.
    """
    uri = "file:" + urllib.parse.quote(str(path.absolute())) + "?mode=ro"
    if not Path(str(path) + "-wal").exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        uri += "&immutable=1"
    return uri


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
        #: How long data is kept before it may be evicted (the daemon sets
        #: ``storage.retention_days``).
        self.retention = timedelta(days=365)
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
                    reader_uri(path), uri=True, isolation_level=None,
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
                    # Only our own files: another account's (the daemon's) are not ours to
                    # change, and SQLite already gives them the database file's mode.
                    with contextlib.suppress(FileNotFoundError):
                        if side.stat().st_uid == os.geteuid():
                            os.chmod(side, 0o640)
            else:
                _refuse_older_schema(conn, path)
            conn.execute("PRAGMA foreign_keys = ON")
            return cls(conn, path, cap_bytes, readonly=readonly)
        except (sqlite3.DatabaseError, MigrationError) as err:
            cause = err.__cause__ if isinstance(err, MigrationError) else err
            fault = classify(cause, path, cap_bytes) \
                if isinstance(cause, sqlite3.Error) else None
            if fault is not None:
                raise fault from err
            if isinstance(err, MigrationError):
                raise
            raise StoreError(
                f"{path}: cannot open the database: {err}",
                hint="check the path and permissions; `edge-gateway db check` inspects it",
            ) from err

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
        """One explicit write transaction (BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error).

        A storage fault (full disk, the cap, corruption, read-only) comes out as our error
        saying which.  SQLite rolls a transaction back by itself on some errors (SQLITE_FULL,
        SQLITE_IOERR, SQLITE_CORRUPT): our ROLLBACK then runs only if one is still open, so
        it can never replace the real error with "cannot rollback - no transaction is active".
        """
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self._rollback()
                raise
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except sqlite3.Error as err:
            fault = classify(err, self.path, self.cap_bytes)
            if fault is None:
                raise
            raise fault from err

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")

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
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as err:
            raise classify(err, self.path, self.cap_bytes) or err from err

    # ------------------------------------------------------------------ frames & readings
    def write_batch(
        self, frames: Sequence[tuple[FrameRecord, Sequence[Reading]]]
    ) -> tuple[int, int]:
        """Store raw frames and their readings in ONE transaction.

        Returns (frames stored, new readings).  Readings whose natural key is already present
        are ignored (idempotent: re-downloading a meter's memory never duplicates).  At the
        storage cap, after evicting, a batch bigger than the room made is written in halves
        (each frame with its readings stays atomic); when a later part fails, the error's
        ``committed`` says how many frames (a prefix) are stored.
        """
        if not frames:
            return (0, 0)
        try:
            done = self._write_evicting(frames)
        except StorageFull:
            if len(frames) == 1:
                raise
        else:
            # Keep headroom under the cap for the rest (summaries, alerts, the outbox): past
            # EVICT_AT the writer evicts now, not when the next transaction fails.
            if self.cap_bytes is not None and self.used_bytes() > EVICT_AT * self.cap_bytes:
                with contextlib.suppress(StorageFull, DiskFull):
                    self.evict(force=True)
            return done
        # More than the room eviction can make at once (a backfill of days of records into
        # a small cap): write it in halves, each frame with its readings still atomic.
        half = len(frames) // 2
        a = self.write_batch(frames[:half])
        try:
            b = self.write_batch(frames[half:])
        except StoreError as err:
            err.committed = (a[0] + err.committed[0], a[1] + err.committed[1])
            raise
        return (a[0] + b[0], a[1] + b[1])

    def _write_evicting(
        self, frames: Sequence[tuple[FrameRecord, Sequence[Reading]]]
    ) -> tuple[int, int]:
        for _ in range(WRITE_EVICT_ROUNDS):
            try:
                return self._write_batch(frames)
            except (StorageFull, DiskFull) as err:
                full: StoreError = err
            # Full inside the transaction (SQLite has rolled it back): make room, try again.
            # A full disk is not the cap: only what retention lets go goes (fresh data is not
            # deleted because something else filled the disk), and deleting needs WAL space
            # too, so it may fail; the error stays.
            try:
                freed = self.evict(force=True, beyond_retention=isinstance(full, StorageFull))
            except (StorageFull, DiskFull):
                freed = 0
            if not freed:
                raise full
        return self._write_batch(frames)

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
        self, *, retention: timedelta | None = None, force: bool = False,
        now: datetime | None = None, batch: int = 500, beyond_retention: bool = True,
    ) -> int:
        """Delete old data when the cap is near (``force``: at the cap); return rows deleted.

        First, and always: raw frames, readings and sent outbox rows older than the retention
        window AND older than every summary still waiting in the outbox, oldest first.  Only
        at the cap (``force``, a write failed) and when that frees nothing: accepted raw frames
        (their readings keep what they said), then readings older than every unsent summary,
        oldest first whatever their age (a cap too small for the retention window makes the
        store a ring buffer); the newest frame and reading of each device characteristic stay
        (backfill finds the last record it holds from them).  Rejected frames, unsynced
        summaries, alerts and unsent outbox rows are never evicted.  Every deletion is counted
        (``evicted.*``); ``beyond_retention=False`` (a full disk) keeps to the first step.
        When still above the threshold, raw frames stop being kept
        (``keep_raw``) so that readings can still be stored; the caller raises the alert.
        """
        if self.cap_bytes is None:
            return 0
        if not force and self.used_bytes() < EVICT_AT * self.cap_bytes:
            return 0
        now = now or _now()
        cutoff = iso(now - (retention if retention is not None else self.retention))
        assert cutoff is not None
        row = self.conn.execute(
            "SELECT min(s.window_start) FROM outbox o JOIN summaries s"
            " ON o.ref_table = 'summaries' AND o.ref_id = s.id WHERE o.sent_at IS NULL"
        ).fetchone()
        unsent = None if row is None else row[0]
        if unsent is not None and unsent < cutoff:
            cutoff = unsent
        deleted = self._evict_rounds(self._evict_retention, cutoff, batch, force)
        if force and beyond_retention:
            for step, arg in ((self._evict_frames_at_cap, cutoff),
                              (self._evict_readings_at_cap, unsent)):
                # Until under EVICT_TO; at least one batch when a write failed and nothing
                # went yet.
                if deleted and self.used_bytes() <= EVICT_TO * self.cap_bytes:
                    break
                deleted += self._evict_rounds(step, arg, batch, not deleted)
        self.keep_raw = self.used_bytes() <= EVICT_AT * self.cap_bytes
        return deleted

    def _evict_rounds(self, step: Any, cutoff: str | None, batch: int, force: bool) -> int:
        """Run one eviction step in batches (a transaction each) down to ``EVICT_TO``."""
        assert self.cap_bytes is not None
        deleted = 0
        target = EVICT_TO * self.cap_bytes
        while force or self.used_bytes() > target:
            force = False
            with self.transaction() as conn:
                n = int(step(conn, cutoff, batch))
            deleted += n
            if n == 0:
                break
        return deleted

    def _evict_retention(self, conn: sqlite3.Connection, cutoff: str | None,
                         batch: int) -> int:
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
        return int(n_frames + n_readings + n_sent)

    def _evict_frames_at_cap(self, conn: sqlite3.Connection, _cutoff: str | None,
                             batch: int) -> int:
        n = conn.execute(
            "DELETE FROM raw_frames WHERE id IN (SELECT id FROM raw_frames"
            " WHERE status = 'ok' AND id NOT IN (SELECT max(id) FROM raw_frames"
            " WHERE status = 'ok' GROUP BY device_id, characteristic)"
            " ORDER BY id LIMIT ?)", (batch,)).rowcount
        if n:
            self.bump("evicted.raw_frames_at_cap", n, conn)
        return int(n)

    def _evict_readings_at_cap(self, conn: sqlite3.Connection, unsent: str | None,
                               batch: int) -> int:
        n = conn.execute(
            "DELETE FROM readings WHERE id IN (SELECT id FROM readings"
            " WHERE (? IS NULL OR received_at < ?) AND id NOT IN (SELECT max(id)"
            " FROM readings GROUP BY device_id, characteristic) ORDER BY id LIMIT ?)",
            (unsent, unsent, batch)).rowcount
        if n:
            self.bump("evicted.readings_at_cap", n, conn)
        return int(n)

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
    def probe_write(self) -> None:
        """Commit one small write (with its fsync), raising the storage error that stops it:
        the daemon's start-up proof that the disk, the folder and the file take writes."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('write_probe_at', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (iso(_now()),))

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


def _refuse_older_schema(conn: sqlite3.Connection, path: Path) -> None:
    """A reader cannot migrate: after an upgrade, until the daemon has restarted, say so in one
    line instead of failing later on a missing column."""
    try:
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    except sqlite3.OperationalError:
        done = set()
    missing = [m.version for m in migrate.available() if m.version not in done]
    if missing:
        conn.close()
        raise StoreError(
            f"{path}: the database is at an older schema than this edge-gateway "
            f"(migration {missing[0]:04d} not applied yet)",
            hint="restart the daemon (systemctl restart edge-gateway) so that it upgrades "
                 "the database, then run this again",
        )
