"""The console -> hub command contract (edge_gateway/commands.py): signing and every refusal."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from edge_gateway import commands as C
from edge_gateway.commands import CommandRefused

NOW = datetime(2026, 12, 5, 12, 0, 0, 123456, tzinfo=UTC)
PRIV, PUB = C.generate_keypair()


def _cmd(**over: Any) -> dict[str, Any]:
    kw: dict[str, Any] = dict(command="alert.ack", gateway="gw1", site="s1", patient="p1",
                              args={"alert_id": 7, "key": "af:p1"}, actor="dr.bianchi",
                              issued_at=NOW, ttl_s=3600, command_id="c0ffee")
    kw.update(over)
    return C.new_command(**kw)


def _verify(payload: bytes, **over: Any) -> dict[str, Any]:
    kw: dict[str, Any] = dict(gateway="gw1", site="s1", topic_command_id="c0ffee",
                              now=NOW + timedelta(seconds=1))
    kw.update(over)
    return C.verify(payload, PUB, **kw)


def _refusal(payload: bytes, **over: Any) -> CommandRefused:
    with pytest.raises(CommandRefused) as err:
        _verify(payload, **over)
    return err.value


def test_round_trip() -> None:
    cmd = _cmd()
    assert cmd["issued_at"] == "2026-12-05T12:00:00.123456Z"
    assert cmd["expires_at"] == "2026-12-05T13:00:00.123456Z"
    assert _verify(C.sign(cmd, PRIV)) == cmd
    assert C.public_key_of(PRIV) == PUB
    assert len(base64.b64decode(PUB)) == 32


def test_topic_and_default_id() -> None:
    assert C.command_topic("eg", "s1", "gw1", "abc") == "eg/s1/gw1/cmd/abc"
    a, b = _cmd(command_id=None), _cmd(command_id=None)
    assert a["id"] != b["id"] and len(a["id"]) == 32 and int(a["id"], 16) >= 0


def test_canonical_bytes_are_stable() -> None:
    cmd = _cmd(patient="Zoë")
    expected = (
        '{"actor":"dr.bianchi","args":{"alert_id":7,"key":"af:p1"},"command":"alert.ack",'
        '"expires_at":"2026-12-05T13:00:00.123456Z","gateway":"gw1","id":"c0ffee",'
        '"issued_at":"2026-12-05T12:00:00.123456Z","patient":"Zoë","site":"s1","v":1}'
    ).encode()
    assert C.canonical_bytes(cmd) == expected
    # Key order and a sig field change nothing.
    shuffled = dict(reversed(list(cmd.items())))
    assert C.canonical_bytes({**shuffled, "sig": "xx"}) == expected
    # Non-UTC issue times are written in UTC.
    cet = timezone(timedelta(hours=1))
    assert _cmd(issued_at=NOW.astimezone(cet))["issued_at"] == cmd["issued_at"]


@pytest.mark.parametrize("field,value", [
    ("patient", "p2"), ("actor", "mallory"), ("expires_at", "2027-12-05T13:00:00.123456Z"),
    ("args", {"alert_id": 8, "key": "af:p1"}), ("command", "threshold.reset"),
])
def test_a_tampered_field_is_a_bad_signature(field: str, value: Any) -> None:
    doc = json.loads(C.sign(_cmd(), PRIV))
    doc[field] = value
    if field == "command":
        doc["args"] = {"key": None}
    err = _refusal(json.dumps(doc).encode())
    assert err.reason == "bad signature"
    assert err.command["id"] == "c0ffee" and not err.signed


def test_another_consoles_key_is_a_bad_signature() -> None:
    other, _ = C.generate_keypair()
    assert _refusal(C.sign(_cmd(), other)).reason == "bad signature"


def test_wrong_gateway_site_and_topic_id() -> None:
    payload = C.sign(_cmd(), PRIV)
    assert _refusal(payload, gateway="gw2").reason == "wrong gateway"
    assert _refusal(payload, gateway="gw2").signed
    assert _refusal(payload, site="s2").reason == "wrong site"
    assert _refusal(payload, topic_command_id="other").reason == "id does not match the topic"


def test_expired() -> None:
    payload = C.sign(_cmd(ttl_s=60), PRIV)
    assert _verify(payload, now=NOW + timedelta(seconds=59))["id"] == "c0ffee"
    err = _refusal(payload, now=NOW + timedelta(seconds=60))
    assert err.reason == "expired"
    assert err.command == {"id": "c0ffee", "command": "alert.ack", "patient": "p1",
                           "actor": "dr.bianchi"}


@pytest.mark.parametrize("payload,reason", [
    (b"\xff\xfe", "malformed: not JSON"),
    (b"{not json", "malformed: not JSON"),
    (b"[1, 2]", "malformed: not a JSON object"),
    (b"x" * (C.MAX_PAYLOAD + 1), "malformed: 16385 bytes"),
])
def test_junk_is_malformed(payload: bytes, reason: str) -> None:
    assert _refusal(payload).reason.startswith(reason)


def _signed_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(C.sign(_cmd(), PRIV))
    return doc


@pytest.mark.parametrize("mutate,reason", [
    (lambda d: d.pop("patient"), "malformed: missing patient"),
    (lambda d: d.pop("sig"), "malformed: no sig"),
    (lambda d: d.update(sig="!!"), "malformed: sig is not base64"),
    (lambda d: d.update(extra=1), "malformed: unknown field extra"),
    (lambda d: d.update(v=2), "malformed: version 2"),
    (lambda d: d.update(v=True), "malformed: v must be int"),
    (lambda d: d.update(id="a/b"), "malformed: id must be usable"),
    (lambda d: d.update(command="reboot"), "malformed: unknown command 'reboot'"),
    (lambda d: d.update(args={"alert_id": "7", "key": "k"}), "malformed: alert.ack alert_id"),
    (lambda d: d.update(args={"key": "k"}), "malformed: alert.ack takes args"),
    (lambda d: d.update(issued_at="yesterday"), "malformed: issued_at 'yesterday'"),
    (lambda d: d.update(expires_at=d["issued_at"]), "malformed: expires_at is not after"),
])
def test_missing_and_bad_fields(mutate: Any, reason: str) -> None:
    doc = _signed_doc()
    mutate(doc)
    assert _refusal(json.dumps(doc).encode()).reason.startswith(reason)


def test_new_command_validates() -> None:
    with pytest.raises(CommandRefused, match="unknown command"):
        _cmd(command="reboot")
    with pytest.raises(CommandRefused, match=r"threshold\.set takes args"):
        _cmd(command="threshold.set", args={"key": "glucose.low"})
    with pytest.raises(CommandRefused, match="ttl_s must be positive"):
        _cmd(ttl_s=0)
    with pytest.raises(CommandRefused, match="naive"):
        _cmd(issued_at=NOW.replace(tzinfo=None))
    ok = _cmd(command="threshold.set", args={"key": "glucose.low", "value": "65 mg/dL"})
    assert _verify(C.sign(ok, PRIV))["args"] == {"key": "glucose.low", "value": "65 mg/dL"}
    reset = _cmd(command="threshold.reset", args={"key": None})
    assert _verify(C.sign(reset, PRIV))["args"] == {"key": None}


def test_a_bad_console_key_is_named() -> None:
    payload = C.sign(_cmd(), PRIV)
    with pytest.raises(CommandRefused, match=r"console key .* unusable: not valid base64"):
        C.verify(payload, "%%%", gateway="gw1", site="s1", topic_command_id="c0ffee", now=NOW)
    with pytest.raises(ValueError, match="32 bytes, this one is 3"):
        C.decode_public_key(base64.b64encode(b"abc").decode())
