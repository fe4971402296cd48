"""The pure decoder reads exactly what the hub's payload builder writes, and turns every kind of
bad message into a dead letter (never an exception)."""

from __future__ import annotations

import gzip
import json

import pytest
import zstandard
from conftest import hub_items, hub_messages

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
