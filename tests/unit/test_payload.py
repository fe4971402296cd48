"""payload.py: pure envelope, topics, batching, FHIR, compression."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from edge_gateway.config import SyncSection
from edge_gateway.reading import Alert, Summary
from edge_gateway.store.outbox import Item, alert_body, summary_body
from edge_gateway.sync import payload
from edge_gateway.sync.payload import Options
from edge_gateway.units import metric_unit

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def item(seq: int, kind: str = "summary", patient: str | None = "p1", prio: int = 1,
         body: dict[str, object] | None = None) -> Item:
    created = f"2026-11-25T09:{seq % 60:02d}:00.000000Z"
    return Item(seq, f"gw1:db1:{seq}", prio, kind, patient, created,
                json.dumps(body if body is not None else {"n": seq}, separators=(",", ":")))


def test_single_message_envelope_is_one_compact_line_with_required_keys() -> None:
    msg = payload.build([item(7)], Options(gateway="gw1", site="clinic"), NOW)
    text = msg.payload.decode()
    assert "\n" not in text and ": " not in text
    env = json.loads(text)
    for key in ("schema", "id", "gateway", "kind", "created_at"):
        assert key in env
    assert env["schema"] == payload.SCHEMA
    assert env["id"] == "gw1:db1:7" and env["seq"] == 7 and env["data"] == {"n": 7}
    assert "status" not in env
    assert msg.topic == "edge-gateway/clinic/gw1/p1/summary"
    assert msg.seqs == (7,)
    assert payload.items_of(env) == [("gw1:db1:7", {"n": 7})]


def test_batch_carries_items_with_own_ids_and_batch_id_property() -> None:
    items = [item(i) for i in range(1, 4)]
    msg = payload.build(items, Options(gateway="gw1"), NOW)
    env = payload.decode(msg.payload)
    assert [i["id"] for i in env["items"]] == ["gw1:db1:1", "gw1:db1:2", "gw1:db1:3"]
    assert dict(msg.user_properties)["batch_id"] == env["id"] == msg.id
    assert env["id"].startswith("gw1:db1:b")
    # deterministic: the same items give the same batch id
    assert payload.build(items, Options(gateway="gw1"), NOW + timedelta(hours=1)).id == msg.id
    assert env["created_at"] == max(i.created_at for i in items)


def test_group_keeps_priority_order_and_splits_by_patient_kind_and_size() -> None:
    items = [item(1, "alert", "p1", 0), item(2, "alert", "p2", 0), item(3), item(4),
             item(5, patient="p2"), item(6)]
    groups = payload.group(items, batch_size=2)
    assert [[i.seq for i in g] for g in groups] == [[1], [2], [3, 4], [5], [6]]


def test_topic_segments_are_escaped() -> None:
    assert payload.topic_segment("a/b+#") == "a%2Fb%2B%23"
    assert payload.topic_segment(None) == "_"
    opts = Options(gateway="gw1", site="s")
    assert payload.data_topic(opts, None, "alert") == "edge-gateway/s/gw1/_/alert"
    assert payload.status_topic("edge-gateway", "s", "gw1") == "edge-gateway/s/gw1/status"


def test_status_payload() -> None:
    obj = json.loads(payload.status_payload("offline", "gw1", "s", None))
    assert obj["status"] == "offline" and obj["gateway"] == "gw1"
    with pytest.raises(ValueError):
        payload.status_payload("maybe", "gw1", "s", None)


@pytest.mark.parametrize("method", ["gzip", "zstd"])
def test_compression_round_trips_and_shrinks_a_batch(method: str) -> None:
    items = [item(i, body={"metrics": {"sdnn_ms": 40.0 + i, "mean_hr_bpm": 60}})
             for i in range(1, 51)]
    plain = payload.build(items, Options(gateway="gw1"), NOW)
    packing = Options(gateway="gw1", sync=SyncSection(compression=method))
    packed = payload.build(items, packing, NOW)
    assert len(packed.payload) < len(plain.payload) / 3
    assert dict(packed.user_properties)["content-encoding"] == method
    assert payload.decode(packed.payload, method) == payload.decode(plain.payload)
    # same input, same bytes (gzip would otherwise stamp the time)
    assert payload.build(items, packing, NOW).payload == packed.payload


def test_summary_and_alert_bodies() -> None:
    s = Summary("p1", "bp", NOW, NOW + timedelta(minutes=2),
                {"systolic_mmhg": 128.0, "diastolic_mmhg": 82.0}, 1.0, "bp/1", NOW, "cuff")
    b = summary_body(5, s)
    assert b["summary_id"] == 5 and b["window_start"] == "2026-11-25T10:00:00.000000Z"
    a = Alert("p1", "glucose_low", "urgent", "raised", "low", NOW, "k", 60.0, "mg/dL")
    assert alert_body(9, a)["severity"] == "urgent"


def test_fhir_observation_uses_loinc_and_ucum() -> None:
    s = Summary("p1", "hrv", NOW, NOW + timedelta(minutes=5),
                {"sdnn_ms": 48.5, "mean_hr_bpm": 61.0, "note": None, "odd_x": 3},
                1.0, "hrv/1", NOW, "strap")
    it = Item(1, "gw1:db1:1", 1, "summary", "p1", "t", json.dumps(summary_body(1, s)))
    obs = payload.fhir_resource(it)
    assert obs["resourceType"] == "Observation" and obs["status"] == "final"
    # A summary kind has no LOINC code: it is coded locally, its metrics in LOINC where known.
    assert obs["code"]["coding"][0] == {"system": "urn:edge-gateway:code",
                                        "code": "summary/hrv"}
    assert obs["category"][0]["coding"][0]["code"] == "vital-signs"
    comps = {c["code"]["coding"][0]["code"]: c for c in obs["component"]}
    assert comps["80404-7"]["valueQuantity"] == {
        "value": 48.5, "unit": "ms", "system": "http://unitsofmeasure.org", "code": "ms"}
    assert comps["8867-4"]["valueQuantity"]["code"] == "/min"
    assert "dataAbsentReason" in comps["metric/note"]
    assert comps["metric/odd_x"]["valueQuantity"]["code"] == "1"
    assert obs["subject"] == {"reference": "Patient/p1"}
    assert obs["identifier"][0]["value"] == "gw1:db1:1"


def test_fhir_bp_summary_and_readings_use_valid_ucum() -> None:
    # The weekly BP summary's pressures carry no unit suffix: their kinds give mm[Hg] (UCUM),
    # not the "mmHg" readings store; glucose summaries are laboratory observations.
    s = Summary("p1", "bp_weekly", NOW, NOW + timedelta(days=7),
                {"mean_systolic": 128.0, "mean_diastolic": 82.0}, 1.0, "bp/1", NOW, "cuff")
    obs = payload.fhir_resource(
        Item(1, "gw1:db1:1", 1, "summary", "p1", "t", json.dumps(summary_body(1, s))))
    assert {c["valueQuantity"]["code"] for c in obs["component"]} == {"mm[Hg]"}
    assert {c["valueQuantity"]["unit"] for c in obs["component"]} == {"mmHg"}
    g = Summary("p1", "glucose_daily", NOW, NOW + timedelta(days=1), {"mean_mg_dl": 104.0},
                1.0, "glucose/1", NOW, "cgm")
    obs = payload.fhir_resource(
        Item(2, "gw1:db1:2", 1, "summary", "p1", "t", json.dumps(summary_body(2, g))))
    assert obs["category"][0]["coding"][0]["code"] == "laboratory"
    reading = {"kind": "bp_systolic", "value": 16.0, "unit": "kPa",
               "time": "2026-11-25T10:00:00.000000Z", "patient": "p1", "device": "cuff"}
    obs = payload.fhir_resource(
        Item(3, "gw1:db1:3", 2, "reading", "p1", "t", json.dumps(reading)))
    assert obs["code"]["coding"][0]["code"] == "8480-6"
    assert obs["valueQuantity"]["code"] == "mm[Hg]"
    assert obs["valueQuantity"]["value"] == pytest.approx(120.01, abs=0.01)


def test_fhir_format_keeps_the_envelope_and_alerts_become_flags() -> None:
    a = Alert("p1", "glucose_low", "urgent", "raised", "glucose low", NOW, "k", 60.0, "mg/dL")
    it = Item(3, "gw1:db1:3", 0, "alert", "p1", "t", json.dumps(alert_body(1, a)))
    as_fhir = Options(gateway="gw1", sync=SyncSection(format="fhir"))
    env = payload.decode(payload.build([it], as_fhir, NOW).payload)
    assert env["format"] == "fhir" and env["kind"] == "alert"
    assert env["data"]["resourceType"] == "Flag" and env["data"]["status"] == "active"


def test_units_from_metric_names() -> None:
    assert metric_unit("sdnn_ms") == ("sdnn", "ms")
    assert metric_unit("mean_hr_bpm") == ("mean_hr", "/min")
    assert metric_unit("mean_glucose_mg_dl") == ("mean_glucose", "mg/dL")
    assert metric_unit("lf_ms2") == ("lf", "ms2")
    assert metric_unit("mean_systolic") == ("mean_systolic", "mmHg")
    assert metric_unit("ratio") == ("ratio", "1")


def test_options_are_validated() -> None:
    with pytest.raises(ValueError):
        Options(gateway="g", sync=SyncSection(format="xml"))
    with pytest.raises(ValueError):
        Options(gateway="g", sync=SyncSection(compression="lz4"))


def test_fhir_resources_validate_against_the_r4b_models() -> None:
    # fhir.resources ships R4B (4.3); Observation is normative since R4 and unchanged, Flag is
    # unchanged too, so a resource valid here is valid R4.
    from fhir.resources.R4B.flag import Flag
    from fhir.resources.R4B.observation import Observation

    s = Summary("p1", "cgm", NOW, NOW + timedelta(minutes=15),
                {"mean_glucose_mg_dl": 104.0, "trend_mg_dl_min": -0.4, "missing_pct": None},
                0.93, "glucose/1", NOW, "cgm-1")
    obs = payload.fhir_resource(Item(1, "gw1:db1:1", 1, "summary", "p1", "t",
                                     json.dumps(summary_body(1, s))))
    Observation.model_validate(obs)
    reading = {"kind": "heart_rate", "value": 61.0, "unit": "/min",
               "time": "2026-11-25T10:00:00.000000Z", "patient": "p1", "device": "strap"}
    Observation.model_validate(payload.fhir_resource(
        Item(2, "gw1:db1:2", 2, "reading", "p1", "t", json.dumps(reading))))
    a = Alert("p1", "glucose_low", "urgent", "resolved", "low", NOW, "k", 60.0, "mg/dL")
    flag = payload.fhir_resource(Item(3, "gw1:db1:3", 0, "alert", "p1", "t",
                                      json.dumps(alert_body(1, a))))
    assert flag["status"] == "inactive"
    Flag.model_validate(flag)


def test_fit_splits_oversize_batches_and_sets_aside_oversize_items() -> None:
    items = [item(i, body={"pad": "x" * 100}) for i in range(1, 11)]
    items.append(item(11, body={"pad": "x" * 5000}))
    opts = Options(gateway="gw1", sync=SyncSection(batch_size=50))
    assert len(payload.build_all(items, opts, NOW)) == 1
    ok, too_big = payload.fit(items, opts, NOW, 1000)
    assert [m.seqs for m in ok] == [(i,) for i in range(1, 11)]
    assert [m.seqs for m in too_big] == [(11,)]
    assert all(payload.packet_size(m) <= 1000 for m in ok)
    ok, too_big = payload.fit(items, opts, NOW, None)
    assert len(ok) == 1 and not too_big


def test_packet_size_matches_paho() -> None:
    # The packet paho would write for the message, measured with paho's own encoder (its
    # private send path, with the socket write replaced by a list).
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    gzipped = Options(gateway="gw1", sync=SyncSection(compression="gzip"))
    msg = payload.build([item(1), item(2)], gzipped, NOW)
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    sent: list[bytes] = []
    c._packet_queue = lambda cmd, packet, mid, qos, info=None: sent.append(bytes(packet))  # type: ignore[method-assign]
    c._sock = object()  # type: ignore[assignment]
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = list(msg.user_properties)
    props.ContentType = msg.content_type
    props.PayloadFormatIndicator = 0
    try:
        c._send_publish(1, msg.topic.encode(), msg.payload, 1, False, False, None, props)
    finally:
        c._sock = None
    assert len(sent[0]) == payload.packet_size(msg)
