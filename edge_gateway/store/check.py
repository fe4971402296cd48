"""Checking a database file that may be damaged, and saving what can be saved.

Nothing here trusts the file: every SQLite or OS error becomes a problem in the report (``db
check``), one of our storage errors (the daemon's start-up check), or a skipped row range
(``db recover``).  Three levels:

* :func:`startup_check` -- bounded, for every daemon start: the 100-byte header (magic, page
  size, the file not shorter than its header says), the schema (``sqlite_master`` parses, the
  gateway's tables are there), then ``PRAGMA quick_check`` cut off after ``budget_s`` seconds
  (a timer interrupts it: a small file is checked whole, a multi-GB one as far as the budget
  reaches, never longer; 3.0 s on a 2 GB file read cold).  Raises :class:`StoreCorrupt`.
* :func:`check_file` -- ``db check``: the same header and schema checks, the full
  ``integrity_check``, row counts; returns a report, never raises.
* :func:`recover` -- ``db recover``: a table-by-table copy in rowid order that steps over the
  row ranges it cannot read, then the rows on leaf pages no B-tree reaches any more
  (``pagescan.py``: below a lost interior page, in a truncated file).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_gateway.errors import StoreCorrupt, StoreError
from edge_gateway.store.db import PAGE_SIZE, classify
from edge_gateway.store.pagescan import PageFile, fits

MAGIC = b"SQLite format 3\x00"
#: Tables every gateway database has once migrated (their absence means damage).
REQUIRED_TABLES = ("meta", "schema_migrations", "raw_frames", "readings")
#: How long the start-up check may run ``quick_check`` (seconds).
STARTUP_BUDGET_S = 3.0
#: Rows copied per range by the Python recovery; a range that fails is split down to rows.
_RANGE = 1000


@dataclass
class CheckReport:
    path: str
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    file_bytes: int = 0
    tables: dict[str, int] = field(default_factory=dict)

    def problem(self, text: str) -> None:
        self.ok = False
        self.problems.append(text)


def header_problem(path: Path) -> str | None:
    """What is wrong with the file's header and size, or None when they look right."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(100)
    except OSError as err:
        return f"cannot read the file: {err.strerror or err}"
    if size == 0:
        return "the file is empty (0 bytes): not a database"
    if len(head) < 100 or head[:16] != MAGIC:
        return "not a SQLite database (no SQLite header)"
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    if page < 512 or page & (page - 1):
        return f"damaged header: page size {page}"
    pages = int.from_bytes(head[28:32], "big")
    # The header's page count is valid when its change counter matches (SQLite >= 3.7.0).
    if head[24:28] == head[92:96] and pages and size < pages * page:
        return f"truncated: {size} bytes, the header says {pages * page}"
    return None


def _uri(path: Path, *, readonly: bool) -> str:
    uri = "file:" + urllib.parse.quote(str(path.absolute()))
    return uri + "?mode=ro" if readonly else uri


def _schema_problem(conn: sqlite3.Connection) -> str | None:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = [t for t in REQUIRED_TABLES if t not in names]
    if missing and names:
        return f"tables missing: {', '.join(missing)}"
    return None


def startup_check(path: Path, *, budget_s: float = STARTUP_BUDGET_S) -> None:
    """The daemon's bounded check before it opens the database for writing (see above).

    A missing file is fine (it is created).  Raises :class:`StoreCorrupt` for a damaged or
    non-database file; an unreadable one raises the OS error's :class:`StoreError`.
    """
    if not path.exists():
        return
    problem = header_problem(path)
    if problem is not None:
        raise StoreCorrupt(str(path), problem)
    try:
        conn = sqlite3.connect(_uri(path, readonly=True), uri=True, isolation_level=None)
    except sqlite3.Error as err:
        raise classify(err, path) or StoreCorrupt(str(path), str(err)) from err
    try:
        problem = _schema_problem(conn)
        if problem is None:
            # One VM step checks a whole B-tree (a progress handler never fires inside it):
            # a timer thread interrupts the check instead.
            timer = threading.Timer(budget_s, conn.interrupt)
            timer.start()
            try:
                rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
            except sqlite3.OperationalError as err:
                if "interrupted" not in str(err):
                    raise
                rows = ["ok"]  # checked as far as the budget reached
            finally:
                timer.cancel()
            if rows != ["ok"]:
                problem = "; ".join(rows)
    except sqlite3.Error as err:
        fault = classify(err, path)
        if fault is not None and not isinstance(fault, StoreCorrupt):
            raise fault from err  # cannot be opened here (read-only folder, full disk)
        problem = str(err)
    finally:
        conn.close()
    if problem is not None:
        raise StoreCorrupt(str(path), problem)


def check_file(path: Path) -> CheckReport:
    """``db check``: header, schema, ``integrity_check`` and row counts; never raises."""
    report = CheckReport(str(path))
    if not path.exists():
        report.problem("no such file")
        return report
    with contextlib.suppress(OSError):
        report.file_bytes = sum(p.stat().st_size for p in (path, Path(f"{path}-wal"))
                                if p.exists())
    problem = header_problem(path)
    if problem is not None:
        report.problem(problem)
        return report
    try:
        conn = sqlite3.connect(_uri(path, readonly=True), uri=True, isolation_level=None)
    except sqlite3.Error as err:
        report.problem(f"cannot open: {err}")
        return report
    try:
        problem = _schema_problem(conn)
        if problem is not None:
            report.problem(problem)
        for line in _integrity(conn):
            report.problem(line)
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name")]
        for name in names:
            try:
                report.tables[name] = int(
                    conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])
            except sqlite3.Error as err:
                report.problem(f"table {name}: {err}")
    except sqlite3.Error as err:
        report.problem(str(err))
    finally:
        conn.close()
    return report


def _integrity(conn: sqlite3.Connection) -> list[str]:
    """The integrity check's findings.  Going far into a badly damaged file it may itself
    fail ("malformed"): then it is asked for fewer findings, which stops it sooner."""
    failure: sqlite3.Error | None = None
    for limit in (100, 20, 5, 1):
        try:
            rows = conn.execute(f"PRAGMA integrity_check({limit})").fetchall()
        except sqlite3.DatabaseError as err:
            failure = err
            continue
        # One row may hold many lines ("*** in database main ***" and one per fault).
        found = [line for row in rows for line in str(row[0]).splitlines()
                 if line != "ok" and not line.startswith("***")]
        if failure is not None and found:
            found.append(f"(the check stopped early: {failure})")
        return found
    return [str(failure)]


def recover(src: Path, out: Path) -> dict[str, int]:
    """Write what can be read from ``src`` into the new file ``out``; rows saved per table.

    ``out`` is created 0640 and never overwritten.  Table by table, rows are read in rowid
    order; where a damaged page stops the read, the damaged rowid range is stepped over
    (doubling steps, then narrowed back) and reading goes on after it.  (SQLite's own
    ``.recover`` would read deeper, but Debian's ``sqlite3`` 3.40 is built without the
    ``sqlite_dbpage`` table it needs and fails with "SQL logic error".)
    """
    if out.exists():
        raise StoreError(f"{out}: already exists", hint="choose a new file name")
    if not src.is_file():
        raise StoreError(f"{src}: no such file", hint="pass --db with the damaged database")
    problem = header_problem(src)
    if problem is not None and not problem.startswith("truncated"):
        raise StoreError(f"{src}: {problem}; nothing can be recovered from it",
                         hint="restore the latest backup")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    os.close(fd)
    os.chmod(out, 0o640)
    try:
        _recover_copy(src, out)
        return _counts(out)
    except BaseException:
        with contextlib.suppress(OSError):
            out.unlink()
        raise


def _recover_copy(src: Path, out: Path) -> None:
    with contextlib.closing(sqlite3.connect(_uri(src, readonly=True), uri=True)) as old, \
            contextlib.closing(sqlite3.connect(out)) as new:
        # Tolerate a file shorter than its header says (else every read is "malformed").
        old.execute("PRAGMA writable_schema = ON")
        try:
            schema = old.execute(
                "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"
                " AND name NOT LIKE 'sqlite_%' ORDER BY type = 'index'").fetchall()
        except sqlite3.Error as err:
            raise StoreError(f"{src}: the list of tables cannot be read ({err}); nothing can"
                             " be recovered from it", hint="restore the latest backup") from err
        new.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        for kind, name, sql in schema:
            if kind == "table":
                new.execute(sql)
                # A table whose pages cannot be read at all stays empty; the others go on.
                with contextlib.suppress(sqlite3.DatabaseError):
                    if "WITHOUT ROWID" in sql.upper():
                        _copy_rows(old, new, name)
                    else:
                        _copy_table(old, new, name)
                new.commit()
        for kind, _name, sql in schema:
            if kind != "table":
                with contextlib.suppress(sqlite3.Error):
                    new.execute(sql)
        new.commit()
        wal = Path(f"{src}-wal")
        if not wal.exists() or wal.stat().st_size == 0:
            # Leaves the B-tree walk could not reach (below a lost interior page).
            tables = [name for kind, name, sql in schema
                      if kind == "table" and "WITHOUT ROWID" not in sql.upper()]
            _copy_unreachable(src, new, tables)
            new.commit()


def _copy_unreachable(src: Path, new: sqlite3.Connection, tables: list[str]) -> None:
    """Rows on table leaf pages no B-tree reached, for tables told apart by their columns
    (a row already copied, by rowid or by a unique key, is ignored)."""
    shapes: dict[int, list[tuple[str, list[tuple[str, str, bool, bool]]]]] = {}
    for name in tables:
        info = new.execute(f'PRAGMA table_info("{name}")').fetchall()
        pks = [r for r in info if r[5]]
        cols = [(r[1], r[2], bool(r[3]),
                 len(pks) == 1 and bool(r[5]) and r[2].upper() == "INTEGER") for r in info]
        shapes.setdefault(len(cols), []).append((name, cols))
    found: dict[str, list[list[Any]]] = {}
    for rowid, values in PageFile(src).rows():
        candidates = shapes.get(len(values), [])
        if len(candidates) != 1 or not fits(values, candidates[0][1]):
            continue
        name, cols = candidates[0]
        row = [rowid if ipk else v for v, (_n, _t, _nn, ipk) in zip(values, cols, strict=True)]
        found.setdefault(name, []).append([rowid, *row])
    for name, rows in found.items():
        cols = [r[1] for r in new.execute(f'PRAGMA table_info("{name}")')]
        names = ", ".join(f'"{c}"' for c in ["rowid", *cols])
        marks = ", ".join("?" * (len(cols) + 1))
        new.executemany(f'INSERT OR IGNORE INTO "{name}" ({names}) VALUES ({marks})', rows)


#: Rowid steps tried over a damaged range before the rest of a table is given up.
_MAX_SKIPS = 48


def _copy_table(old: sqlite3.Connection, new: sqlite3.Connection, name: str) -> None:
    cols = [d[0] for d in old.execute(f'SELECT * FROM "{name}" LIMIT 0').description]
    names = ", ".join(f'"{c}"' for c in ["rowid", *cols])
    insert = (f'INSERT OR IGNORE INTO "{name}" ({names})'
              f' VALUES ({", ".join("?" * (len(cols) + 1))})')
    select = f'SELECT rowid, * FROM "{name}" WHERE rowid >= ? ORDER BY rowid'
    pos = -(1 << 63)
    while True:
        rows: list[Any] = []
        try:
            for row in old.execute(select, (pos,)):
                rows.append(row)
                if len(rows) >= _RANGE:
                    break
        except sqlite3.Error:
            pass
        if rows:
            new.executemany(insert, rows)
            pos = int(rows[-1][0]) + 1
            if len(rows) >= _RANGE:
                continue
        resume = _next_readable(old, name, pos)
        if resume is None:
            return
        pos = resume


def _copy_rows(old: sqlite3.Connection, new: sqlite3.Connection, name: str) -> None:
    """A table without rowids (small ones here): its rows in order, up to the first damage."""
    cur = old.execute(f'SELECT * FROM "{name}"')
    marks = ", ".join("?" * len(cur.description))
    rows: list[Any] = []
    with contextlib.suppress(sqlite3.Error):
        rows.extend(cur)
    new.executemany(f'INSERT OR IGNORE INTO "{name}" VALUES ({marks})', rows)


def _readable_from(old: sqlite3.Connection, name: str, pos: int) -> bool | None:
    """True: a row at or after ``pos`` reads; False: the read fails; None: no rows left."""
    try:
        row = old.execute(f'SELECT rowid FROM "{name}" WHERE rowid >= ? ORDER BY rowid'
                          " LIMIT 1", (pos,)).fetchone()
    except sqlite3.Error:
        return False
    return None if row is None else True


def _next_readable(old: sqlite3.Connection, name: str, pos: int) -> int | None:
    """The first rowid from which reading works again after a failure at ``pos``."""
    state = _readable_from(old, name, pos)
    if state is None:
        return None
    if state:
        # Readable from pos, but a later row failed mid-scan: step past it.
        pos += 1
    lo, step = pos, 1
    for _ in range(_MAX_SKIPS):
        state = _readable_from(old, name, lo + step)
        if state is None:
            return None
        if state:
            # Narrow back: the smallest start in (lo + step // 2, lo + step] that reads.
            bad, good = lo + step // 2, lo + step
            while good - bad > 1:
                mid = (bad + good) // 2
                if _readable_from(old, name, mid):
                    good = mid
                else:
                    bad = mid
            return good
        step *= 2
    return None


def _counts(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name")]
        return {n: int(conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0])
                for n in names}
