"""Shared test helpers (every fixture here uses real parts: files, sockets, processes)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
BIN = Path(sys.executable).parent


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running the CLI as a subprocess, isolated from /etc."""
    env = dict(os.environ)
    empty = tmp_path / "empty-config.toml"
    empty.write_text("## built-in defaults\n")
    env["EDGE_GATEWAY_CONFIG"] = str(empty)
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    return env


# ----------------------------------------------------------------------------- no survivors
#: Every process the tests start inherits this marker (unless a test builds its environment
#: from scratch); at the end of the run none may still be alive (a leaked mosquitto,
#: dbus-daemon or simulator would run on for good).
LEAK_MARKER = "EDGE_GATEWAY_TEST_RUN"
os.environ[LEAK_MARKER] = f"{os.getpid()}-{os.urandom(4).hex()}"


def marked_processes(marker: str = LEAK_MARKER) -> list[tuple[int, str]]:
    """(pid, command line) of every other process whose environment holds our marker."""
    needle = f"{marker}={os.environ[marker]}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes() + b"\0":
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != "Z":  # a zombie is dead already; its parent just has not reaped it
            found.append((int(entry.name), cmd.strip()))
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a process the tests started is still alive (then end it, by PID)."""
    import signal
    import time

    deadline = time.monotonic() + 5.0
    survivors = marked_processes()
    while survivors and time.monotonic() < deadline:
        time.sleep(0.2)
        survivors = marked_processes()
    if not survivors:
        return
    sys.stderr.write("\nprocesses started by the tests are still running (now killed):\n")
    for pid, cmd in survivors:
        sys.stderr.write(f"  pid {pid}: {cmd[:200]}\n")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
