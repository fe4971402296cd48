"""Issue 12, devices: every device id works in list/remove/assign; an unplugged serial port is
accepted with a warning; changing a device's profile needs --force and is audited.

Was: "'serial-ttyUSB0' is not a Bluetooth address" (exit 2) from `devices list`, `remove` and
`assign` as soon as a serial sensor existed; `devices add` with another --profile silently
changed it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from faultcli import new_db

from edge_gateway.cli import main
from edge_gateway.store import Store
from edge_gateway.store.audit import entries

ABSENT_PORT = "/dev/ttyUSB-eg-absent-7"
BLE = "C0:FF:EE:00:00:01"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return new_db(tmp_path / "g.db", "alice", "bob")


def run(db: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--db", str(db), *args], catch_exceptions=False)


def test_serial_device_ids_in_list_assign_remove(db: Path) -> None:
    assert not Path(ABSENT_PORT).exists()
    added = run(db, "devices", "add", ABSENT_PORT, "--serial", "masimo-rad8", "--json")
    assert added.exit_code == 0, added.output
    assert f"warning: {ABSENT_PORT} is not present now" in added.stderr
    dev_id = json.loads(added.stdout)["id"]
    assert dev_id == "serial-ttyUSB-eg-absent-7"
    assert run(db, "devices", "add", BLE, "--profile", "heart_rate").exit_code == 0

    listed = run(db, "devices", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert {d["id"] for d in json.loads(listed.stdout)} == {dev_id, BLE}

    # The id as listed, and the port path, both name the serial sensor.
    for ident, patient in ((dev_id, "alice"), (ABSENT_PORT, "bob")):
        res = run(db, "devices", "assign", ident, patient, "--json")
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["patient_id"] == patient
    # A Bluetooth address in lower case still works.
    assert run(db, "devices", "assign", BLE.lower(), "alice").exit_code == 0

    res = run(db, "devices", "remove", dev_id, "--forget")
    assert res.exit_code == 2 and "not a Bluetooth device" in res.output
    res = run(db, "devices", "remove", dev_id)
    assert res.exit_code == 0 and f"removed {dev_id}" in res.output
    missing = run(db, "devices", "remove", "serial-ttyNOPE")
    assert missing.exit_code == 2 and "no device 'serial-ttyNOPE'" in missing.output
    junk = run(db, "devices", "assign", "a b", "alice")
    assert junk.exit_code == 2 and "is not a device id" in junk.output


def test_profile_change_needs_force_and_is_audited(db: Path) -> None:
    assert run(db, "devices", "add", BLE, "--profile", "heart_rate").exit_code == 0
    again = run(db, "devices", "add", BLE, "--profile", "heart_rate")
    assert again.exit_code == 0, again.output  # re-adding with the same profile is fine
    res = run(db, "devices", "add", BLE, "--profile", "glucose")
    assert res.exit_code == 2 and "already added with profile 'heart_rate'" in res.output
    assert "--force" in res.output
    store = Store.open(db)
    assert store.device(BLE)["profile"] == "heart_rate"
    store.close()
    res = run(db, "devices", "add", BLE, "--profile", "glucose", "--force")
    assert res.exit_code == 0, res.output
    store = Store.open(db)
    assert store.device(BLE)["profile"] == "glucose"
    [last, *_] = entries(store, limit=1)
    store.close()
    assert last["action"] == "device.add" and last["target"] == BLE
    assert last["details"]["profile"] == "glucose"
    assert last["details"]["profile_was"] == "heart_rate"
