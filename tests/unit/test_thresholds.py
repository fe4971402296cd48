"""Threshold parsing with units, validation, per-patient overrides, the daemon's loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_gateway.alerts import thresholds as T
from edge_gateway.errors import UsageError
from edge_gateway.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "gw.db")
    s.add_patient("alice")
    return s


@pytest.mark.parametrize(("key", "text", "value"), [
    ("glucose.low_l1", "70 mg/dL", 70.0),
    ("glucose.low_l1", "3.9 mmol/L", 70.2624),
    ("glucose.low_l1", " 72mg/dL ", 72.0),
    ("glucose.high", "13.9 MMOL/L", 250.4224),
    ("hr.low_rest", "40 /min", 40.0),
    ("hr.high_rest", "130 bpm", 130.0),
    ("bp.crisis_sys", "180 mmHg", 180.0),
    ("bp.crisis_sys", "24 kPa", 180.01488),
    ("spo2.low", "90 %", 90.0),
    ("device.silent", "90 min", 5400.0),
    ("alert.renotify", "1 h", 3600.0),
])
def test_parse_with_units(key: str, text: str, value: float) -> None:
    q = T.parse_quantity(key, text)
    assert q.value == pytest.approx(value)
    assert q.unit == T.SPECS[key].dim.canonical
    assert q.text == text.strip()


@pytest.mark.parametrize(("key", "text", "words"), [
    ("glucose.low_l1", "70", "not a number followed by a unit"),
    ("glucose.low_l1", "seventy mg/dL", "not a number"),
    ("glucose.low_l1", "70 mmHg", "not a glucose unit"),
    ("glucose.low_l1", "7 mg/dL", "outside the plausible range"),
    ("glucose.low_l1", "nan mg/dL", "not a number"),
    ("spo2.low", "900 %", "outside"),
    ("hr.low_rest", "40 min", "not a rate unit"),
    ("no.such", "1 %", "unknown threshold"),
])
def test_bad_input_is_a_clear_usage_error(key: str, text: str, words: str) -> None:
    with pytest.raises(UsageError, match=words) as info:
        T.parse_quantity(key, text)
    assert info.value.exit_code == 2


def test_defaults_are_the_consensus_values() -> None:
    d = T.Thresholds.defaults()
    assert (d["glucose.low_l1"], d["glucose.low_l2"], d["glucose.high"]) == (70, 54, 250)
    assert d["glucose.predicted_low"] == 20 * 60
    assert (d["bp.crisis_sys"], d["bp.crisis_dia"], d["spo2.low"]) == (180, 120, 90)


def test_set_show_reset_per_patient_and_version_bumps(store: Store) -> None:
    v0 = store.meta("settings_version")
    T.write(store, "alice", "glucose.low_l1", "4.0 mmol/L")
    th = T.load(store, "alice")
    assert th["glucose.low_l1"] == pytest.approx(72.064)
    assert th.texts["glucose.low_l1"] == "4.0 mmol/L"
    assert th.sources["glucose.low_l1"] == "patient"
    assert T.load(store, "bob")["glucose.low_l1"] == 70  # another patient keeps the default
    v1 = store.meta("settings_version")
    assert v1 != v0
    T.write(store, None, "glucose.high", "300 mg/dL")
    assert T.load(store, "alice").sources["glucose.high"] == "gateway"
    T.write(store, "alice", "glucose.low_l1", None)
    assert T.load(store, "alice")["glucose.low_l1"] == 70
    assert store.meta("settings_version") != v1


def test_bad_input_changes_nothing(store: Store) -> None:
    T.write(store, "alice", "glucose.low_l2", "50 mg/dL")
    before = store.conn.execute("SELECT * FROM settings ORDER BY key").fetchall()
    version = store.meta("settings_version")
    for key, text in (("glucose.low_l1", "70 mmHg"), ("glucose.low_l1", "45 mg/dL"),
                      ("outbox.unsynced", "1 h")):
        with pytest.raises(UsageError):
            T.write(store, "alice", key, text)
    assert store.conn.execute("SELECT * FROM settings ORDER BY key").fetchall() == before
    assert store.meta("settings_version") == version


def test_gateway_change_is_checked_against_each_patient(store: Store) -> None:
    T.write(store, "alice", "glucose.low_l1", "60 mg/dL")
    with pytest.raises(UsageError, match="patient alice: glucose thresholds"):
        T.write(store, None, "glucose.low_l2", "62 mg/dL")
    assert T.load(store, None)["glucose.low_l2"] == 54  # nothing changed
    T.write(store, None, "glucose.low_l2", "3.0 mmol/L")  # 54.05 < 60: fine
    assert T.load(store, "alice")["glucose.low_l2"] == pytest.approx(54.048)


def test_loader_sees_changes_without_restart(store: Store) -> None:
    loader = T.ThresholdLoader(store)
    assert loader("alice")["spo2.low"] == 90
    other = Store.open(store.path)  # the CLI, another connection
    T.write(other, "alice", "spo2.low", "88 %")
    assert loader("alice")["spo2.low"] == 88
    assert T.reset_all(other, "alice") == 1
    assert loader("alice")["spo2.low"] == 90
    other.close()


def test_every_threshold_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "caregiver.md").read_text("utf-8")
    for key, s in T.SPECS.items():
        assert f"| `{key}` | {s.default} |" in doc, f"docs/caregiver.md lacks {key}"
