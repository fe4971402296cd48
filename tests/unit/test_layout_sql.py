"""SQL lives in the store: no statement and no ``execute`` outside ``edge_gateway/store/``.

The scan reads every module under ``edge_gateway/`` with :mod:`ast` (nothing is imported) except
the two store packages, ``edge_gateway/store/`` (SQLite) and ``edge_gateway/cloud/store/``
(PostgreSQL, from later issues), and fails on

* a call of a method named ``execute``, ``executemany`` or ``executescript``;
* a string constant holding an SQL statement: docstrings, help texts, comments-as-strings and
  the literal parts of f-strings count too.

Statements are recognised by their shape, not by a keyword alone, so English such as "select a
device from the list" or "update the settings" does not trip it: ``SELECT`` must be followed by
a column list (``*``, ``count(...)``, ``a.b, c``) and then ``FROM``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "edge_gateway"
EXEMPT = (PACKAGE / "store", PACKAGE / "cloud" / "store")
MIGRATIONS = PACKAGE / "store" / "migrations"

EXECUTE_METHODS = frozenset({"execute", "executemany", "executescript"})

# A column list: `*`, or comma-separated expressions of names, dots, numbers, quoted text,
# parameters and calls (`count(*)`, `d.id`, `coalesce(max(id), 0)`, `a || b`), each with an
# optional AS alias, after an optional DISTINCT.  "a device" (two bare words) is not one.
_CALL = r"\((?:[^()]|\([^()]*\))*\)"
_TERM = rf"(?:[\w.]+(?:\s*{_CALL})?|'[^']*'|\?)"
_COLUMN = rf"(?:\*|{_TERM}(?:\s*(?:\|\||[-+*/])\s*{_TERM})*(?:\s+AS\s+\w+)?)"
_COLUMNS = rf"(?:DISTINCT\s+)?{_COLUMN}(?:\s*,\s*{_COLUMN})*"
SQL_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rx, re.IGNORECASE)) for name, rx in (
        ("SELECT … FROM", rf"\bSELECT\s+{_COLUMNS}\s+FROM\b"),
        ("INSERT INTO", r"\bINSERT\s+(?:OR\s+\w+\s+)?INTO\b"),
        ("UPDATE … SET", r"\bUPDATE\s+\w+\s+SET\b"),
        ("DELETE FROM", r"\bDELETE\s+FROM\b"),
        ("CREATE TABLE/INDEX/VIEW/TRIGGER",
         r"\bCREATE\s+(?:UNIQUE\s+|TEMP(?:ORARY)?\s+)?(?:TABLE|INDEX|VIEW|TRIGGER)\b"),
        ("PRAGMA", r"\bPRAGMA\b"),
    ))


def _exempt(path: Path) -> bool:
    return any(path.is_relative_to(d) for d in EXEMPT)


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if not _exempt(p))


def _strings(node: ast.AST) -> Iterator[tuple[int, str]]:
    """Every string constant under ``node`` with its line; an f-string's literal parts are
    joined with a placeholder so a statement split around ``{...}`` is still seen whole."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str)
                           else "x" for v in sub.values)
            yield sub.lineno, text
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub.lineno, sub.value


def _adjacent_concatenations(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``"SELECT a" + " FROM b"``: the operands of a string ``+`` chain read as one text."""
    for sub in ast.walk(tree):
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Add):
            parts = [text for _line, text in _strings(sub)]
            if len(parts) > 1:
                yield sub.lineno, " ".join(parts)


def violations(path: Path) -> list[str]:
    """``file:line: what`` for each SQL call or statement in one module."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    rel = path.relative_to(ROOT)
    found: list[str] = []
    for sub in ast.walk(tree):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) \
                and sub.func.attr in EXECUTE_METHODS:
            found.append(f"{rel}:{sub.lineno}: calls .{sub.func.attr}()")
    seen: set[tuple[int, str]] = set()
    for line, text in (*_strings(tree), *_adjacent_concatenations(tree)):
        for name, rx in SQL_PATTERNS:
            if rx.search(text) and (line, name) not in seen:
                seen.add((line, name))
                found.append(f"{rel}:{line}: SQL ({name}) in a string: {text.strip()[:60]!r}")
    return found


def test_no_sql_outside_the_store() -> None:
    modules = _modules()
    assert len(modules) > 50, "the scan found too few modules: wrong root?"
    problems = [v for path in modules for v in violations(path)]
    assert not problems, (
        "SQL outside edge_gateway/store/ (move it into a store repository function):\n  "
        + "\n  ".join(problems))


def test_migrations_are_sql_files_in_the_store() -> None:
    files = sorted(p.name for p in MIGRATIONS.iterdir() if p.is_file())
    sql = [n for n in files if n.endswith(".sql")]
    assert sql, "no migrations found in edge_gateway/store/migrations/"
    assert all(re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", n) for n in sql), sql
    # Nothing but the SQL files (and the package marker that lets importlib.resources find them).
    assert set(files) - set(sql) <= {"__init__.py"}, files
    stray = [p.relative_to(ROOT) for p in PACKAGE.rglob("*.sql")
             if p.parent != MIGRATIONS and not _exempt(p)]
    assert not stray, f"SQL files outside edge_gateway/store/migrations/: {stray}"


@pytest.mark.parametrize("text", [
    "SELECT id, name FROM patients",
    "select count(*) from outbox where sent_at is null",
    "SELECT DISTINCT f.payload FROM readings r",
    "SELECT substr(time, 1, 16) AS m, avg(value) FROM readings",
    "INSERT OR IGNORE INTO summaries (a) VALUES (?)",
    "insert into meta (key, value) values (?, ?)",
    "UPDATE devices SET enabled = 1",
    "DELETE FROM settings WHERE scope = ?",
    "CREATE UNIQUE INDEX x ON t(a)",
    "CREATE TABLE t (a)",
    "PRAGMA synchronous = NORMAL",
])
def test_the_scan_sees_sql(text: str) -> None:
    assert any(rx.search(text) for _name, rx in SQL_PATTERNS), text


@pytest.mark.parametrize("text", [
    "select a device from the list",
    "Select the patient, then choose from the menu",
    "update the settings and restart",
    "delete a device (its readings stay)",
    "create a patient first",
    "the newest records from the meter, selected by sequence",
])
def test_the_scan_ignores_english(text: str) -> None:
    assert not any(rx.search(text) for _name, rx in SQL_PATTERNS), text


def test_the_scan_reports_file_and_line(monkeypatch: pytest.MonkeyPatch) -> None:
    module = PACKAGE / "runtime" / "status.py"  # any real module: the path is made relative
    src = 'x = 1\n\ndef f(c):\n    c.execute(f"SELECT a FROM {T}")\n    """PRAGMA x"""\n'
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: src)
    found = violations(module)
    assert "edge_gateway/runtime/status.py:4: calls .execute()" in found
    assert any(v.startswith("edge_gateway/runtime/status.py:4: SQL (SELECT") for v in found)
    assert any(v.startswith("edge_gateway/runtime/status.py:5: SQL (PRAGMA)") for v in found)
