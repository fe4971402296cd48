"""One FHIR module, one table of kinds: every kind in ``units.KINDS`` (readings, the BP panel,
summaries, summary metrics) built for sync (``payload.fhir_resource``) and for the export
(``care.export``), validated against fhir.resources, with valid UCUM and the same LOINC code
and category on both paths.  And no kind a codec emits (golden vectors) or the DSP stores lacks
an entry."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

# fhir.resources ships R4B (4.3) for the 4.x line; Observation, Bundle and Flag are unchanged
# from R4, so a resource valid here is valid R4.
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.observation import Observation

from edge_gateway import fhir, units
from edge_gateway.care import export
from edge_gateway.cli.decode import parse_hex
from edge_gateway.drivers import registry
from edge_gateway.drivers.profiles.masimo_rad8 import CHARACTERISTIC as RAD8
from edge_gateway.errors import MalformedPayload
from edge_gateway.store.outbox import Item
from edge_gateway.sync import payload
from edge_gateway.units import KINDS, UNITS, Kind

#: UCUM codes the gateway may put in a Quantity: checked by hand against the UCUM tables
#: (``mmHg`` is not one: UCUM spells it ``mm[Hg]``).
VALID_UCUM = frozenset({
    "mm[Hg]", "kPa", "mg/dL", "mmol/L", "/min", "%", "Cel", "[degF]", "kg", "[lb_av]", "ms",
    "ms2", "s", "kJ", "m", "[in_i]", "kg/m2", "1", "mg/dL/min", "mmol/L/min",
})
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
T = "2026-11-25T10:00:00.000000Z"
TZ = ZoneInfo("UTC")
GOLDEN = Path(__file__).resolve().parent.parent / "golden"

#: A value that makes sense in each kind's first unit (only FHIR shape is checked here).
SAMPLE: dict[str, float] = {"mmHg": 120.0, "kPa": 16.0, "mg/dL": 104.0, "mmol/L": 5.8,
                            "Cel": 36.8, "[degF]": 98.6, "kg": 72.5, "[lb_av]": 160.0}


def by_role(role: str) -> list[Kind]:
    return [k for k in KINDS.values() if k.role == role]


def ids(k: Kind) -> str:
    return k.name


def loinc_of(concept: dict[str, Any]) -> str | None:
    coding = concept["coding"][0]
    return coding["code"] if coding["system"] == LOINC else None


def category_of(res: dict[str, Any]) -> str | None:
    cats = res.get("category")
    return cats[0]["coding"][0]["code"] if cats else None


def assert_ucum(q: dict[str, Any]) -> None:
    assert q["system"] == UCUM
    assert q["code"] in VALID_UCUM, q


def sync(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return payload.fhir_resource(Item(1, "gw1:db1:1", 2 if kind == "reading" else 1, kind,
                                      "p1", T, json.dumps(body)), KINDS)


def export_rows(readings: list[tuple[str, float, str]]) -> list[dict[str, Any]]:
    group = [(T, "reading", 0, {"id": i, "device": "dev", "kind": kind, "value": value,
                                "unit": unit, "record_key": "k"})
             for i, (kind, value, unit) in enumerate(readings)]
    return list(export._reading_resources(group, "p1", TZ, KINDS))


# ------------------------------------------------------------------------- the table itself
def test_the_table_is_consistent() -> None:
    assert set(UNITS) >= units.UCUM_UNITS
    assert {u.code for u in UNITS.values()} <= VALID_UCUM
    assert UNITS["mmHg"].code == "mm[Hg]"
    for name, k in KINDS.items():
        assert k.name == name
        assert k.category in ("vital-signs", "laboratory", None)
        assert all(u in UNITS for u in k.units), k
        assert k.units or k.role == "summary", k
    # glucose is laboratory, the vital signs are vital signs
    for name in ("glucose", "cgm_glucose", "glucose_daily", "glucose_14d", "glucose_meter_daily"):
        assert KINDS[name].category == "laboratory"
    for name in ("heart_rate", "pulse_rate", "bp_systolic", "bp_diastolic", "bp_map", "spo2",
                 "temperature", "weight", "blood_pressure", "sdnn"):
        assert KINDS[name].category == "vital-signs"


def test_loinc_codes_are_the_certain_ones() -> None:
    expected = {"heart_rate": "8867-4", "pulse_rate": "8867-4", "bp_systolic": "8480-6",
                "bp_diastolic": "8462-4", "bp_map": "8478-0", "blood_pressure": "85354-9",
                "glucose": "41653-7", "cgm_glucose": "99504-3", "spo2": "59408-5",
                "sdnn": "80404-7", "temperature": "8310-5", "weight": "29463-7",
                "mean_hr": "8867-4"}
    assert {n: k.loinc for n, k in KINDS.items() if k.loinc is not None} == expected


# ------------------------------------------------------------------------- readings
@pytest.mark.parametrize("kind", by_role("reading"), ids=ids)
def test_every_reading_kind(kind: Kind) -> None:
    for unit in kind.units:
        value = SAMPLE.get(unit, 61.0)
        body = {"kind": kind.name, "value": value, "unit": unit, "time": T, "patient": "p1",
                "device": "dev"}
        s = sync("reading", body)
        Observation.model_validate(s)
        assert_ucum(s["valueQuantity"])
        assert loinc_of(s["code"]) == kind.loinc
        assert category_of(s) == kind.category
        # the export puts BP parts into the panel (tested below); the rest stand alone
        if units.BP_PARTS.get(kind.name) in ("sys", "dia", "map"):
            continue
        made = export_rows([(kind.name, value, unit)])
        if kind.loinc is None:
            assert made == []  # the export carries only what LOINC codes
            continue
        (e,) = made
        Observation.model_validate(e)
        assert_ucum(e["valueQuantity"])
        assert loinc_of(e["code"]) == loinc_of(s["code"]) == kind.loinc
        assert category_of(e) == category_of(s)
        assert e["valueQuantity"]["code"] == s["valueQuantity"]["code"]


def test_glucose_in_mmol_is_mass_per_volume_on_both_paths() -> None:
    body = {"kind": "glucose", "value": 5.2, "unit": "mmol/L", "time": T}
    s = sync("reading", body)
    (e,) = export_rows([("glucose", 5.2, "mmol/L")])
    for q in (s["valueQuantity"], e["valueQuantity"]):
        assert q["code"] == "mg/dL" and q["value"] == pytest.approx(5.2 * units.MGDL_PER_MMOLL,
                                                                   abs=1e-3)


def test_a_unit_the_code_does_not_take_is_never_coded_in_loinc() -> None:
    s = sync("reading", {"kind": "heart_rate", "value": 1.0, "unit": "%", "time": T})
    assert loinc_of(s["code"]) is None and s["code"]["coding"][0]["code"] == "reading/heart_rate"
    assert export_rows([("heart_rate", 1.0, "%")]) == []


def test_unknown_kinds_and_missing_values() -> None:
    s = sync("reading", {"kind": "mystery", "value": None, "unit": "1", "time": T})
    Observation.model_validate(s)
    assert s["code"]["coding"][0] == {"system": fhir.LOCAL_SYSTEM, "code": "reading/mystery"}
    assert "category" not in s and "dataAbsentReason" in s
    assert export_rows([("heart_rate", 61.0, "/min")])  # control
    group = [(T, "reading", 0, {"id": 1, "device": "d", "kind": "heart_rate", "value": None,
                                "unit": "/min", "record_key": "k"})]
    assert list(export._reading_resources(group, "p1", TZ, KINDS)) == []


# ------------------------------------------------------------------------- the BP panel
@pytest.mark.parametrize("kind", by_role("panel"), ids=ids)
@pytest.mark.parametrize("unit", ["mmHg", "kPa"])
def test_bp_panel(kind: Kind, unit: str) -> None:
    f = units.MMHG_PER_KPA if unit == "kPa" else 1.0
    (panel,) = export_rows([("bp_diastolic", 82 / f, unit), ("bp_map", 97 / f, unit),
                            ("bp_systolic", 128 / f, unit)])
    Observation.model_validate(panel)
    assert loinc_of(panel["code"]) == kind.loinc and category_of(panel) == kind.category
    comps = [(loinc_of(c["code"]), c["valueQuantity"]["value"]) for c in panel["component"]]
    assert comps == [("8480-6", 128.0), ("8462-4", 82.0), ("8478-0", 97.0)]
    for c in panel["component"]:
        assert_ucum(c["valueQuantity"])
        assert c["valueQuantity"]["code"] == "mm[Hg]" and c["valueQuantity"]["unit"] == "mmHg"
    # the parts carry the same codes and category when sync sends them one by one
    for c, part in zip(panel["component"], ("bp_systolic", "bp_diastolic", "bp_map"),
                       strict=True):
        s = sync("reading", {"kind": part, "value": 120.0, "unit": "mmHg", "time": T})
        assert loinc_of(s["code"]) == loinc_of(c["code"])
        assert category_of(s) == category_of(panel)


def test_bp_records_pairs_by_key_and_skips_other_kinds() -> None:
    rows = [("a", "bp_systolic", 120), ("a", "heart_rate", 60), ("b", "bp_systolic", 130),
            ("a", "bp_diastolic", 80), ("a", "pulse_rate", 66), ("b", "systolic", 131)]
    recs = units.bp_records(rows, key=lambda r: r[0], kind=lambda r: r[1])
    assert list(recs) == ["a", "b"]
    assert recs["a"].complete and recs["a"].first == rows[0]
    assert {p: r[2] for p, r in recs["a"].parts.items()} == {"sys": 120, "dia": 80, "pulse": 66}
    assert not recs["b"].complete and recs["b"].parts["sys"][2] == 131  # the last one wins


# ------------------------------------------------------------------------- summaries
def summary_body(kind: str, metrics: dict[str, Any]) -> dict[str, Any]:
    return {"summary_id": 1, "kind": kind, "patient": "p1", "device": "dev",
            "window_start": T, "window_end": T, "metrics": metrics, "coverage": 0.9,
            "algorithm": "x/1", "created_at": T}


@pytest.mark.parametrize("kind", by_role("summary"), ids=ids)
def test_every_summary_kind(kind: Kind) -> None:
    s = sync("summary", summary_body(kind.name, {"n": 3, "mean_mg_dl": 104.0, "sdnn_ms": 40.0,
                                                 "lf_ms2": 900.0, "nothing": None}))
    Observation.model_validate(s)
    assert loinc_of(s["code"]) == kind.loinc
    assert category_of(s) == kind.category
    for c in s["component"]:
        if "valueQuantity" in c:
            assert_ucum(c["valueQuantity"])


@pytest.mark.parametrize("kind", by_role("metric"), ids=ids)
def test_every_summary_metric(kind: Kind) -> None:
    suffix = {"ms": "_ms", "/min": "_bpm"}.get(kind.units[0], "")
    metric = kind.name + suffix
    assert units.metric_unit(metric) == (kind.name, kind.units[0])
    s = sync("summary", summary_body("hrv", {metric: 48.5}))
    Observation.model_validate(s)
    (c,) = s["component"]
    assert loinc_of(c["code"]) == kind.loinc
    assert_ucum(c["valueQuantity"])
    e = fhir.metric_observation(KINDS, metric, 48.5, start=T, end=T, patient="p1", rid="x")
    if kind.loinc is None:
        assert e is None  # the export carries only what LOINC codes
        return
    assert e is not None
    Observation.model_validate(e)
    assert loinc_of(e["code"]) == loinc_of(c["code"])
    assert category_of(e) == kind.category
    assert e["valueQuantity"] == c["valueQuantity"]


def test_exported_metric_is_in_the_table() -> None:
    name, unit = units.metric_unit(export.EXPORTED_METRIC)
    assert KINDS[name].loinc == "80404-7" and unit in KINDS[name].units


# ------------------------------------------------------------------------- alerts, bundles
def test_alert_flag_is_the_same_shape_on_both_paths() -> None:
    body = {"alert_id": 1, "rule": "glucose_low", "severity": "urgent", "state": "resolved",
            "message": "low", "raised_at": T, "patient": "p1"}
    s = sync("alert", body)
    e = fhir.flag(rule="glucose_low", message="low", state="resolved", severity="urgent",
                  start=T, end=T, patient="p1", rid="3f0f1c1e-6d9e-5d0a-8a43-1a9b5f0f2d11")
    for f in (s, e):
        Flag.model_validate(f)
        assert f["status"] == "inactive" and f["code"]["coding"][0]["code"] == "alert/glucose_low"
    assert {k: v for k, v in s.items() if k not in ("identifier", "id", "period")} == \
        {k: v for k, v in e.items() if k not in ("identifier", "id", "period")}


def test_bundle() -> None:
    obs = fhir.reading_observation(KINDS, "spo2", 97.0, "%", when=T, patient="p1",
                                   rid="6f1b7c52-6a0e-4d0b-9a65-0f3c4f1e2a11")
    assert obs is not None
    b = fhir.bundle("6f1b7c52-6a0e-4d0b-9a65-0f3c4f1e2a10", [obs])
    Bundle.model_validate(b)
    assert b["entry"][0]["fullUrl"] == "urn:uuid:6f1b7c52-6a0e-4d0b-9a65-0f3c4f1e2a11"
    assert "entry" not in fhir.bundle("6f1b7c52-6a0e-4d0b-9a65-0f3c4f1e2a10", [])


# ------------------------------------------------------------------------- coverage
def emitted_by_golden_vectors() -> set[tuple[str, str]]:
    rx = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    out: set[tuple[str, str]] = set()
    for case in sorted(GOLDEN.glob("*/*")):
        if not (case / "expected.json").is_file():
            continue
        raw = parse_hex([(case / "input.hex").read_text()])
        try:
            readings = registry.to_readings(case.parent.name, raw, device_id="d",
                                            received_at=rx, device_clock_offset=timedelta(0))
        except MalformedPayload:  # decodes, but a record fails its E2E-CRC: no readings
            continue
        out.update((r.kind, r.unit) for r in readings)
    return out


def test_no_kind_a_codec_emits_lacks_an_entry() -> None:
    emitted = emitted_by_golden_vectors()
    line = (b"11/25/26 20:14:07 SN=0000093112 SPO2=097% BPM=072 PI=02.35% SPCO=--.-% "
            b"SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800")
    emitted |= {(r.kind, r.unit) for r in registry.to_readings(
        RAD8, line, device_id="ox", received_at=datetime(2026, 11, 25, tzinfo=UTC),
        device_clock_offset=None)}
    kinds = registry.kinds()
    assert {k for k, _ in emitted} >= {"heart_rate", "rr_interval", "bp_systolic", "glucose",
                                       "cgm_glucose", "spo2", "temperature", "weight",
                                       "battery", "perfusion_index"}
    missing = sorted(k for k, _ in emitted if k not in kinds)
    assert not missing, f"kinds without an entry in units.KINDS: {missing}"
    wrong = sorted((k, u) for k, u in emitted if u not in kinds[k].units)
    assert not wrong, f"units a kind's entry does not list: {wrong}"
    # and the registry's merged table codes them exactly as the core table does
    assert all(kinds[k] == KINDS[k] for k in KINDS if k in kinds)


def test_no_summary_the_dsp_stores_lacks_an_entry() -> None:
    from edge_gateway.dsp.bp import BpResult
    from edge_gateway.runtime.dsp_scheduler import default_jobs

    for job in default_jobs():
        assert KINDS[job.name].role == "summary", job.name
        assert all(k in KINDS for k in job.reading_kinds), job
    # pressures in the weekly BP summary carry no unit suffix: their kinds say mmHg
    for f in fields(BpResult):
        if any(w in f.name for w in ("systolic", "diastolic", "pressure")) and \
                f.name != "crisis_readings":
            assert units.metric_unit(f.name) == (f.name, "mmHg"), f.name
