"""Issue 12, caregivers' accounts: a member of the service group reads, with the daemon
running and stopped; a change says how to make it.

Real accounts: the test creates a service user and group and a caregiver in that group
(``useradd``/``groupadd``; we are root here), lays the files out as the README's install
does (database folder 0750, files 0640, owned by the service user), runs the real daemon as
the service user, and the CLI as the caregiver through ``setpriv``.  Was: a PermissionError
traceback (a ``chmod`` of the daemon's ``-wal``) while the daemon ran, "attempt to write a
readonly database" once it had stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from faultcli import assert_one_line_error, cli_as, cli_as_cmd, stop

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates accounts: needs root")


@dataclass
class Site:
    base: Path
    db: Path
    config: Path
    service: str
    caregiver: str
    env: dict[str, str]


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture
def site(cli_env: dict[str, str]) -> Iterator[Site]:
    tag = f"{os.getpid() % 100000}"
    group = service = f"egsvc{tag}"
    caregiver = f"egcare{tag}"
    base = Path("/tmp") / f"eg-group-{tag}"
    try:
        _run("groupadd", "--system", group)
        _run("useradd", "--system", "--gid", group, "--no-create-home", "--shell",
             "/usr/sbin/nologin", service)
        _run("useradd", "--system", "--groups", group, "--no-create-home", "--shell",
             "/usr/sbin/nologin", caregiver)
        base.mkdir(mode=0o755)
        data = base / "data"
        data.mkdir()
        os.chmod(data, 0o750)
        shutil.chown(data, service, group)
        out = base / "out"
        out.mkdir(mode=0o700)
        shutil.chown(out, caregiver)
        cfg = base / "gateway.toml"  # /etc/edge-gateway/gateway.toml: 0640, service group
        cfg.write_text(f'[storage]\ndb_path = "{data / "gateway.db"}"\n')
        os.chmod(cfg, 0o640)
        shutil.chown(cfg, "root", group)
        env = {**cli_env, "EDGE_GATEWAY_CONFIG": str(cfg)}
        yield Site(base, data / "gateway.db", cfg, service, caregiver, env)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        for user in (caregiver, service):
            subprocess.run(["userdel", user], capture_output=True, check=False)
        subprocess.run(["groupdel", group], capture_output=True, check=False)


@contextlib.contextmanager
def daemon(site: Site) -> Iterator[subprocess.Popen[bytes]]:
    """The real daemon as the service user, until the database and its WAL exist."""
    log = (site.base / "daemon.log").open("wb")
    proc = subprocess.Popen(cli_as_cmd(site.service, "run"), env=site.env, cwd="/",
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not Path(str(site.db) + "-wal").exists():
            assert proc.poll() is None, (site.base / "daemon.log").read_text()
            assert time.monotonic() < deadline, "the daemon did not open its database"
            time.sleep(0.1)
        yield proc
    finally:
        stop(proc)
        log.close()


def reads(site: Site, state: str) -> None:
    """Every read command works for the caregiver."""
    who = site.caregiver
    out = site.base / "out"
    for args in (["status", "--json"], ["sync", "status"], ["alerts", "list"],
                 ["alerts", "history"], ["patients", "list"], ["patients", "show", "alice"],
                 ["thresholds", "show", "alice"], ["devices", "list", "--json"],
                 ["export", "--patient", "alice", "--since", "2026-01-01"],
                 ["export", "--patient", "alice", "--since", "2026-01-01", "--format", "json",
                  "--out", str(out / f"alice-{state}.json")],
                 ["report", "--patient", "alice", "--days", "2",
                  "--out", str(out / f"alice-{state}.html")]):
        proc = cli_as(who, *args, env=site.env)
        assert proc.returncode == 0, (state, args, proc.stderr)
        assert "Traceback" not in proc.stderr
        if args[0] == "patients" and args[1] == "list":
            assert proc.stdout.startswith("alice"), proc.stdout
        if args[:2] == ["devices", "list"]:
            assert [d["id"] for d in json.loads(proc.stdout)] == ["C0:FF:EE:00:00:01"]
    for name in (f"alice-{state}.json", f"alice-{state}.html"):
        st = (out / name).stat()
        assert st.st_uid == pwd.getpwnam(who).pw_uid and st.st_mode & 0o777 == 0o600


def refused_changes(site: Site) -> None:
    """A change from the caregiver's account: one line saying how, nothing written."""
    for args in (["patients", "add", "bob"],
                 ["thresholds", "set", "alice", "glucose.low_l1", "70 mg/dL"],
                 ["alerts", "ack", "1"],
                 ["devices", "add", "C0:FF:EE:00:00:02", "--profile", "heart_rate"],
                 ["devices", "remove", "C0:FF:EE:00:00:01"],
                 ["sync", "now", "--broker", "mqtt://127.0.0.1:9"]):
        proc = cli_as(site.caregiver, *args, env=site.env)
        assert_one_line_error(proc, f"sudo -u {site.service} edge-gateway",
                              "may read the database but not change it")


def files_untouched(site: Site) -> None:
    svc = pwd.getpwnam(site.service).pw_uid
    for f in site.db.parent.iterdir():
        st = f.stat()
        assert st.st_uid == svc, f
        if f.name.startswith("gateway.db"):
            assert st.st_mode & 0o777 == 0o640, (f, oct(st.st_mode))


def test_caregiver_reads_with_the_daemon_running_and_stopped(site: Site) -> None:
    svc = site.service
    with daemon(site):
        for args in (["patients", "add", "alice"],
                     ["devices", "add", "C0:FF:EE:00:00:01", "--profile", "heart_rate",
                      "--patient", "alice"]):
            proc = cli_as(svc, *args, env=site.env)
            assert proc.returncode == 0, proc.stderr
        reads(site, "running")
        refused_changes(site)
        files_untouched(site)
    # A clean stop folds the WAL in and removes -wal and -shm, which the caregiver cannot
    # create in the 0750 folder.
    assert sorted(p.name for p in site.db.parent.iterdir()) == ["gateway.db"]
    reads(site, "stopped")
    refused_changes(site)
    assert sorted(p.name for p in site.db.parent.iterdir()) == ["gateway.db"]
    files_untouched(site)
    # The service user still may change things (the README's sudo -u).
    proc = cli_as(svc, "patients", "add", "bob", env=site.env)
    assert proc.returncode == 0, proc.stderr
