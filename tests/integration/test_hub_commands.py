"""Signed console commands over a real mosquitto, applied by the hub's sync + applier.

The "console" here is a plain paho client publishing what ``edge_gateway.commands.sign`` makes,
retained, QoS 1, with an MQTT 5 message expiry, exactly as the contract says; the hub is the
daemon's ``SyncService`` with the runtime's ``CommandApplier`` wired in, on a real SQLite file.
What the caregiver sees is read through the CLI (``alerts list``, ``thresholds show``,
``sync status``, ``status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from click.testing import CliRunner
from mosquitto import Broker, Subscriber, need_mosquitto, until
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_gateway import commands as C
from edge_gateway.alerts.engine import AlertEngine
from edge_gateway.alerts.thresholds import ThresholdLoader
from edge_gateway.care import caregiver
from edge_gateway.cli import main
from edge_gateway.config import MqttSection, SyncSection
from edge_gateway.reading import Reading
from edge_gateway.runtime.commands import CommandApplier
from edge_gateway.store import Store
from edge_gateway.store import commands as command_rows
from edge_gateway.store.audit import entries as audit_entries
from edge_gateway.store.outbox import PRIORITY_SUMMARY, Outbox
from edge_gateway.sync.service import SyncService

FAST = SyncSection(batch_size=1, backoff_initial_s=0.2, backoff_max_s=1.0, interval_s=0.2)
PRIV, PUB = C.generate_keypair()
PREFIX = "edge-gateway"


class Console:
    """Publishes signed commands the way the clinic console does."""

    def __init__(self, broker: Broker) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="console",
                                  protocol=paho.MQTTv5)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def send(self, command: str, args: dict[str, Any], *, gateway: str = "gw1",
             topic_gateway: str = "gw1", key: bytes = PRIV, issued_at: datetime | None = None,
             ttl_s: float = 3600, expiry: bool = True, cid: str | None = None) -> str:
        cmd = C.new_command(command=command, gateway=gateway, site="home", patient="alice",
                            args=args, actor="dr.rossi", issued_at=issued_at or datetime.now(UTC),
                            ttl_s=ttl_s, command_id=cid)
        self.publish(C.command_topic(PREFIX, "home", topic_gateway, cmd["id"]),
                     C.sign(cmd, key), ttl_s if expiry else None)
        return str(cmd["id"])

    def publish(self, topic: str, body: bytes, expiry_s: float | None = None) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if expiry_s is not None:
            props.MessageExpiryInterval = int(expiry_s)
        self.client.publish(topic, body, qos=1, retain=True, properties=props).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def setup(tmp_path: Path) -> Iterator[tuple[Broker, Subscriber, Console, Store, int, str]]:
    need_mosquitto()
    broker = Broker(tmp_path / "broker").start()
    sub = Subscriber(broker, topic=f"{PREFIX}/+/+/+/command").start()
    console = Console(broker)
    store = Store.open(tmp_path / "gw.db")
    try:
        caregiver.add_patient(store, "alice", actor="test")
        engine = AlertEngine(store, ThresholdLoader(store))
        t0 = datetime.now(UTC)
        r = Reading(device_id="cgm", characteristic="c", kind="cgm_glucose", value=52.0,
                    unit="mg/dL", time=t0, received_at=t0, record_key="s:1",
                    patient_id="alice")
        store.add_readings([r])
        [raised] = [t for t in engine.on_readings([r]) if t.event == "raised"]
        assert raised.alert_id is not None
        yield broker, sub, console, store, raised.alert_id, raised.alert.key
    finally:
        console.close()
        sub.stop()
        store.close()
        broker.stop()


def hub(store: Store, broker: Broker) -> SyncService:
    mqtt = MqttSection(host="127.0.0.1", port=broker.port, client_id="gw1",
                       connect_timeout_s=2.0)
    applier = CommandApplier(store, public_key=PUB, gateway="gw1", site="home")
    return SyncService(store, mqtt, FAST, "gw1", "home", commands=applier.handle)


@contextlib.asynccontextmanager
async def running(svc: SyncService) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop, wake=asyncio.Event()), name="sync")
    try:
        yield
    finally:
        stop.set()
        await task


def cli(db: Path, *args: str) -> Any:
    res = CliRunner().invoke(main, ["--db", str(db), *args, "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def results(sub: Subscriber) -> list[dict[str, Any]]:
    return [m.envelope()["data"] for m in sub.snapshot()]


def test_an_offline_hub_applies_the_retained_ack_on_reconnect(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with setup(tmp_path) as (broker, sub, console, store, alert_id, key):
        # Published while the hub is offline: the broker keeps it retained.
        cid = console.send("alert.ack", {"alert_id": alert_id, "key": key})
        # A patient named "cmd": the hub's own data topic <prefix>/home/gw1/cmd/summary
        # matches its command filter, and must not come back to it as a command.
        Outbox(store).add("summary", {"kind": "hr"}, priority=PRIORITY_SUMMARY,
                          created_at=datetime.now(UTC), patient_id="cmd")
        svc = hub(store, broker)

        async def first_connection() -> None:
            async with running(svc):
                await until(lambda: len(results(sub)) == 1, 10, "the command's result")
                await until(lambda: svc.outbox.pending() == 0, 5, "the outbox to drain")

        asyncio.run(first_connection())
        assert command_rows.stats(store)["rejected"] == 0
        [msg] = sub.snapshot()
        assert msg.topic == f"{PREFIX}/home/gw1/alice/command"
        env = msg.envelope()
        assert env["kind"] == "command" and env["patient"] == "alice"
        assert env["data"]["command_id"] == cid and env["data"]["status"] == "applied"
        assert env["data"]["actor"] == "dr.rossi" and env["data"]["reason"] is None
        [a] = cli(store.path, "alerts", "list", "--patient", "alice")
        assert a["state"] == "acknowledged" and a["acknowledged_by"] == "console:dr.rossi"

        # Reconnect: the retained command comes again and is only counted as a replay.
        async def second_connection() -> None:
            async with running(hub(store, broker)):
                await until(lambda: command_rows.stats(store)["replayed"] >= 1, 10,
                            "the re-delivered command to be counted")

        asyncio.run(second_connection())
        assert len(results(sub)) == 1
        st = cli(store.path, "sync", "status")["commands"]
        assert (st["applied"], st["rejected"], st["expired"]) == (1, 0, 0)
        assert st["replayed"] >= 1
        # The console clears the retained message once it saw the result.
        console.publish(C.command_topic(PREFIX, "home", "gw1", cid), b"")

        # The key removed from the config: the session's old subscription still delivers, and
        # the hub drops what comes (acknowledged, not applied, not reported).
        async def keyless() -> None:
            mqtt = MqttSection(host="127.0.0.1", port=broker.port, client_id="gw1",
                               connect_timeout_s=2.0)
            svc = SyncService(store, mqtt, FAST, "gw1", "home")
            async with running(svc):
                await until(lambda: svc.connected, 5, "the keyless hub to connect")
                console.send("threshold.set", {"key": "glucose.low_l1", "value": "65 mg/dL"})
                await until(lambda: "pins no console key: dropped" in caplog.text, 5,
                            "the command to be dropped")

        with caplog.at_level(logging.WARNING, logger="edge_gateway.sync.service"):
            asyncio.run(keyless())
        rows = {r["key"]: r for r in cli(store.path, "thresholds", "show", "alice")}
        assert rows["glucose.low_l1"]["source"] == "default"
        assert len(results(sub)) == 1


def test_refusals_over_the_broker_and_a_threshold_change(tmp_path: Path) -> None:
    with setup(tmp_path) as (broker, sub, console, store, alert_id, key):
        svc = hub(store, broker)
        args = {"alert_id": alert_id, "key": key}
        other, _ = C.generate_keypair()

        async def scenario() -> dict[str, str]:
            sent: dict[str, str] = {}
            async with running(svc):
                await until(lambda: svc.connected, 5, "the hub to connect")
                await asyncio.sleep(0.3)  # its SUBACK
                sent["forged"] = console.send("alert.ack", args, key=other)
                sent["other_gateway"] = console.send("alert.ack", args, gateway="gw2")
                # Published on gw2's own topic: this hub never even receives it.
                console.send("alert.ack", args, gateway="gw2", topic_gateway="gw2")
                # A broker that ignores message expiry (or a hub clock ahead): expired.
                sent["expired"] = console.send(
                    "alert.ack", args, issued_at=datetime.now(UTC) - timedelta(hours=2),
                    ttl_s=60, expiry=False)
                sent["threshold"] = console.send(
                    "threshold.set", {"key": "glucose.low_l1", "value": "65 mg/dL"})
                await until(lambda: len(results(sub)) == 4, 10, "four results")
                # The same command published again: a replay, only counted.
                console.send("threshold.set", {"key": "glucose.low_l1", "value": "65 mg/dL"},
                             cid=sent["threshold"], issued_at=datetime.now(UTC))
                await until(lambda: command_rows.stats(store)["replayed"] >= 1, 5,
                            "the replay to be counted")
                await until(lambda: svc.outbox.pending() == 0, 5, "the outbox to drain")
            return sent

        sent = asyncio.run(scenario())
        by_id = {r["command_id"]: r for r in results(sub)}
        assert len(by_id) == 4
        assert (by_id[sent["forged"]]["status"], by_id[sent["forged"]]["reason"],
                by_id[sent["forged"]]["actor"]) == ("rejected", "bad signature", None)
        assert by_id[sent["other_gateway"]]["reason"] == "wrong gateway"
        assert by_id[sent["expired"]]["status"] == "expired"
        assert by_id[sent["threshold"]]["status"] == "applied"
        [a] = cli(store.path, "alerts", "list", "--patient", "alice")
        assert a["state"] == "raised"
        rows = {r["key"]: r for r in cli(store.path, "thresholds", "show", "alice")}
        assert rows["glucose.low_l1"]["value"] == "65 mg/dL"
        assert rows["glucose.low_l1"]["source"] == "patient"
        st = cli(store.path, "status")["commands"]
        assert (st["applied"], st["rejected"], st["expired"], st["replayed"]) == (1, 2, 1, 1)
        actions = [(e["actor"], e["action"]) for e in audit_entries(store, limit=20)]
        assert ("console:unverified", "command.rejected") in actions
        assert ("console:dr.rossi", "command.rejected") in actions  # wrong gateway, signed
        assert ("console:dr.rossi", "command.expired") in actions
        assert ("console:dr.rossi", "threshold.set") in actions


def test_the_daemon_applies_a_command_with_its_configured_key(tmp_path: Path,
                                                              cli_env: dict[str, str]) -> None:
    """``edge-gateway run`` with ``[commands] console_public_key``: subscribed, applied,
    reported; the log names the command topic."""
    with setup(tmp_path) as (broker, sub, console, store, alert_id, key):
        cfg = tmp_path / "gateway.toml"
        cfg.write_text(
            f'[gateway]\nid = "gw1"\nsite = "home"\n'
            f'[storage]\ndb_path = "{store.path}"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
            f'[sync]\ninterval_s = 0.2\nbackoff_initial_s = 0.2\n'
            f'[commands]\nconsole_public_key = "{PUB}"\n')
        cid = console.send("alert.ack", {"alert_id": alert_id, "key": key})
        log = tmp_path / "daemon.log"
        with log.open("wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "edge_gateway", "-c", str(cfg), "run"],
                                    env=cli_env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not results(sub):
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = log.read_text()
        assert "event=commands.enabled topic=edge-gateway/home/gw1/cmd/+" in text, text
        assert "Traceback" not in text
        [r] = results(sub)
        assert (r["command_id"], r["status"]) == (cid, "applied")
        [a] = cli(store.path, "alerts", "list", "--patient", "alice")
        assert a["acknowledged_by"] == "console:dr.rossi"
