"""`devices add PORT --serial PROTOCOL`: a caregiver adds a serial home sensor."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from edge_gateway.cli import main
from edge_gateway.store import Store


def test_add_serial_sensor_and_refuse_an_unknown_protocol(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    store = Store.open(db)
    store.add_patient("alice")
    master, slave = os.openpty()
    port = os.ttyname(slave)
    try:
        runner = CliRunner()
        res = runner.invoke(main, ["--db", str(db), "devices", "add", port, "--serial",
                                   "masimo-rad8", "--patient", "alice", "--json"])
        assert res.exit_code == 0, res.output
        dev = json.loads(res.output)
        assert dev["transport"] == "serial" and dev["address"] == port
        assert dev["profile"] == "pulse_oximeter" and dev["patient_id"] == "alice"
        assert json.loads(dev["details"]) == {"protocol": "masimo-rad8"}
        bad = runner.invoke(main, ["--db", str(db), "devices", "add", port, "--serial",
                                   "nonin-9999"])
        assert bad.exit_code == 2
        nowhere = runner.invoke(main, ["--db", str(db), "devices", "add", "ttyUSB9",
                                       "--serial", "masimo-rad8"])
        assert nowhere.exit_code == 2 and "serial port path" in nowhere.output
    finally:
        os.close(master)
        os.close(slave)
