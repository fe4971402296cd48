"""Issue 12: export and report files are health data: created 0600 with O_EXCL, never
overwritten without --force.  Was: 0644 (world-readable) and a silent overwrite.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from faultcli import assert_one_line_error, cli, new_db

from edge_gateway.care.files import private_output


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return new_db(tmp_path / "g.db", "alice")


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("command,name", [
    (["export", "--patient", "alice", "--since", "2026-01-01"], "alice.csv"),
    (["report", "--patient", "alice", "--days", "2"], "alice.html"),
])
def test_private_new_file_and_force(db: Path, tmp_path: Path, cli_env: dict[str, str],
                                    command: list[str], name: str) -> None:
    out = tmp_path / name
    old = os.umask(0o022)  # the usual umask: without care the file would be 0644
    try:
        proc = cli("--db", str(db), *command, "--out", str(out), env=cli_env)
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    assert _mode(out) == 0o600 and out.stat().st_size > 0
    first = out.read_bytes()

    out.write_text("the caregiver's own notes\n")
    os.chmod(out, 0o644)
    again = cli("--db", str(db), *command, "--out", str(out), env=cli_env)
    assert_one_line_error(again, str(out), "already exists", "--force")
    assert out.read_text() == "the caregiver's own notes\n"

    forced = cli("--db", str(db), *command, "--out", str(out), "--force", env=cli_env)
    assert forced.returncode == 0, forced.stderr
    assert _mode(out) == 0o600
    assert out.read_bytes()[:40] == first[:40]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    with pytest.raises(RuntimeError), private_output(out) as fh:
        fh.write(b"half")
        raise RuntimeError("export failed half-way")
    assert not out.exists()
    out.write_text("old\n")
    with pytest.raises(RuntimeError), private_output(out, force=True) as fh:
        fh.write(b"half")
        raise RuntimeError("export failed half-way")
    assert out.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["x.csv"]
