"""A real full disk (issue 12): a 1.5 MB tmpfs under the database.

Broke: the daemon stopped with "storage cap of 2000000000 bytes reached" (it was the disk, not
the cap), the failed batch was lost with the writer, and a restart on the full disk ended in a
traceback.  Now the error says "disk ... full", the writer holds the batch and commits it once
space is back, and a restart on the full disk is refused with one line.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from faultcli import cli, cli_as
from tmpfs import fill, remount, small_tmpfs

from edge_gateway.errors import DiskFull
from edge_gateway.reading import Reading
from edge_gateway.store import BatchWriter, FrameRecord, Store


def frame(i: int, at: datetime) -> tuple[FrameRecord, list[Reading]]:
    return (FrameRecord("strap-1", "2a37", at, bytes(50)),
            [Reading("strap-1", "2a37", "heart_rate", 60.0, "/min", at, at, f"rx:{i}")])


def test_a_full_disk_says_disk_full_and_the_writer_holds_until_space_is_back(
        tmp_path: Path) -> None:
    with small_tmpfs(tmp_path, "4m") as mnt:
        store = Store.open(mnt / "g.db")  # the default cap: 2 GB, far above the disk
        writer = BatchWriter(store, max_frames=10_000)
        t0 = datetime.now(UTC)
        filler = fill(mnt)
        for i in range(3000):
            writer.submit(*frame(i, t0 + timedelta(milliseconds=i)))
        assert writer.flush() == 0
        assert writer.holding and writer.pending == 3000 and writer.stats.failures == 1
        error = writer.stats.last_error or ""
        assert "disk holding the database is full" in error
        assert "storage cap" not in error
        with pytest.raises(DiskFull):
            store.write_batch([frame(99_999, t0)])
        assert not store.conn.in_transaction
        # Retried with backoff, not hammered: a flush before the pause is over does nothing.
        assert writer.flush() == 0 and writer.stats.failures == 1
        filler.unlink()
        assert writer.flush(force=True) == 3000
        assert not writer.holding and writer.pending == 0
        assert store.conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 3000
        store.close()


def test_a_restart_on_a_full_disk_is_refused_in_one_line(tmp_path: Path,
                                                         cli_env: dict[str, str]) -> None:
    with small_tmpfs(tmp_path) as mnt:
        db = mnt / "g.db"
        store = Store.open(db)
        store.add_readings([frame(i, datetime.now(UTC))[1][0] for i in range(200)])
        store.close()
        fill(mnt)
        proc = cli("--db", str(db), "run", env=cli_env, timeout=60)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert "daemon.refused" in lines[0] and "disk holding the database is full" in lines[0]
        assert "storage cap" not in lines[0]


def test_run_refuses_a_read_only_database(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """Root may write any file, so the database sits on a file system mounted read-only."""
    with small_tmpfs(tmp_path, "4m") as mnt:
        db = mnt / "g.db"
        Store.open(db).close()
        remount(mnt, "ro")
        assert not os.access(mnt, os.W_OK) or os.geteuid() == 0
        proc = cli("--db", str(db), "run", env=cli_env, timeout=60)
        remount(mnt, "rw")
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "daemon.refused" in lines[0], proc.stderr
        assert "cannot be written" in lines[0]


def test_run_refuses_a_database_file_it_may_not_write(tmp_path: Path,
                                                      cli_env: dict[str, str]) -> None:
    """Another account (nobody) and a 0644 file of root's: refused before READY."""
    import shutil
    import tempfile

    where = Path(tempfile.mkdtemp(prefix="edge-gateway-ro-"))
    try:
        where.chmod(0o755)
        db = where / "g.db"
        Store.open(db).close()
        db.chmod(0o644)
        config = where / "gateway.toml"
        config.write_text("## built-in defaults\n")
        config.chmod(0o644)
        proc = cli_as("nobody", "--db", str(db), "run",
                      env={**cli_env, "EDGE_GATEWAY_CONFIG": str(config)}, timeout=60)
    finally:
        shutil.rmtree(where)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "daemon.refused" in lines[0], proc.stderr
    assert "cannot be written" in lines[0] and "readonly" in lines[0]
