"""Issue 12, commands: each input that once ended in a traceback is one line and exit 2.

Every case runs the real CLI in a fresh interpreter (what a caregiver types), on a real
SQLite file.
"""

from __future__ import annotations

import os
import pwd
import sqlite3
from pathlib import Path

import pytest
from faultcli import assert_one_line_error, cli, cli_as, new_db


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return new_db(tmp_path / "g.db", "alice")


def test_alert_id_too_big_for_sqlite(db: Path, cli_env: dict[str, str]) -> None:
    # Was: OverflowError (Python int too large to convert to SQLite INTEGER).
    proc = cli("--db", str(db), "alerts", "ack", "99999999999999999999999", env=cli_env)
    assert_one_line_error(proc, "ALERT_ID")


@pytest.mark.parametrize("command", [
    ["export", "--patient", "alice", "--since", "2026-01-01"],
    ["report", "--patient", "alice"],
])
def test_out_into_a_missing_folder(db: Path, tmp_path: Path, cli_env: dict[str, str],
                                   command: list[str]) -> None:
    # Was: FileNotFoundError traceback.
    out = tmp_path / "no-such-folder" / "out.html"
    proc = cli("--db", str(db), *command, "--out", str(out), env=cli_env)
    assert_one_line_error(proc, str(out), "No such file or directory")
    assert not out.parent.exists()


def test_report_until_year_one(db: Path, tmp_path: Path, cli_env: dict[str, str]) -> None:
    # Was: OverflowError (date value out of range).
    proc = cli("--db", str(db), "report", "--patient", "alice", "--until", "0001-01-01",
               "--out", str(tmp_path / "r.html"), env=cli_env)
    assert_one_line_error(proc, "--until", "out of range")
    proc = cli("--db", str(db), "export", "--patient", "alice", "--since", "0001-01-01",
               env=cli_env)
    assert_one_line_error(proc, "--since", "out of range")


def test_toml_nested_1000_deep(tmp_path: Path, cli_env: dict[str, str]) -> None:
    # Was: RecursionError traceback from tomllib.
    cfg = tmp_path / "deep.toml"
    cfg.write_text("a = " + "[" * 1000 + "]" * 1000 + "\n")
    for args in (["-c", str(cfg), "status"], ["config", "validate", str(cfg)]):
        assert_one_line_error(cli(*args, env=cli_env), str(cfg), "nested too deeply")


def test_config_naming_a_folder(tmp_path: Path, cli_env: dict[str, str]) -> None:
    # Was: IsADirectoryError traceback through EDGE_GATEWAY_CONFIG.
    proc = cli("status", env={**cli_env, "EDGE_GATEWAY_CONFIG": str(tmp_path)})
    assert_one_line_error(proc, str(tmp_path), "folder")
    assert_one_line_error(cli("-c", str(tmp_path), "status", env=cli_env), "directory")


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the CLI as nobody: needs root")
def test_config_in_a_folder_the_user_cannot_enter(tmp_path: Path,
                                                  cli_env: dict[str, str]) -> None:
    # Was: PermissionError traceback from Path.exists().  `nobody` may not enter a 0700
    # folder of root's.
    locked = Path("/tmp") / f"eg-locked-{os.getpid()}"
    locked.mkdir(mode=0o700)
    try:
        (locked / "gateway.toml").write_text("[gateway]\n")
        proc = cli_as("nobody", "-c", str(locked / "gateway.toml"), "status", env=cli_env)
        assert_one_line_error(proc, str(locked), "Permission denied")
    finally:
        (locked / "gateway.toml").unlink()
        locked.rmdir()


def test_report_without_matplotlib(db: Path, tmp_path: Path, cli_env: dict[str, str]) -> None:
    # The base install (pip install .) has no matplotlib.  A sitecustomize on PYTHONPATH
    # hides it the way a missing package is missing: the import system finds nothing.
    shim = tmp_path / "no-matplotlib"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'matplotlib' or name.startswith('matplotlib.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Refuse())\n")
    env = {**cli_env, "PYTHONPATH": str(shim)}
    out = tmp_path / "r.html"
    proc = cli("--db", str(db), "report", "--patient", "alice", "--out", str(out), env=env)
    assert_one_line_error(proc, "matplotlib", "edge-gateway[report]")
    assert not out.exists()
    # The shim itself works: the same interpreter cannot import matplotlib.
    probe = cli("--db", str(db), "status", env=env)
    assert probe.returncode == 0, probe.stderr


def test_decode_reads_stdin_and_quotes_only_a_prefix(cli_env: dict[str, str]) -> None:
    ok = cli("decode", "2a37", "-", "--json", input="16 48 02 04\n", env=cli_env)
    assert ok.returncode == 0, ok.stderr
    assert '"heart_rate_bpm": 72' in ok.stdout
    # A heart-rate payload with an odd byte of RR data: malformed at the very end.
    long = "16 48 " + "ff " * 2001
    bad = cli("decode", "2a37", "-", input=long, env=cli_env)
    line = assert_one_line_error(bad, "2a37", "2003 bytes", "starting 1648ffff")
    assert len(line) < 300 and "ff" * 100 not in line
    empty = cli("decode", "2a37", "-", input="", env=cli_env)
    assert_one_line_error(empty, "standard input is empty")


def test_config_and_db_after_the_command(db: Path, tmp_path: Path,
                                         cli_env: dict[str, str]) -> None:
    # Was: "No such option: --db" after the command.
    proc = cli("status", "--db", str(db), "--json", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert str(db) in proc.stdout
    # After the command it overrides the one before it.
    proc = cli("--db", str(tmp_path / "missing.db"), "patients", "list", "--db", str(db),
               env=cli_env)
    assert proc.returncode == 0 and proc.stdout.startswith("alice"), proc.stderr
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'[storage]\ndb_path = "{db}"\n')
    proc = cli("patients", "list", "-c", str(cfg), env=cli_env)
    assert proc.returncode == 0 and proc.stdout.startswith("alice"), proc.stderr
    proc = cli("demo", "--help", env=cli_env)
    assert "--db" in proc.stdout and "--duration" in proc.stdout


def test_audit_actor_is_the_real_account(db: Path, cli_env: dict[str, str]) -> None:
    # Was: LOGNAME/USER taken as the actor (any value a user sets), SUDO_USER unchecked.
    me = pwd.getpwuid(os.getuid()).pw_name
    forged = {**cli_env, "LOGNAME": "mallory", "USER": "mallory", "SUDO_USER": "mallory"}
    forged.pop("SUDO_UID", None)
    assert cli("--db", str(db), "patients", "add", "bob", env=forged).returncode == 0
    actors = _actors(db)
    assert actors[-1] == me and "mallory" not in actors[-1]
    if os.getuid() == 0:  # root through sudo names the caller (by uid, from passwd)
        nobody = pwd.getpwnam("nobody")
        via_sudo = {**forged, "SUDO_UID": str(nobody.pw_uid)}
        assert cli("--db", str(db), "patients", "add", "carol", env=via_sudo).returncode == 0
        assert _actors(db)[-1] == "nobody (as root)"


def _actors(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [a for (a,) in conn.execute("SELECT actor FROM audit_log ORDER BY id")]
