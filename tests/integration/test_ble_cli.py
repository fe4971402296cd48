"""`edge-gateway devices ...` against the virtual BlueZ running in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_gateway.store import Store

BIN = Path(sys.executable).parent


def run_sim(address: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hardware_sim.run_bluez", "--bus", address, *args],
        stdout=subprocess.PIPE, text=True,
    )


@pytest.fixture
def sim(private_dbus: str) -> Iterator[str]:
    proc = run_sim(private_dbus, "--straps", "2", "--period", "0.5")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("READY")
        yield private_dbus
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "edge-gateway"), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_devices_scan_add_assign_list_remove(
    sim: str, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    cli_env["DBUS_SYSTEM_BUS_ADDRESS"] = sim
    db = tmp_path / "g.db"
    Store.open(db).close()

    scan = cli(cli_env, "devices", "scan", "--seconds", "0.5", "--json")
    assert scan.returncode == 0, scan.stderr
    found = json.loads(scan.stdout)
    assert sorted(f["address"] for f in found) == ["B0:00:00:00:00:00", "B0:00:00:00:00:01"]
    assert found[0]["profile"] == "heart_rate"

    add = cli(cli_env, "--db", str(db), "devices", "add", "b0:00:00:00:00:01")
    assert add.returncode == 0, add.stderr
    assert "added B0:00:00:00:00:01 (heart_rate)" in add.stdout

    assert cli(cli_env, "--db", str(db), "patients", "add", "alice").returncode == 0
    assign = cli(cli_env, "--db", str(db), "devices", "assign", "B0:00:00:00:00:01", "alice")
    assert assign.returncode == 0, assign.stderr

    listed = json.loads(cli(cli_env, "--db", str(db), "devices", "list", "--json").stdout)
    assert [(d["id"], d["profile"], d["patient_id"], d["enabled"]) for d in listed] == [
        ("B0:00:00:00:00:01", "heart_rate", "alice", 1)]

    bad = cli(cli_env, "--db", str(db), "devices", "add", "nonsense")
    assert bad.returncode == 2 and "not a Bluetooth address" in bad.stderr

    gone = cli(cli_env, "--db", str(db), "devices", "remove", "B0:00:00:00:00:01")
    assert gone.returncode == 0, gone.stderr
    listed = json.loads(cli(cli_env, "--db", str(db), "devices", "list", "--json").stdout)
    assert listed[0]["enabled"] == 0


def test_devices_pair_with_the_passkey_the_meter_shows(
    private_dbus: str, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    proc = run_sim(private_dbus, "--scenario", "demo")  # not bonded: pairing is needed
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("READY")
        cli_env["DBUS_SYSTEM_BUS_ADDRESS"] = private_dbus
        db = tmp_path / "g.db"
        Store.open(db).close()
        meter = "C0:FF:EE:00:00:03"
        add = cli(cli_env, "--db", str(db), "devices", "add", meter)
        assert add.returncode == 0, add.stderr
        assert "(glucose)" in add.stdout and f"devices pair {meter}" in add.stdout

        wrong = cli(cli_env, "--db", str(db), "devices", "pair", meter, "--passkey", "111111")
        assert wrong.returncode == 1 and "Authentication Failed" in wrong.stderr
        # Typed at the prompt, as a caregiver would.
        right = subprocess.run([str(BIN / "edge-gateway"), "--db", str(db), "devices", "pair",
                                meter], env=cli_env, input="246810\n", capture_output=True,
                               text=True, timeout=60)
        assert right.returncode == 0, right.stderr
        assert f"paired with {meter}" in right.stdout
        listed = json.loads(cli(cli_env, "--db", str(db), "devices", "list", "--json").stdout)
        assert listed[0]["bonded"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
