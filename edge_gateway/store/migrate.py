"""Numbered schema migrations, recorded in the database, each in its own transaction.

Migrations are ``migrations/NNNN_name.sql`` files shipped in the package.  Applying is
re-runnable: a version already recorded in ``schema_migrations`` is skipped, and a failing
migration rolls back whole, leaving the database at the previous version.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

from edge_gateway.errors import MigrationError
from edge_gateway.reading import iso

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """Every migration shipped with the package, in version order."""
    found = []
    for entry in resources.files("edge_gateway.store.migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(0, f"two migration files share a version number: {versions}")
    return found


def applied(conn: sqlite3.Connection) -> set[int]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied now."""
    done = applied(conn)
    now: list[int] = []
    for mig in available():
        if mig.version in done:
            continue
        try:
            # executescript() would commit on its own; run statement by statement inside one
            # explicit transaction so a failure leaves nothing half-applied.
            conn.execute("BEGIN IMMEDIATE")
            for statement in _split(mig.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (mig.version, mig.name, iso(datetime.now(UTC))),
            )
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            # SQLite may have rolled back already (a full disk): a second ROLLBACK would fail
            # and hide the real error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise MigrationError(mig.version, str(err)) from err
        now.append(mig.version)
    return now


def _split(sql: str) -> list[str]:
    """Split a migration script into statements (no triggers with inner ';' are used)."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    text = "\n".join(lines)
    out = []
    buf = ""
    for part in text.split(";"):
        buf += part
        if sqlite3.complete_statement(buf + ";"):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
        else:
            buf += ";"
    if buf.strip():
        out.append(buf.strip())
    return out
