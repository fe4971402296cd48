"""Running the real CLI as a subprocess (as this user or as another one) for the fault tests."""

from __future__ import annotations

import os
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def new_db(path: Path, *patients: str) -> Path:
    """A fresh gateway database at ``path`` holding ``patients``."""
    from edge_gateway.store import Store

    store = Store.open(path)
    for patient in patients:
        store.add_patient(patient)
    store.close()
    return path


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGTERM a daemon this test started, SIGKILL it after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cli(*args: str, env: dict[str, str], input: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``edge-gateway ARGS`` in a fresh interpreter, as this user."""
    return subprocess.run([sys.executable, "-m", "edge_gateway", *args], env=env, input=input,
                          capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str,
                          code: int = 2) -> str:
    """Exit ``code``, exactly one line on stderr (``error: ...``) holding ``words``."""
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def _reachable_by(uid: int, gid: int, exe: str) -> bool:
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                           exe, "-c", "import sqlite3"], capture_output=True,
                          check=False).returncode == 0


def python_for(uid: int, gid: int) -> str:
    """An interpreter of this Python version that account may run: ours when it can reach it
    (a venv under a 0700 home cannot be), else the system's of the same version."""
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    for exe in (sys.executable, shutil.which(f"python{ver}") or "", f"/usr/bin/python{ver}"):
        if exe and _reachable_by(uid, gid, exe):
            return exe
    raise AssertionError(f"no python{ver} that uid {uid} may run: install python{ver} "
                         "(apt-get install python3) or keep the checkout outside a 0700 home")


def cli_as_cmd(user: str, *args: str, groups: str | None = None) -> list[str]:
    """The command line running ``edge-gateway ARGS`` as ``user`` (its own groups, or
    ``groups`` comma-separated), with this interpreter's site-packages (and the editable
    checkout) on its path."""
    import pwd

    pw = pwd.getpwnam(user)
    exe = python_for(pw.pw_uid, pw.pw_gid)
    boot = ("import site, sys; "
            + "".join(f"site.addsitedir({d!r}); " for d in _site_dirs())
            + f"sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'hardware-sim')!r}]; "
            "sys.argv[0] = 'edge-gateway'; "
            "from edge_gateway.cli import main; main(prog_name='edge-gateway')")
    who = ["--init-groups"] if groups is None else [f"--groups={groups}"]
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", *who, exe, "-c", boot,
            *args]


def cli_as(user: str, *args: str, env: dict[str, str], groups: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``edge-gateway ARGS`` as ``user``; see :func:`cli_as_cmd`."""
    return subprocess.run(cli_as_cmd(user, *args, groups=groups),
                          env={**env, "HOME": "/", "USER": user, "LOGNAME": user},
                          capture_output=True, text=True, timeout=timeout, check=False, cwd="/")


def _site_dirs() -> list[str]:
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    dirs += [d for d in site.getsitepackages() if d not in dirs]
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]
