"""The pure decoder reads exactly what the hub's payload builder writes, and turns every kind of
bad message into a dead letter (never an exception)."""

from __future__ import annotations

import gzip
import json

import pytest
import zstandard
from conftest import hub_items, hub_messages
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_gateway.cloud import decode
from edge_gateway.sync import payload


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
@pytest.mark.parametrize("batch_size", [1, 50])
@pytest.mark.parametrize("fmt", ["json", "fhir"])
def test_every_shape_the_hub_sends_is_read(compression: str, batch_size: int, fmt: str) -> None:
    items = hub_items("gw1", 7) + hub_items("gw1", 3, start_seq=8, kind="alert")
    got = []
    for m in hub_messages("gw1", items, site="clinic/3", batch_size=batch_size,
                          compression=compression, fmt=fmt):
        d = decode.classify(m.topic, m.payload)
        assert isinstance(d, decode.DataMessage), d
        assert (d.gateway, d.site, d.patient) == ("gw1", "clinic/3", "p1")
        got += [(r.id, r.created_at.isoformat(), r.kind, r.format) for r in d.items]
        if d.kind == "alert":
            assert len(d.alerts) == len(d.items)
            assert {a.state for a in d.alerts} <= {"raised", "resolved"}
            assert all(a.rule == "hr_high" and a.severity == "urgent" for a in d.alerts)
    want = [(it.msg_id, it.created_at.replace("Z", "+00:00"), it.kind, fmt) for it in items]
    assert sorted(got) == sorted(want)  # created_at is each item's own, not the batch's


def test_alert_keys_agree_between_single_and_batch() -> None:
    items = hub_items("gw1", 4, kind="alert")
    single = [decode.classify(m.topic, m.payload) for m in hub_messages("gw1", items)]
    batch = decode.classify(*(lambda m: (m.topic, m.payload))(
        hub_messages("gw1", items, batch_size=50)[0]))
    assert isinstance(batch, decode.DataMessage)
    keys = [a.key for d in single if isinstance(d, decode.DataMessage) for a in d.alerts]
    assert keys == [a.key for a in batch.alerts] == ["0", "1", "1", "2"]


def test_status_message() -> None:
    raw = payload.status_payload("offline", "gw1", "home", None)
    d = decode.classify(payload.status_topic("edge-gateway", "home", "gw1"), raw)
    assert d == decode.StatusMessage("edge-gateway/home/gw1/status", "home", "gw1", "offline",
                                     None)


def test_status_message_carries_the_hubs_version() -> None:
    topic = payload.status_topic("edge-gateway", "home", "gw1")
    d = decode.classify(topic, payload.status_payload("online", "gw1", "home", None,
                                                      version="0.1.0"))
    assert isinstance(d, decode.StatusMessage) and d.version == "0.1.0"
    bad = decode.classify(topic, payload.status_payload("online", "gw1", "home", None,
                                                        version=7))
    assert isinstance(bad, decode.DeadLetter) and bad.reason.startswith("envelope")


def _one() -> payload.Message:
    return hub_messages("gw1", hub_items("gw1", 1))[0]


def _env(**change: object) -> bytes:
    env = json.loads(_one().payload)
    env.update(change)
    return json.dumps(env).encode()


TOPIC = "edge-gateway/home/gw1/p1/summary"
BAD = {
    "oversized": (TOPIC, b"{" + b" " * (1 << 20) + b"}"),
    "topic": ("edge-gateway/home/gw1/summary", _one().payload),
    "topic-mismatch": ("edge-gateway/home/gw2/p1/summary", _one().payload),
    "bomb": (TOPIC, gzip.compress(b" " * (20 << 20))),
    "zstd-bomb": (TOPIC, zstandard.ZstdCompressor().compress(b" " * (20 << 20))),
    "compression": (TOPIC, b"\x1f\x8b\x08\x00garbage"),
    "not-json": (TOPIC, b"\xff\xfe not json"),
    "nan": (TOPIC, _one().payload.replace(b"60.0", b"NaN")),
    "schema": (TOPIC, _env(schema="edge-gateway/9")),
    "envelope": (TOPIC, _env(data=None, id=None)),
    "time": (TOPIC, _env(created_at="yesterday")),
    "nul": (TOPIC, _env(data={"x": "a\u0000b"})),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_messages_become_dead_letters(case: str) -> None:
    topic, raw = BAD[case]
    d = decode.classify(topic, raw)
    assert isinstance(d, decode.DeadLetter), d
    kind = d.reason.split(":")[0]
    assert kind in decode.REASONS
    expect = {"topic-mismatch": "topic", "zstd-bomb": "bomb", "nan": "not-json",
              "time": "envelope", "nul": "envelope"}.get(case, case)
    assert kind == expect, d.reason
    assert d.topic == topic and d.payload == raw[:1 << 20]


def test_bomb_cap_is_configurable_and_the_cap_itself_passes() -> None:
    m = hub_messages("gw1", hub_items("gw1", 50), batch_size=50, compression="gzip")[0]
    size = len(gzip.decompress(m.payload))
    assert isinstance(decode.classify(m.topic, m.payload, limits=decode.Limits(
        max_inflated_bytes=size)), decode.DataMessage)
    d = decode.classify(m.topic, m.payload, limits=decode.Limits(max_inflated_bytes=size - 1))
    assert isinstance(d, decode.DeadLetter) and d.reason.startswith("bomb")


def command_message(data: object, *, cid: str = "gw1:db0:900",
                    created_at: str = "2026-11-18T10:00:00Z") -> tuple[str, bytes]:
    """A hub's command-result item (issue 16) as one message on the data topic."""
    env = {"schema": "edge-gateway/1", "id": cid, "gateway": "gw1", "site": "home",
           "kind": "command", "patient": "p1", "created_at": created_at,
           "sent_at": created_at, "format": "json", "data": data}
    return "edge-gateway/home/gw1/p1/command", json.dumps(env).encode()


GOOD_COMMAND = {"command_id": "c-1", "command": "alert.ack", "status": "applied",
                "reason": None, "actor": "dr.lee", "applied_at": "2026-11-18T10:00:00Z"}


def test_command_result_is_an_item_of_kind_command() -> None:
    d = decode.classify(*command_message(GOOD_COMMAND))
    assert isinstance(d, decode.DataMessage), d
    assert d.kind == "command" and d.alerts == ()
    assert [(r.id, r.kind, json.loads(r.data)) for r in d.items] == [
        ("gw1:db0:900", "command", GOOD_COMMAND)]


def test_a_command_rejected_unread_has_no_command_name() -> None:
    rejected = {**GOOD_COMMAND, "command": None, "status": "rejected", "reason": "bad signature"}
    assert isinstance(decode.classify(*command_message(rejected)), decode.DataMessage)
    applied = {**GOOD_COMMAND, "command": None}
    assert isinstance(decode.classify(*command_message(applied)), decode.DeadLetter)


@pytest.mark.parametrize("body", [b'{"v":1,"id":"9f2c","sig":"..."}', b""])
def test_console_commands_on_the_prefix_are_neither_data_nor_dead_letters(body: bytes) -> None:
    """The ingest's subscription covers <prefix>/#, so it sees each command the console
    publishes to a hub, and the empty message that clears it."""
    d = decode.classify("edge-gateway/home/gw1/cmd/9f2c0b6d4e8a4c1f9a0b1c2d3e4f5a6b", body)
    assert isinstance(d, decode.CommandEcho), d
    # A patient called "cmd" still has data topics: they end in a kind.
    m = hub_messages("gw1", hub_items("gw1", 1, patient="cmd"))[0]
    assert m.topic.endswith("/cmd/summary")
    assert isinstance(decode.classify(m.topic, m.payload), decode.DataMessage)


@pytest.mark.parametrize(("change", "reason"), [
    ({"command": "reboot"}, "schema"),
    ({"status": "done"}, "schema"),
    ({"command_id": None}, "envelope"),
    ({"applied_at": "2026-11-18T10:00:00"}, "envelope"),
    ({"actor": 7}, "envelope"),
])
def test_malformed_command_results_become_dead_letters(change: dict[str, object],
                                                       reason: str) -> None:
    d = decode.classify(*command_message({**GOOD_COMMAND, **change}))
    assert isinstance(d, decode.DeadLetter) and d.reason.split(":")[0] == reason, d
    assert isinstance(decode.classify(*command_message("applied")), decode.DeadLetter)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(1 << 80), max_value=1 << 80)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)


def _with_stdlib_only(topic: str, raw: bytes, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as m:
        m.setattr(decode, "orjson", None)
        return decode.classify(topic, raw)


@settings(max_examples=150, deadline=None)
@given(data=_JSON)
def test_orjson_fast_path_stores_exactly_what_json_would(data: object) -> None:
    """Big integers (orjson would make floats of them), floats, unicode: the same rows."""
    raw = _env(data=data)
    with pytest.MonkeyPatch.context() as mp:
        plain = _with_stdlib_only(TOPIC, raw, mp)
    fast = decode.classify(TOPIC, raw)
    assert type(fast) is type(plain)
    if isinstance(fast, decode.DataMessage) and isinstance(plain, decode.DataMessage):
        # The text may differ (orjson writes 6.1e-05 as 0.000061): the same jsonb value,
        # integers kept as integers (json.dumps tells 1 from 1.0, == does not).
        def norm(text: str) -> str:
            return json.dumps(json.loads(text))

        assert [norm(r.data) for r in fast.items] == [norm(r.data) for r in plain.items] == [
            json.dumps(data)]
        assert fast.items[0].id == plain.items[0].id
    else:
        assert fast == plain


@pytest.mark.parametrize(("value", "encoding"), [
    ("123456789012345678901234567890", "utf-8"),  # orjson reads a float, json the integer
    ("1e400", "utf-8"),  # orjson refuses; json reads inf (PostgreSQL then refuses it)
    ('"\\ud800"', "utf-8"),  # a lone surrogate: orjson refuses, json reads it
    ('"caf\u00e9"', "utf-16"),  # json detects UTF-16, orjson does not
    ("[" * 300 + "]" * 300, "utf-8"),  # deeper than orjson writes
])
def test_what_orjson_reads_differently_goes_through_json(value: str, encoding: str) -> None:
    text = json.dumps(json.loads(_env(data=None))).replace('"data": null', f'"data": {value}')
    raw = text.encode(encoding)
    with pytest.MonkeyPatch.context() as mp:
        plain = _with_stdlib_only(TOPIC, raw, mp)
    assert decode.classify(TOPIC, raw) == plain
    if value.isdigit():
        assert isinstance(plain, decode.DataMessage) and plain.items[0].data == value
