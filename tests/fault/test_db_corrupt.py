"""Damaged database files (issue 12): `db check` says what is wrong, `db recover` saves what
can be saved, `run` refuses to start.

Broke: `db check` on a truncated file, a scribbled one, an empty file or a file that is not a
database ended in a `sqlite3.DatabaseError` traceback and never printed the problems; `run` on
a corrupt database started as if nothing were wrong.
"""

from __future__ import annotations

import random
import socket
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from faultcli import cli

from edge_gateway.reading import Reading
from edge_gateway.store import FrameRecord, Store

ROWS = 3000


def good_db(path: Path) -> Path:
    store = Store.open(path)
    t0 = datetime.now(UTC) - timedelta(hours=2)
    batch = []
    for i in range(ROWS):
        at = t0 + timedelta(seconds=i)
        batch.append((FrameRecord("strap-1", "2a37", at, bytes(40)),
                      [Reading("strap-1", "2a37", "heart_rate", 60.0, "/min", at, at,
                               f"rx:{i}")]))
    store.write_batch(batch)
    store.close()
    return path


def cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def scribble(data: bytes) -> bytes:
    """Random bytes over data pages in the second half of the file (the schema survives)."""
    out = bytearray(data)
    rng = random.Random(12)
    for off in range(len(out) // 2, len(out) - 1024, 40_000):
        out[off:off + 700] = bytes(rng.randrange(256) for _ in range(700))
    return bytes(out)


def truncated(path: Path) -> Path:
    path.write_bytes(cut(good_db(path).read_bytes()))
    return path


def scribbled(path: Path) -> Path:
    path.write_bytes(scribble(good_db(path).read_bytes()))
    return path


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def not_a_db(path: Path) -> Path:
    path.write_text("device,time,value\nstrap-1,2026-12-05T10:00:00Z,61\n" * 40)
    return path


BROKEN = {"truncated": truncated, "scribbled": scribbled, "empty": empty,
          "not_a_database": not_a_db}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_db_check_says_what_is_wrong_and_exits_1(kind: str, tmp_path: Path,
                                                 cli_env: dict[str, str]) -> None:
    db = BROKEN[kind](tmp_path / "g.db")
    proc = cli("--db", str(db), "db", "check", env=cli_env)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "integrity FAILED" in proc.stdout
    problems = [ln for ln in proc.stderr.splitlines() if ln.strip().startswith("problem:")]
    assert problems, proc.stderr
    expected = {"truncated": "truncated", "scribbled": "out of order", "empty": "empty",
                "not_a_database": "not a SQLite database"}[kind]
    assert any(expected in p for p in problems), problems
    assert "db recover" in proc.stderr


def test_db_check_on_a_sound_database_exits_0(tmp_path: Path, cli_env: dict[str, str]) -> None:
    db = good_db(tmp_path / "g.db")
    proc = cli("--db", str(db), "db", "check", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "integrity ok" in proc.stdout and f"{ROWS:,}" in proc.stdout


@pytest.mark.parametrize("kind", ["truncated", "scribbled"])
def test_db_recover_saves_rows_into_a_new_private_file(kind: str, tmp_path: Path,
                                                       cli_env: dict[str, str]) -> None:
    original = good_db(tmp_path / "original.db")
    db = tmp_path / "g.db"
    db.write_bytes({"truncated": cut, "scribbled": scribble}[kind](original.read_bytes()))
    out = tmp_path / "saved.db"
    proc = cli("--db", str(db), "db", "recover", "--out", str(out), env=cli_env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    counts = {ln.split()[0]: int(ln.split()[1].replace(",", ""))
              for ln in proc.stdout.splitlines()[1:]}
    saved = counts["raw_frames"] + counts["readings"]
    assert 0 < saved < 2 * ROWS  # some rows were lost with the damage, the rest are saved
    assert counts["meta"] >= 1 and counts["schema_migrations"] >= 1
    assert stat.S_IMODE(out.stat().st_mode) in (0o600, 0o640)
    # The saved file is a sound gateway database the daemon can use.
    check = cli("--db", str(out), "db", "check", env=cli_env)
    assert check.returncode == 0, check.stderr
    store = Store.open(out)
    assert store.conn.execute("SELECT count(*) FROM readings").fetchone()[0] \
        == counts["readings"]
    # What was saved is what was written: no garbage from damaged pages.
    store.conn.execute(f"ATTACH '{original}' AS orig")
    for table in ("readings", "raw_frames"):
        wrong = store.conn.execute(
            f"SELECT count(*) FROM (SELECT * FROM main.{table} EXCEPT"
            f" SELECT * FROM orig.{table})").fetchone()[0]
        assert wrong == 0, table
    # Never overwrites.
    again = cli("--db", str(db), "db", "recover", "--out", str(out), env=cli_env)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_db_recover_of_a_file_that_is_no_database_is_one_line(tmp_path: Path,
                                                              cli_env: dict[str, str]) -> None:
    db = not_a_db(tmp_path / "g.db")
    proc = cli("--db", str(db), "db", "recover", "--out", str(tmp_path / "x.db"), env=cli_env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "not a SQLite database" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.db").exists()


def run_refused(db: Path, tmp_path: Path, env: dict[str, str]) -> str:
    """`edge-gateway run` must stop before READY with exit 1 and one line saying why."""
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.setblocking(False)
    env = dict(env, NOTIFY_SOCKET=str(sock_path))
    started = time.monotonic()
    try:
        proc = cli("--db", str(db), "run", env=env, timeout=60)
        notes = []
        while True:
            try:
                notes.append(sock.recv(4096).decode())
            except BlockingIOError:
                break
    finally:
        sock.close()
    assert time.monotonic() - started < 30
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert not any("READY=1" in n for n in notes), notes
    return lines[0]


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_run_refuses_a_damaged_database_before_ready(kind: str, tmp_path: Path,
                                                     cli_env: dict[str, str]) -> None:
    db = BROKEN[kind](tmp_path / "g.db")
    before = db.read_bytes()
    line = run_refused(db, tmp_path, cli_env)
    assert "daemon.refused" in line and "db recover" in line
    assert "damaged or not a database" in line
    assert db.read_bytes() == before  # nothing was written over the damaged file


def test_the_startup_check_is_bounded_on_a_large_file(tmp_path: Path) -> None:
    """quick_check reads the whole file; the start-up check stops it at its budget."""
    from edge_gateway.store.check import startup_check

    db = tmp_path / "big.db"
    store = Store.open(db)
    with store.transaction() as conn:
        conn.execute("CREATE TABLE filler (b BLOB)")
        conn.executemany("INSERT INTO filler VALUES (randomblob(100000))", [()] * 2000)
    store.close()
    assert db.stat().st_size > 190_000_000
    started = time.monotonic()
    startup_check(db, budget_s=60)
    whole = time.monotonic() - started  # the file is in the page cache from here on
    started = time.monotonic()
    startup_check(db, budget_s=whole / 10)
    assert time.monotonic() - started < whole / 2
