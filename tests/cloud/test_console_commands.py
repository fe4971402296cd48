"""The console's side of commands, over a real mosquitto and PostgreSQL.

A threshold change becomes one signed, retained QoS 1 message with an MQTT 5 expiry on the
gateway's command topic; a hub's result (a ``command`` item landed by the ingest) marks it
done and clears the retained message; no result before the expiry -> expired and cleared; a
broker that is away only delays the publish.  (The hub's refusals of bad signatures, other
gateways, expired commands and replays: tests/integration/test_console_commands.py.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as paho
import pytest
from conftest import wait_until
from console_helpers import Hub, add_user, csrf_of, login, query, served
from mosquitto import Broker
from paho.mqtt.enums import CallbackAPIVersion

from edge_gateway import commands as C
from edge_gateway.cloud.console.app import Settings
from edge_gateway.cloud.console.commander import Commander

PRIV, PUB = C.generate_keypair()


class Retained:
    """Connects fresh and collects what the broker holds retained on command topics."""

    def __init__(self, broker: Broker) -> None:
        self.got: list[Any] = []
        self.done = threading.Event()
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id="peek", protocol=paho.MQTTv5)
        self.c.on_message = lambda _c, _u, m: self.got.append(m)
        self.c.connect("127.0.0.1", broker.port)
        self.c.subscribe("edge-gateway/+/+/cmd/+", qos=1)
        self.c.loop_start()
        time.sleep(0.8)
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def console(pg_dsn: str, broker: Broker) -> Iterator[tuple[str, str, Broker, Commander]]:
    now = datetime.now(UTC)
    hub = Hub("gw-7", "village-7")
    hub.alert("rosa", 12, "glucose_low", "urgent", "raised", "glucose 60 mg/dL",
              now - timedelta(hours=1))
    hub.land(pg_dsn)
    add_user(pg_dsn, "dr-ada", "clinician", ["village-7"])
    commander = Commander(PRIV, broker=broker.url, prefix="edge-gateway", ttl_s=600)
    assert commander.connected.wait(10)
    with served(Settings(dsn=pg_dsn, commander=commander, pump_interval_s=0.2)) as s:
        yield pg_dsn, s.url, broker, commander


def _send_threshold(url: str, value: str = "65 mg/dL") -> int:
    c = login(url, "dr-ada")
    page = c.get("/patients/gw-7/rosa").text
    r = c.post("/patients/gw-7/rosa/threshold",
               data={"csrf_token": csrf_of(page), "key": "glucose.low_l1", "value": value})
    return r.status_code


def test_a_command_is_signed_retained_with_expiry_and_cleared_by_the_result(
        console: tuple[str, str, Broker, Commander]) -> None:
    dsn, url, broker, _ = console
    assert _send_threshold(url) == 303
    wait_until(lambda: query(dsn, "SELECT status FROM edge_gateway.console_commands")
               == [("sent",)], 10, "the command to be published")
    [msg] = Retained(broker).got
    assert msg.retain and msg.qos == 1
    [(cid,)] = query(dsn, "SELECT id FROM edge_gateway.console_commands")
    assert msg.topic == f"edge-gateway/village-7/gw-7/cmd/{cid}"
    expiry = msg.properties.MessageExpiryInterval
    assert 590 <= expiry <= 600
    cmd = C.verify(msg.payload, PUB, gateway="gw-7", site="village-7", topic_command_id=cid,
                   now=datetime.now(UTC))
    assert cmd["command"] == "threshold.set" and cmd["actor"] == "dr-ada"
    assert cmd["args"] == {"key": "glucose.low_l1", "value": "65 mg/dL"}
    assert cmd["patient"] == "rosa"
    # The hub's result arrives through the ingest: applied, and the retained message goes.
    hub = Hub("gw-7", "village-7")
    hub.seq = 100
    hub.command_result("rosa", cid, "applied")
    hub.land(dsn)
    wait_until(lambda: query(dsn, "SELECT status, cleared_at IS NOT NULL"
                                  " FROM edge_gateway.console_commands") == [("applied", True)],
               10, "the command to be applied and cleared")
    assert Retained(broker).got == []
    page = login(url, "dr-ada").get("/patients/gw-7/rosa").text
    assert 'class="status applied"' in page
    [(detail,)] = query(dsn, "SELECT detail FROM edge_gateway.console_audit"
                             " WHERE action = 'command.threshold.set'")
    assert detail["command_id"] == cid


def test_a_rejection_is_shown_with_its_reason(console: tuple[str, str, Broker, Commander]
                                             ) -> None:
    dsn, url, _broker, _ = console
    assert _send_threshold(url) == 303
    [(cid,)] = query(dsn, "SELECT id FROM edge_gateway.console_commands")
    hub = Hub("gw-7", "village-7")
    hub.seq = 200
    hub.command_result("rosa", cid, "rejected", "glucose.low_l1 must stay above low_l2")
    hub.land(dsn)
    wait_until(lambda: query(dsn, "SELECT status, reason FROM edge_gateway.console_commands")
               == [("rejected", "glucose.low_l1 must stay above low_l2")], 10, "rejection")
    assert "must stay above low_l2" in login(url, "dr-ada").get("/patients/gw-7/rosa").text


def test_without_a_result_the_command_expires_and_is_cleared(
        console: tuple[str, str, Broker, Commander]) -> None:
    dsn, url, broker, commander = console
    commander.ttl_s = 2.0
    assert _send_threshold(url) == 303
    wait_until(lambda: query(dsn, "SELECT status, cleared_at IS NOT NULL"
                                  " FROM edge_gateway.console_commands") == [("expired", True)],
               15, "the command to expire")
    assert Retained(broker).got == []


def test_a_broker_that_is_away_only_delays_the_command(
        console: tuple[str, str, Broker, Commander]) -> None:
    dsn, url, broker, commander = console
    broker.stop()
    wait_until(lambda: not commander.connected.is_set(), 10, "the console to notice")
    assert _send_threshold(url) == 303  # the clinician is not kept waiting
    time.sleep(1.0)
    assert query(dsn, "SELECT status FROM edge_gateway.console_commands") == [("pending",)]
    broker.start()
    wait_until(lambda: query(dsn, "SELECT status FROM edge_gateway.console_commands")
               == [("sent",)], 40, "the command to be published after the broker is back")
    assert len(Retained(broker).got) == 1


def test_a_threshold_the_hub_would_refuse_is_refused_at_once(
        console: tuple[str, str, Broker, Commander]) -> None:
    dsn, url, _broker, _ = console
    assert _send_threshold(url, "65 parsecs") == 400
    assert _send_threshold(url, "5 mg/dL") == 400  # outside the plausible range
    assert query(dsn, "SELECT count(*) FROM edge_gateway.console_commands") == [(0,)]
