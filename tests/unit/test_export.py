"""Export: CSV/JSON round trip, local-day windows (--until exclusive), FHIR R4 validation,
and streaming memory."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_gateway.alerts.engine import AlertEngine
from edge_gateway.alerts.thresholds import ThresholdLoader
from edge_gateway.care.export import CSV_HEADER, export, export_text, window
from edge_gateway.errors import UsageError
from edge_gateway.reading import Reading, iso
from edge_gateway.store import Store

TZ = "Europe/Berlin"
# 2026-11-20 00:00 in Berlin is 2026-11-19 23:00 UTC.
DAY0 = datetime(2026, 11, 19, 23, 0, tzinfo=UTC)


def r(kind: str, value: float | None, at: datetime, unit: str, key: str, *,
      device: str = "dev", special: str | None = None) -> Reading:
    return Reading(device_id=device, characteristic="c", kind=kind, value=value, unit=unit,
                   time=at, received_at=at + timedelta(seconds=2), record_key=key,
                   patient_id="alice", special=special)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "gw.db")
    s.add_patient("alice")
    s.add_patient("bob")
    t = DAY0 + timedelta(hours=8)
    s.add_readings([
        r("cgm_glucose", 142, t, "mg/dL", "s1:0", device="cgm"),
        r("cgm_glucose", 5.2, t + timedelta(minutes=5), "mmol/L", "s1:5", device="cgm"),
        r("heart_rate", 64, t + timedelta(minutes=6), "/min", "h1", device="strap"),
        r("rr_interval", 937, t + timedelta(minutes=6), "ms", "h1:rr0", device="strap"),
        r("bp_systolic", 128, t + timedelta(minutes=7), "mmHg", "seq:4", device="cuff"),
        r("bp_diastolic", 82, t + timedelta(minutes=7), "mmHg", "seq:4", device="cuff"),
        r("pulse_rate", 66, t + timedelta(minutes=7), "/min", "seq:4", device="cuff"),
        r("bp_map", 97, t + timedelta(minutes=7), "mmHg", "seq:4", device="cuff"),
        r("temperature", 98.6, t + timedelta(minutes=8), "[degF]", "t1", device="thermo"),
        r("spo2", None, t + timedelta(minutes=8), "%", "o1", device="ox", special="nan"),
        r("spo2", 97, t + timedelta(minutes=9), "%", "o2", device="ox"),
        # At the window's edges: 23:59:59 local is in, 00:00 local the next day is out.
        r("heart_rate", 60, DAY0 + timedelta(hours=24, seconds=-1), "/min", "edge-in",
          device="strap"),
        r("heart_rate", 61, DAY0 + timedelta(hours=24), "/min", "edge-out", device="strap"),
        r("heart_rate", 59, DAY0 - timedelta(seconds=1), "/min", "before", device="strap"),
    ])
    s.add_readings([Reading(device_id="x", characteristic="c", kind="heart_rate", value=70,
                            unit="/min", time=t, received_at=t, record_key="bob1",
                            patient_id="bob")])
    with s.transaction() as conn:
        conn.execute(
            "INSERT INTO summaries (patient_id, device_id, kind, window_start, window_end,"
            " metrics, coverage, algorithm, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("alice", "strap", "hrv", iso(t), iso(t + timedelta(minutes=5)),
             json.dumps({"sdnn_ms": 48.5, "rmssd_ms": 31.0}), 0.97, "hrv/1", iso(t)))
    meter = r("glucose", 51, t + timedelta(hours=2), "mg/dL", "m1", device="meter")
    s.add_readings([meter])
    AlertEngine(s, ThresholdLoader(s)).on_readings([meter])
    return s


def day() -> tuple[str, str, str]:
    return ("2026-11-20", "2026-11-21", TZ)


def test_csv_round_trip(store: Store) -> None:
    text = export_text(store, patient="alice", w=window(*day()), fmt="csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0].keys()) == CSV_HEADER
    reading_keys = [json.loads(x["details"])["record_key"] for x in rows
                    if x["record"] == "reading"]
    assert "edge-in" in reading_keys and "edge-out" not in reading_keys
    assert "before" not in reading_keys and "bob1" not in reading_keys
    assert [x["record"] for x in rows].count("summary") == 1
    assert [x["record"] for x in rows].count("alert") == 1
    times = [x["time_utc"] for x in rows]
    assert times == sorted(times)
    cgm = next(x for x in rows if x["kind"] == "cgm_glucose")
    assert (cgm["value"], cgm["unit"], cgm["device"]) == ("142", "mg/dL", "cgm")
    assert cgm["time_local"] == "2026-11-20T08:00:00+01:00"
    assert cgm["time_utc"] == "2026-11-20T07:00:00.000000Z"
    nan = next(x for x in rows if x["special"] == "nan")
    assert nan["value"] == "" and nan["kind"] == "spo2"
    alert = next(x for x in rows if x["record"] == "alert")
    assert alert["kind"] == "glucose_low" and alert["special"] == "raised"
    # Round trip: every stored reading of the day comes back with its value.
    db = {(k, v) for k, v in store.conn.execute(
        "SELECT record_key, value FROM readings WHERE patient_id = 'alice' AND time >= ?"
        " AND time < ?", (iso(DAY0), iso(DAY0 + timedelta(days=1))))}
    back = {(json.loads(x["details"])["record_key"], float(x["value"]) if x["value"] else None)
            for x in rows if x["record"] == "reading"}
    assert back == db


def test_json_is_one_document(store: Store) -> None:
    doc = json.loads(export_text(store, patient="alice", w=window(*day()), fmt="json"))
    assert doc["timezone"] == TZ and doc["until_exclusive"] is True
    assert len(doc["records"]) == 15
    assert doc["records"][0]["record"] == "reading"


def test_fhir_bundle_is_valid_r4(store: Store) -> None:
    # fhir.resources ships R4B (4.3) for the 4.x line; Bundle and Observation are normative
    # since R4 and unchanged in R4B, so a Bundle valid here is valid R4.
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.bundle import Bundle

    text = export_text(store, patient="alice", w=window(*day()), fmt="fhir")
    doc = json.loads(text)
    bundle = Bundle.model_validate(doc)
    assert bundle.type == "collection"
    for entry in doc["entry"]:
        res = entry["resource"]
        get_fhir_model_class(res["resourceType"]).model_validate(res)
    obs = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Observation"]
    codes = sorted(o["code"]["coding"][0]["code"] for o in obs)
    # 2 CGM, 3 HR (strap 2 + cuff pulse), BP panel, SpO2 (the NaN one is left out), SDNN,
    # meter glucose, temperature.
    assert codes == sorted(["99504-3", "99504-3", "8867-4", "8867-4", "8867-4", "85354-9",
                            "59408-5", "80404-7", "41653-7", "8310-5"])
    assert all(o["code"]["coding"][0]["system"] == "http://loinc.org" for o in obs)
    panel = next(o for o in obs if o["code"]["coding"][0]["code"] == "85354-9")
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"],
             c["valueQuantity"]["code"]) for c in panel["component"]] == [
        ("8480-6", 128, "mm[Hg]"), ("8462-4", 82, "mm[Hg]"), ("8478-0", 97, "mm[Hg]")]
    temp = next(o for o in obs if o["code"]["coding"][0]["code"] == "8310-5")
    assert temp["valueQuantity"] == {"value": 98.6, "unit": "°F",
                                     "system": "http://unitsofmeasure.org", "code": "[degF]"}
    mmol = [o for o in obs if o["code"]["coding"][0]["code"] == "99504-3"]
    assert mmol[1]["valueQuantity"] == {"value": pytest.approx(93.683), "unit": "mg/dL",
                                        "system": "http://unitsofmeasure.org", "code": "mg/dL"}
    assert mmol[0]["effectiveDateTime"] == "2026-11-20T08:00:00+01:00"
    assert [e["resource"]["resourceType"] for e in doc["entry"]].count("Flag") == 1
    # Deterministic ids: exporting twice gives the same bundle.
    assert export_text(store, patient="alice", w=window(*day()), fmt="fhir") == text


def test_empty_fhir_bundle_is_valid(store: Store) -> None:
    from fhir.resources.R4B.bundle import Bundle

    text = export_text(store, patient="alice", w=window("2020-01-01", "2020-01-02", TZ),
                       fmt="fhir")
    assert Bundle.model_validate_json(text).entry is None


@pytest.mark.parametrize(("since", "until", "tz", "words"), [
    ("yesterday", None, TZ, "not a date"),
    ("2026-11-20", "2026-11-20", TZ, "must be after"),
    ("2026-11-20", None, "Mars/Olympus", "unknown time zone"),
])
def test_bad_windows(since: str, until: str | None, tz: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        window(since, until, tz)


def test_export_streams(tmp_path: Path) -> None:
    """Memory does not grow with the amount exported: 4x the data, about the same peak."""
    s = Store.open(tmp_path / "big.db")
    s.add_patient("alice")
    s.add_readings(r("heart_rate", 60 + i % 40, DAY0 + timedelta(seconds=i), "/min", f"k{i}")
                   for i in range(3_700))

    class Sink(io.TextIOBase):
        size = 0

        def write(self, text: str) -> int:  # type: ignore[override]
            self.size += len(text)
            return len(text)

    def peak(fmt: str, until: str) -> tuple[int, int]:
        sink = Sink()
        export(s, sink, patient="alice", w=window("2026-11-20", until, TZ), fmt=fmt)  # warm
        sink = Sink()
        tracemalloc.start()
        export(s, sink, patient="alice", w=window("2026-11-20", until, TZ), fmt=fmt)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top, sink.size

    for fmt in ("csv", "fhir"):
        small, small_out = peak(fmt, "2026-11-20T00:15")
        big, big_out = peak(fmt, "2026-11-20T01:00")
        assert big_out > 3.5 * small_out
        assert big < 1.3 * small + 100_000, (fmt, small, big)
        assert big < 2_000_000
    s.close()
