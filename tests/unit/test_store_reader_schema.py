"""A reader opening a database the daemon has not upgraded yet gets one line saying so."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_gateway.errors import StoreError
from edge_gateway.store import Store, migrate


def test_reader_refuses_an_older_schema_with_what_to_do(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    Store.open(db).close()
    newest = migrate.available()[-1].version
    conn = sqlite3.connect(db)
    row = conn.execute("SELECT * FROM schema_migrations WHERE version = ?", (newest,)).fetchone()
    conn.execute("DELETE FROM schema_migrations WHERE version = ?", (newest,))
    conn.commit()
    with pytest.raises(StoreError) as err:
        Store.open(db, readonly=True)
    assert f"{newest:04d} not applied" in str(err.value)
    assert "restart the daemon" in (err.value.hint or "")
    # Once the daemon has applied it, readers work again.
    conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", row)
    conn.commit()
    conn.close()
    Store.open(db, readonly=True).close()
