"""Issue 12: a demo killed with SIGKILL leaves no dbus-daemon, simulator or mosquitto behind.

Was: all three ran on for good (36 orphans on one machine after a few hours).  The helpers now
carry a parent-death signal (``PR_SET_PDEATHSIG``), so the kernel ends them with the demo.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def children(pid: int) -> dict[int, str]:
    """Direct children of ``pid``: {pid: command line}."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out[int(entry.name)] = cmd
    return out


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigkilled_demo_takes_its_helpers_along(tmp_path: Path,
                                                cli_env: dict[str, str]) -> None:
    log = tmp_path / "demo.out"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "edge_gateway", "demo", "--duration", "120",
             "--db", str(tmp_path / "demo.db")],
            env=cli_env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    helpers: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 90
        # The first line comes once the bus, the simulator and the broker are up.
        while b"edge-gateway demo: scenario" not in log.read_bytes():
            assert demo.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        helpers = children(demo.pid)
        names = " ".join(helpers.values())
        for what in ("dbus-daemon", "hardware_sim.run_bluez", "mosquitto"):
            assert what in names, (what, helpers)
        os.kill(demo.pid, signal.SIGKILL)
        demo.wait(10)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in helpers) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {p: c for p, c in helpers.items() if alive(p)}
        assert not left, f"helpers survived the demo: {left}"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for pid in helpers:  # only if the test failed: they are ours, ended by PID
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
