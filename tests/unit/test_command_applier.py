"""The hub's console-command applier on a real SQLite file: every outcome, atomically."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_gateway import commands as C
from edge_gateway.alerts.engine import AlertEngine
from edge_gateway.alerts.thresholds import ThresholdLoader
from edge_gateway.care import caregiver
from edge_gateway.config import SyncSection
from edge_gateway.reading import Reading, iso
from edge_gateway.runtime.commands import UNVERIFIED, CommandApplier
from edge_gateway.store import Store
from edge_gateway.store import commands as command_rows
from edge_gateway.store.audit import entries as audit_entries
from edge_gateway.store.outbox import Outbox
from edge_gateway.sync import payload

T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
PRIV, PUB = C.generate_keypair()


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store.open(tmp_path / "gw.db")
    caregiver.add_patient(s, "alice", actor="test")
    yield s
    s.close()


def _alert(store: Store) -> tuple[int, str]:
    engine = AlertEngine(store, ThresholdLoader(store))
    r = Reading(device_id="cgm", characteristic="c", kind="cgm_glucose", value=52.0,
                unit="mg/dL", time=T0, received_at=T0, record_key="s:1", patient_id="alice")
    store.add_readings([r])
    [t] = [t for t in engine.on_readings([r]) if t.event == "raised"]
    assert t.alert_id is not None
    return t.alert_id, t.alert.key


def _applier(store: Store, now: datetime = T0 + timedelta(minutes=1),
             seen: list[Any] | None = None) -> CommandApplier:
    return CommandApplier(store, public_key=PUB, gateway="gw1", site="home",
                          clock=lambda: now, on_transitions=seen.extend if seen is not None
                          else None)


def _signed(command: str, args: dict[str, Any], *, key: bytes = PRIV, cid: str = "c1",
            gateway: str = "gw1", ttl_s: float = 3600, patient: str = "alice") -> bytes:
    return C.sign(C.new_command(command=command, gateway=gateway, site="home", patient=patient,
                                args=args, actor="dr.rossi", issued_at=T0, ttl_s=ttl_s,
                                command_id=cid), key)


def _topic(cid: str = "c1") -> str:
    return C.command_topic("edge-gateway", "home", "gw1", cid)


def _results(store: Store) -> list[dict[str, Any]]:
    return [it.body for it in Outbox(store).batch(100) if it.kind == "command"]


def test_alert_ack_is_applied_once_then_replays_are_only_counted(store: Store) -> None:
    alert_id, key = _alert(store)
    transitions: list[Any] = []
    applier = _applier(store, seen=transitions)
    msg = _signed("alert.ack", {"alert_id": alert_id, "key": key})
    assert applier.handle(_topic(), msg) == "applied"
    [a] = caregiver.list_alerts(store, patient="alice")
    assert a["state"] == "acknowledged" and a["acknowledged_by"] == "console:dr.rossi"
    assert [t.event for t in transitions] == ["acknowledged"]
    [result] = _results(store)
    assert result == {"command_id": "c1", "command": "alert.ack", "status": "applied",
                      "reason": None, "actor": "dr.rossi", "applied_at": iso(T0 + timedelta(
                          minutes=1))}
    assert result["applied_at"].startswith("2026-11-20T03:01:00")
    # The result goes out on the patient's data topic, JSON even in FHIR format.
    item = next(it for it in Outbox(store).batch(100) if it.kind == "command")
    for fmt in ("json", "fhir"):
        m = payload.build([item], payload.Options("gw1", "home", sync=SyncSection(format=fmt)),
                          T0)
        assert m.topic == "edge-gateway/home/gw1/alice/command"
        assert payload.decode(m.payload)["data"]["status"] == "applied"
    audit = audit_entries(store)
    assert [(e["actor"], e["action"]) for e in audit[:2]] == [
        ("console:dr.rossi", "command.applied"), ("console:dr.rossi", "alert.ack")]
    for _ in range(3):  # the retained message, re-delivered on every reconnect
        assert applier.handle(_topic(), msg) == "replayed"
    assert len(_results(store)) == 1
    st = command_rows.stats(store)
    assert (st["applied"], st["replayed"], st["rejected"], st["expired"]) == (1, 3, 0, 0)
    assert st["last"]["id"] == "c1" and st["last"]["status"] == "applied"


def test_a_forgery_is_refused_and_does_not_block_the_real_command(store: Store) -> None:
    alert_id, key = _alert(store)
    applier = _applier(store)
    other, _ = C.generate_keypair()
    forged = _signed("alert.ack", {"alert_id": alert_id, "key": key}, key=other)
    assert applier.handle(_topic(), forged) == "rejected"
    assert applier.handle(_topic(), forged) == "replayed"  # the same bytes again
    [a] = caregiver.list_alerts(store, patient="alice")
    assert a["state"] == "raised"
    [r] = _results(store)
    assert (r["status"], r["reason"], r["actor"], r["command_id"], r["command"]) == (
        "rejected", "bad signature", None, "c1", "alert.ack")
    assert [it.patient_id for it in Outbox(store).batch(10) if it.kind == "command"] == [None]
    e = audit_entries(store)[0]
    assert (e["actor"], e["action"], e["target"]) == (UNVERIFIED, "command.rejected", None)
    assert e["details"]["reason"] == "bad signature"
    # The console's genuine command with that id still applies.
    assert applier.handle(_topic(), _signed("alert.ack",
                                            {"alert_id": alert_id, "key": key})) == "applied"


@pytest.mark.parametrize("make,status,reason", [
    (lambda a, k: _signed("alert.ack", {"alert_id": a, "key": k}, gateway="gw2"),
     "rejected", "wrong gateway"),
    (lambda a, k: _signed("alert.ack", {"alert_id": a, "key": k}, ttl_s=30),
     "expired", "expired"),
    (lambda a, k: _signed("alert.ack", {"alert_id": a, "key": k}, cid="c2"),
     "rejected", "id does not match the topic"),
    (lambda a, k: _signed("alert.ack", {"alert_id": a, "key": "other:alice"}),
     "rejected", "is not 'other:alice' on this hub"),
    (lambda a, k: _signed("alert.ack", {"alert_id": a + 100, "key": k}),
     "rejected", "no alert"),
    (lambda a, k: _signed("alert.ack", {"alert_id": a, "key": k}, patient="bob"),
     "rejected", "is not patient 'bob'"),
    (lambda a, k: b"\x00junk", "rejected", "malformed: not JSON"),
])
def test_refusals_are_counted_audited_and_reported(store: Store, make: Any, status: str,
                                                   reason: str) -> None:
    alert_id, key = _alert(store)
    applier = _applier(store)
    assert applier.handle(_topic(), make(alert_id, key)) == status
    [r] = _results(store)
    assert r["status"] == status and reason in r["reason"]
    [a] = caregiver.list_alerts(store, patient="alice")
    assert a["state"] == "raised"  # nothing changed
    assert command_rows.stats(store)[status] == 1
    assert audit_entries(store)[0]["action"] == f"command.{status}"


def test_threshold_set_and_reset(store: Store) -> None:
    applier = _applier(store)

    def value() -> str:
        rows = {r["key"]: r for r in caregiver.show_thresholds(store, "alice")}
        return f"{rows['glucose.low_l1']['value']} ({rows['glucose.low_l1']['source']})"

    before = store.meta("settings_version")
    msg = _signed("threshold.set", {"key": "glucose.low_l1", "value": "65 mg/dL"})
    assert applier.handle(_topic(), msg) == "applied"
    assert value() == "65 mg/dL (patient)"
    assert store.meta("settings_version") != before  # the daemon re-reads
    assert audit_entries(store)[1]["actor"] == "console:dr.rossi"
    # A value the patient's other thresholds contradict: rejected, rolled back, reported.
    bad = _signed("threshold.set", {"key": "glucose.low_l1", "value": "40 mg/dL"}, cid="c2")
    assert applier.handle(_topic("c2"), bad) == "rejected"
    assert value() == "65 mg/dL (patient)"
    assert "low_l2 < low_l1 < high" in _results(store)[-1]["reason"]
    reset = _signed("threshold.reset", {"key": None}, cid="c3")
    assert applier.handle(_topic("c3"), reset) == "applied"
    assert value().endswith("(default)")


def test_an_empty_payload_is_the_console_clearing_a_command(store: Store) -> None:
    assert _applier(store).handle(_topic(), b"") is None
    assert _results(store) == [] and command_rows.stats(store)["rejected"] == 0


def test_a_storage_failure_leaves_no_trace(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    alert_id, key = _alert(store)
    applier = _applier(store)

    def broken(*_a: object, **_k: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(command_rows, "record", broken)
    msg = _signed("alert.ack", {"alert_id": alert_id, "key": key})
    with pytest.raises(sqlite3.OperationalError):
        applier.handle(_topic(), msg)
    [a] = caregiver.list_alerts(store, patient="alice")
    assert a["state"] == "raised" and _results(store) == []
    monkeypatch.undo()
    assert applier.handle(_topic(), msg) == "applied"  # the broker's re-delivery applies it


def test_result_json_is_the_contract(store: Store) -> None:
    applier = _applier(store)
    applier.handle(_topic(), _signed("threshold.reset", {"key": "glucose.low_l1"}))
    [item] = [it for it in Outbox(store).batch(10) if it.kind == "command"]
    assert set(json.loads(item.raw)) == {"command_id", "command", "status", "reason", "actor",
                                         "applied_at"}
    assert item.patient_id == "alice" and item.priority == 0
