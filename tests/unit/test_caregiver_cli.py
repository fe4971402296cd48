"""The caregiver's commands through click, on a real SQLite file; audit log; purge."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edge_gateway.alerts.engine import AlertEngine
from edge_gateway.alerts.thresholds import ThresholdLoader
from edge_gateway.cli import main
from edge_gateway.reading import Reading
from edge_gateway.store import Store
from edge_gateway.store.audit import entries as audit_entries
from edge_gateway.store.audit import os_actor

T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
GROUPS = ("patients", "thresholds", "alerts")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "gw.db"
    Store.open(path).close()
    return path


def run(db: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--db", str(db), *args], input=input,
                              catch_exceptions=False)


def js(db: Path, *args: str) -> object:
    res = run(db, *args, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_every_command_has_an_example() -> None:
    for group in GROUPS:
        cmd = main.commands[group]
        assert "Example:" in (cmd.help or ""), group
        for name, sub in cmd.commands.items():  # type: ignore[attr-defined]
            assert "Example:" in (sub.help or ""), f"{group} {name}"
    for name in ("export", "report"):
        assert "Example:" in (main.commands[name].help or ""), name


def test_patients_add_list_show_remove(db: Path) -> None:
    assert js(db, "patients", "add", "alice", "--name", "Alice B.")["id"] == "alice"
    res = run(db, "patients", "add", "alice")
    assert res.exit_code == 2 and "already exists" in res.output
    res = run(db, "patients", "add", "al ice")
    assert res.exit_code == 2 and "letters, digits" in res.output
    [row] = js(db, "patients", "list")  # type: ignore[misc]
    assert row["id"] == "alice" and row["open_alerts"] == 0
    assert js(db, "patients", "show", "alice")["name"] == "Alice B."  # type: ignore[index]
    res = run(db, "patients", "show", "bob")
    assert res.exit_code == 2 and "no patient 'bob'" in res.output
    assert run(db, "patients", "remove", "alice").exit_code == 0
    assert js(db, "patients", "list") == []


def test_thresholds_set_show_reset_with_units_and_audit(db: Path) -> None:
    run(db, "patients", "add", "alice")
    out = js(db, "thresholds", "set", "alice", "glucose.low_l1", "3.9 mmol/L")
    assert out["canonical"] == pytest.approx(70.26, abs=0.01)  # type: ignore[index]
    rows = {r["key"]: r for r in js(db, "thresholds", "show", "alice")}  # type: ignore[attr-defined]
    assert rows["glucose.low_l1"]["value"] == "3.9 mmol/L"
    assert rows["glucose.low_l1"]["source"] == "patient"
    assert rows["glucose.low_l2"]["source"] == "default"
    # Bad input: a clear message, exit status 2, nothing changed.
    store = Store.open(db)
    version = store.meta("settings_version")
    for args, words in (
        (("alice", "glucose.low_l1", "70 mmHg"), "not a glucose unit"),
        (("alice", "glucose.low_l1", "70"), "not a number followed by a unit"),
        (("alice", "glucose.low_l1", "50 mg/dL"), "low_l2 < low_l1 < high"),
        (("alice", "no.such", "1 %"), "unknown threshold"),
        (("bob", "glucose.low_l1", "70 mg/dL"), "no patient 'bob'"),
    ):
        res = run(db, "thresholds", "set", *args)
        assert res.exit_code == 2 and words in res.output, res.output
        assert "Traceback" not in res.output
    assert store.meta("settings_version") == version
    assert js(db, "thresholds", "reset", "alice", "glucose.low_l1")["source"] == "default"  # type: ignore[index]
    js(db, "thresholds", "set", "@gateway", "outbox.unsynced", "3 h")
    # Every change audited with the OS user, never a reading value.
    log = audit_entries(store)
    assert [e["action"] for e in log][:3] == ["threshold.set", "threshold.reset",
                                              "threshold.set"]
    assert {e["actor"] for e in log} == {os_actor()}
    store.close()


def _low_alert(db: Path) -> int:
    store = Store.open(db)
    engine = AlertEngine(store, ThresholdLoader(store))
    r = Reading(device_id="cgm", characteristic="c", kind="cgm_glucose", value=52.0,
                unit="mg/dL", time=T0, received_at=T0, record_key="s:1", patient_id="alice")
    store.add_readings([r])
    [t] = [t for t in engine.on_readings([r]) if t.event == "raised"]
    store.close()
    assert t.alert_id is not None
    return t.alert_id


def test_alerts_list_ack_history(db: Path) -> None:
    run(db, "patients", "add", "alice")
    alert_id = _low_alert(db)
    [a] = js(db, "alerts", "list", "--patient", "alice")  # type: ignore[misc]
    assert a["id"] == alert_id and a["state"] == "raised" and a["severity"] == "critical"
    acked = js(db, "alerts", "ack", str(alert_id))
    assert acked["state"] == "acknowledged" and acked["acknowledged_by"] == os_actor()  # type: ignore[index]
    [h] = js(db, "alerts", "history", "--patient", "alice")  # type: ignore[misc]
    assert [e["state"] for e in h["events"]] == ["raised", "acknowledged"]
    # The daemon, running on its own connection, honours the acknowledgement.
    store = Store.open(db)
    engine = AlertEngine(store, ThresholdLoader(store))
    later = [Reading(device_id="cgm", characteristic="c", kind="cgm_glucose", value=52.0,
                     unit="mg/dL", time=T0 + timedelta(minutes=5 * i), received_at=T0,
                     record_key=f"s:{i + 2}", patient_id="alice") for i in range(1, 13)]
    assert [t.event for t in engine.on_readings(later)] == []
    store.close()
    res = run(db, "alerts", "ack", "999")
    assert res.exit_code == 2 and "no alert '999'" in res.output
    text = run(db, "alerts", "history").output
    assert "acknowledged by" in text


def test_ack_tells_the_hook(db: Path, tmp_path: Path) -> None:
    got = tmp_path / "hook.json"
    script = tmp_path / "hook.py"
    script.write_text(f"import sys; open({str(got)!r}, 'w').write(sys.stdin.read())")
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'[alerts]\nhook = "{sys.executable} {script}"\n')
    run(db, "patients", "add", "alice")
    alert_id = _low_alert(db)
    res = CliRunner().invoke(main, ["-c", str(cfg), "--db", str(db), "alerts", "ack",
                                    str(alert_id)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    sent = json.loads(got.read_text())
    assert (sent["event"], sent["alert_id"]) == ("acknowledged", alert_id)
    assert sent["acknowledged_by"] == os_actor()


def test_remove_purge_deletes_the_patients_data(db: Path) -> None:
    run(db, "patients", "add", "alice")
    run(db, "patients", "add", "bob")
    _low_alert(db)
    store = Store.open(db)
    store.add_readings([Reading(device_id="x", characteristic="c", kind="heart_rate",
                                value=70, unit="/min", time=T0, received_at=T0,
                                record_key="b1", patient_id="bob")])
    res = run(db, "patients", "remove", "alice", "--purge", input="n\n")
    assert res.exit_code == 1  # declined: nothing happened
    assert store.conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 2
    out = js(db, "patients", "remove", "alice", "--purge", "--yes")
    assert out["deleted"]["readings"] == 1 and out["deleted"]["alerts"] == 1  # type: ignore[index]
    assert out["deleted"]["outbox"] >= 1  # type: ignore[index]
    c = store.conn
    assert c.execute("SELECT count(*) FROM readings WHERE patient_id = 'alice'").fetchone()[0] == 0
    assert c.execute("SELECT count(*) FROM alert_events").fetchone()[0] == 0
    assert c.execute("SELECT count(*) FROM outbox WHERE patient_id = 'alice'").fetchone()[0] == 0
    assert c.execute("SELECT count(*) FROM readings WHERE patient_id = 'bob'").fetchone()[0] == 1
    entry = audit_entries(store)[0]
    assert entry["action"] == "patient.purge" and entry["target"] == "alice"
    assert "52" not in json.dumps(entry["details"])  # no reading values in the audit log
    store.close()


def test_export_command_writes_a_file(db: Path, tmp_path: Path) -> None:
    run(db, "patients", "add", "alice")
    _low_alert(db)
    out = tmp_path / "a.csv"
    res = run(db, "export", "--patient", "alice", "--since", "2026-11-20", "--until",
              "2026-11-21", "--format", "csv", "--out", str(out), "--tz", "Europe/Berlin")
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("record,time_utc,time_local") and len(lines) == 3
    res = run(db, "export", "--patient", "alice", "--since", "2026-11-20", "--format", "json")
    assert json.loads(res.output)["records"][0]["kind"] == "cgm_glucose"
    store = Store.open(db)
    entry = audit_entries(store)[1]
    assert entry["action"] == "data.export" and entry["details"]["records"] == 2
    store.close()
    res = run(db, "export", "--patient", "alice", "--since", "20.11.2026")
    assert res.exit_code == 2 and "not a date" in res.output


def test_a_change_whose_audit_row_fails_is_not_made(db: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit row is written in the change's transaction: no audit, no change."""
    from edge_gateway.care import caregiver as C
    from edge_gateway.store import audit

    run(db, "patients", "add", "alice")
    store = Store.open(db)
    version = store.meta("settings_version")
    entries = len(audit_entries(store))

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(audit, "record", broken)
    with pytest.raises(RuntimeError):
        C.set_threshold(store, "alice", "glucose.low_l1", "65 mg/dL")
    with pytest.raises(RuntimeError):
        C.remove_patient(store, "alice", purge=True)
    with pytest.raises(RuntimeError):
        C.add_patient(store, "bob")
    monkeypatch.undo()
    assert C.show_patient(store, "alice")["threshold_overrides"] == {}
    assert [p["id"] for p in C.list_patients(store)] == ["alice"]
    assert store.meta("settings_version") == version
    assert len(audit_entries(store)) == entries
    store.close()
