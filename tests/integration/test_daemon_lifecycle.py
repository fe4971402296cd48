"""The daemon as systemd runs it: notify protocol, signals, reload, clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_gateway.store import Store


@contextlib.contextmanager
def gateway(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``edge-gateway ARGS`` as systemd starts it (stderr to ``log``); killed if still running
    when the test is done with it."""
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "edge_gateway", *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def recv_until(sock: socket.socket, wanted: str, timeout: float = 15.0) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            break
        got.extend(data.split("\n"))
        if wanted in got:
            return got
    raise AssertionError(f"{wanted} not received; got {got}")


@pytest.fixture
def notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    yield sock
    sock.close()


def test_notify_ready_watchdog_stopping(tmp_path: Path, cli_env: dict[str, str],
                                        notify_socket: socket.socket) -> None:
    db = tmp_path / "g.db"
    env = {**cli_env, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    with gateway(["--db", str(db), "run"], env, tmp_path / "log") as proc:
        got = recv_until(notify_socket, "READY=1")
        # READY comes only after the database is open (and migrated).
        assert Store.open(db, create=False).db_id
        assert any(line.startswith("STATUS=running") for line in got)
        recv_until(notify_socket, "WATCHDOG=1")
        recv_until(notify_socket, "WATCHDOG=1")
        proc.send_signal(signal.SIGTERM)
        recv_until(notify_socket, "STOPPING=1")
        assert proc.wait(timeout=5) == 0
    err = (tmp_path / "log").read_text()
    assert "event=daemon.stopped" in err


def test_sighup_keeps_old_config_when_new_one_is_bad(tmp_path: Path, cli_env: dict[str, str],
                                                     notify_socket: socket.socket) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'[storage]\ndb_path = "{tmp_path / "g.db"}"\n')
    env = {**cli_env, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    with gateway(["-c", str(cfg), "run"], env, tmp_path / "log") as proc:
        recv_until(notify_socket, "READY=1")
        cfg.write_text("[storage]\nbatch_max_frames = -1\n")
        proc.send_signal(signal.SIGHUP)
        recv_until(notify_socket, "RELOADING=1")
        recv_until(notify_socket, "READY=1")
        cfg.write_text(f'[storage]\ndb_path = "{tmp_path / "g.db"}"\n'
                       '[daemon]\nlog_level = "debug"\n')
        proc.send_signal(signal.SIGHUP)
        recv_until(notify_socket, "READY=1")
        assert proc.poll() is None, "a bad config on reload must not stop the daemon"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0
    err = (tmp_path / "log").read_text()
    assert "event=config.reload_refused" in err
    assert "storage.batch_max_frames: must be 1..100000, got -1" in err
    assert "event=config.reloaded" in err


def test_unit_file_exposure_is_at_most_2() -> None:
    unit = Path(__file__).resolve().parents[2] / "systemd" / "edge-gateway.service"
    res = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                         capture_output=True, text=True)
    line = [ln for ln in res.stdout.splitlines() if "Overall exposure level" in ln]
    assert line, res.stdout + res.stderr
    score = float(line[0].split(":")[1].split()[0])
    assert score <= 2.0, line[0]
    text = unit.read_text()
    for needed in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "User=edge-gateway",
                   "StateDirectory=", "ConfigurationDirectory=", "AF_UNIX", "AF_INET",
                   "SupplementaryGroups=dialout"):
        assert needed in text


def test_sigterm_right_after_start_with_a_new_database(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    with gateway(["--db", str(tmp_path / "x" / "g.db"), "run"], cli_env,
                 tmp_path / "log") as proc:
        deadline = time.monotonic() + 15
        while "daemon.started" not in (tmp_path / "log").read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
