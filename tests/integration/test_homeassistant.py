"""Home Assistant discovery against a real mosquitto: retained configs and states, one device
per patient via the hub, units, expire_after, availability, no history replay, removal."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mosquitto import Broker, Subscriber, running_broker, subscriber

from edge_gateway.config import Config, GatewaySection, HomeAssistantSection, with_broker
from edge_gateway.reading import Reading, Summary
from edge_gateway.store import Store
from edge_gateway.store import alerts as alert_rows
from edge_gateway.store import devices as device_rows
from edge_gateway.store import summaries as summary_rows
from edge_gateway.sync.homeassistant import HomeAssistantBridge, broker_settings


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with running_broker(tmp_path / "mq") as b:
        yield b


def config(broker: Broker, **ha: Any) -> Config:
    cfg = with_broker(Config(gateway=GatewaySection(id="hub1", site="home")), broker.url)
    return dataclasses.replace(cfg, homeassistant=HomeAssistantSection(enabled=True, **ha))


def retained(sub: Subscriber) -> dict[str, Any]:
    """The last message per topic (None for an empty, i.e. deleted, retained message)."""
    out: dict[str, Any] = {}
    for m in sub.snapshot():
        out[m.topic] = json.loads(m.payload) if m.payload else None
    return out


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "gw.db")
    s.add_patient("alice", "Alice")
    s.add_patient("bob", "Bob")
    s.upsert_device("cgm-1", profile="cgm", name="CGM", patient_id="alice")
    s.upsert_device("cuff", profile="blood_pressure", name="Cuff", patient_id="bob")
    s.update_device_state("cgm-1", battery_pct=64.0)
    now = datetime.now(UTC)
    # A CGM's 14-day backfill (every 5 min), newest last; and a cuff reading in kPa.
    s.add_readings([Reading("cgm-1", "2aa7", "cgm_glucose", 90.0 + i % 40, "mg/dL",
                            now - timedelta(minutes=5 * (4032 - i)), now, f"sess:a:off:{i}",
                            patient_id="alice", extra={"trend_mg_dl_per_min": 1.5})
                    for i in range(4032)])
    s.add_readings([Reading("cuff", "2a35", "bp_systolic", 16.0, "kPa", now, now, "seq:1",
                            patient_id="bob")])
    summary_rows.add(s, Summary("alice", "rhythm", now - timedelta(minutes=5), now,
                                {"af_burden_pct": 12.5}, 0.9, "rhythm/1", now))
    alert_rows.insert(s, {"patient_id": "alice", "rule": "glucose_low", "key": "k1",
                          "severity": "urgent", "state": "raised", "message": "low",
                          "raised_at": now.isoformat(), "updated_at": now.isoformat()})
    yield s
    s.close()


def run_bridge(bridge: HomeAssistantBridge, during: Any) -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(bridge.run(stop))
        try:
            await during()
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    asyncio.run(scenario())


async def until(pred: Any, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while loop.time() < end:
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


def test_discovery_configs_states_and_availability(broker: Broker, store: Store) -> None:
    cfg = config(broker)
    mqtt = broker_settings(cfg)
    assert mqtt is not None and mqtt.port == broker.port and mqtt.client_id.endswith("-ha")
    bridge = HomeAssistantBridge(store, cfg, mqtt, poll_s=0.2)
    with subscriber(broker, topic="#", client_id="ha-test") as sub:
        conf = "homeassistant/sensor/hub1/alice_cgm_glucose/config"
        state = "edge-gateway/home/hub1/ha/alice/cgm_glucose"

        async def during() -> None:
            await until(lambda: state in retained(sub))
            # A live reading newer than the backfill replaces the state...
            t = datetime.now(UTC) + timedelta(minutes=1)
            store.add_readings([Reading("cgm-1", "2aa7", "cgm_glucose", 180.0, "mg/dL", t, t,
                                        "sess:a:off:live", patient_id="alice",
                                        extra={"trend_mg_dl_per_min": -2.5})])
            await until(lambda: (retained(sub).get(state) or {}).get("value") == 180.0)
            # ... an old backfilled one never does.
            old = t - timedelta(days=3)
            store.add_readings([Reading("cgm-1", "2aa7", "cgm_glucose", 55.0, "mg/dL", old,
                                        old, "sess:a:off:old", patient_id="alice")])
            await asyncio.sleep(0.6)

        run_bridge(bridge, during)
        sub.wait_for(lambda: (retained(sub).get("edge-gateway/home/hub1/status") or {}).get(
            "status") == "offline", 5, "offline status")
        got = retained(sub)
        msgs = sub.snapshot()

    c = got[conf]
    assert c["unique_id"] == "edge_gateway_hub1_alice_cgm_glucose"
    assert c["unit_of_measurement"] == "mg/dL" and c["state_class"] == "measurement"
    assert "device_class" not in c  # HA 2024.3 has no blood glucose class
    assert c["expire_after"] == 1200
    assert c["state_topic"] == state and c["value_template"] == "{{ value_json.value }}"
    assert c["availability_topic"] == "edge-gateway/home/hub1/status"
    assert c["availability_template"] == "{{ value_json.status }}"
    assert c["device"] == {"identifiers": ["edge_gateway_hub1_alice"], "name": "Alice",
                           "model": "edge-gateway patient", "manufacturer": "edge-gateway",
                           "via_device": "edge_gateway_hub1"}
    hub = got["homeassistant/binary_sensor/hub1/hub_status/config"]
    assert hub["device"]["identifiers"] == ["edge_gateway_hub1"]
    assert hub["device_class"] == "connectivity"
    # Units in HA's strings, converted where stored differently (kPa -> mmHg).
    bp = got["homeassistant/sensor/hub1/bob_bp_systolic/config"]
    assert bp["unit_of_measurement"] == "mmHg" and bp["expire_after"] == 36 * 3600
    assert got["edge-gateway/home/hub1/ha/bob/bp_systolic"]["value"] == 120.0
    assert bp["device"]["name"] == "Bob"
    # Trend arrow, AF burden, battery, alerts.
    assert got["edge-gateway/home/hub1/ha/alice/glucose_trend"]["direction"] == "SingleDown"
    assert got["edge-gateway/home/hub1/ha/alice/glucose_trend"]["value"] == "↓"
    assert got["edge-gateway/home/hub1/ha/alice/af_burden"]["value"] == 12.5
    batt = got["homeassistant/sensor/hub1/alice_battery_cgm_1/config"]
    assert batt["device_class"] == "battery" and batt["unit_of_measurement"] == "%"
    assert got["edge-gateway/home/hub1/ha/alice/battery_cgm_1"]["value"] == 64
    assert got["homeassistant/binary_sensor/hub1/alice_alert_glucose_low/config"][
        "device_class"] == "problem"
    assert got["edge-gateway/home/hub1/ha/alice/alert_glucose_low"]["value"] == "ON"
    assert got["edge-gateway/home/hub1/ha/bob/alert"]["value"] == "OFF"
    # The backfill was not replayed: one state before the live one, and the old value
    # that arrived later never shows.
    cgm_states = [json.loads(m.payload)["value"] for m in msgs if m.topic == state]
    assert cgm_states == [cgm_states[0], 180.0] and 55.0 not in cgm_states


def test_filtered_or_removed_patients_get_empty_retained_configs(
        broker: Broker, store: Store) -> None:
    cfg = config(broker)
    mqtt = broker_settings(cfg)
    assert mqtt is not None
    conf = "homeassistant/sensor/hub1/bob_bp_systolic/config"
    with subscriber(broker, topic="homeassistant/#", client_id="ha-test2") as sub:
        bridge = HomeAssistantBridge(store, cfg, mqtt, poll_s=0.2)

        async def during() -> None:
            await until(lambda: retained(sub).get(conf) is not None)
            device_rows.disable(store, "cgm-1")  # a device removed: its battery goes
            await until(lambda: retained(sub).get(
                "homeassistant/sensor/hub1/alice_battery_cgm_1/config", 1) is None)

        run_bridge(bridge, during)
        # A restart with only alice shown: bob's entities are removed although this
        # process never published them (the set of configs is remembered in the database).
        only = config(broker, patients=("alice",))
        again = HomeAssistantBridge(store, only, mqtt, poll_s=0.2)

        async def later() -> None:
            await until(lambda: conf in retained(sub) and retained(sub)[conf] is None)

        run_bridge(again, later)
        got = retained(sub)
    assert got[conf] is None
    assert got["homeassistant/sensor/hub1/alice_cgm_glucose/config"] is not None
