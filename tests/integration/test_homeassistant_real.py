"""Discovery read back by a real Home Assistant (``make test-ha``; about 10 s once installed).

Home Assistant core 2024.3.3 (the newest release for Python 3.11) runs headless from its own
venv outside the repository (``scripts/ha-venv.sh``, ~700 MB; ``HA_VENV``, default
``/tmp/ha-venv``) with ``hass -c DIR --skip-pip``.  The test creates the owner and a token
through the onboarding API, the MQTT entry through the config-flow API (pointed at a mosquitto
it starts), runs the bridge, and reads the entities back through the REST API: units, device
grouping (patient device via the hub), a value, and availability when the gateway stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mosquitto import Broker, free_port, running_broker

from edge_gateway.config import Config, GatewaySection, HomeAssistantSection, with_broker
from edge_gateway.reading import Reading
from edge_gateway.store import Store
from edge_gateway.sync.homeassistant import HomeAssistantBridge, broker_settings

pytestmark = pytest.mark.homeassistant

HA_VENV = Path(os.environ.get("HA_VENV", "/tmp/ha-venv"))
CONFIG = """homeassistant:
  name: edge-gateway test
  latitude: 52.5
  longitude: 13.4
  elevation: 0
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: DE
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
config:
onboarding:
logger:
  default: warning
"""


class Hass:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.dir = workdir
        self.token = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        hass = HA_VENV / "bin" / "hass"
        if not hass.exists():
            pytest.fail(f"no Home Assistant at {HA_VENV}: run `make test-ha` (it installs it"
                        " with scripts/ha-venv.sh)")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "configuration.yaml").write_text(CONFIG.format(port=self.port))
        self.log = (self.dir / "hass.out").open("wb")
        self.proc = subprocess.Popen([str(hass), "-c", str(self.dir), "--skip-pip"],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def request(self, method: str, path: str, body: Any = None, *, form: bool = False,
                auth: bool = True) -> Any:
        headers = {}
        data = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers=headers)
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read().decode()
        try:
            return json.loads(text)
        except ValueError:
            return text

    def wait_up(self, timeout_s: float = 240.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError("hass exited:\n" + self.tail())
            if "Setup failed for 'frontend'" in self.tail():  # recovery mode: a missing package
                raise AssertionError("hass could not start its frontend:\n" + self.tail())
            try:
                self.request("GET", "/api/onboarding", auth=False)
                return
            except urllib.error.HTTPError as err:  # up, but without onboarding: recovery mode
                raise AssertionError(f"hass answered {err.code}:\n" + self.tail()) from None
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise AssertionError("hass did not start:\n" + self.tail())

    def tail(self) -> str:
        return (self.dir / "hass.out").read_text(errors="replace")[-4000:]

    def onboard(self) -> None:
        client_id = self.base + "/"
        user = self.request("POST", "/api/onboarding/users", {
            "client_id": client_id, "name": "Owner", "username": "owner",
            "password": "owner-password-123", "language": "en"}, auth=False)
        token = self.request("POST", "/auth/token", {
            "grant_type": "authorization_code", "code": user["auth_code"],
            "client_id": client_id}, form=True, auth=False)
        self.token = token["access_token"]

    def add_mqtt(self, broker: Broker) -> None:
        flow = self.request("POST", "/api/config/config_entries/flow",
                            {"handler": "mqtt", "show_advanced_options": False})
        if flow.get("step_id") != "broker":
            raise AssertionError(f"unexpected MQTT flow: {flow}")
        done = self.request("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
                            {"broker": "127.0.0.1", "port": broker.port})
        assert done.get("type") == "create_entry", done

    def state(self, entity_id: str) -> dict[str, Any] | None:
        try:
            out: dict[str, Any] = self.request("GET", f"/api/states/{entity_id}")
            return out
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    def template(self, text: str) -> str:
        return str(self.request("POST", "/api/template", {"template": text}))


@pytest.fixture
def hass(tmp_path: Path) -> Iterator[Hass]:
    h = Hass(tmp_path / "hass")
    h.start()
    try:
        yield h
    finally:
        h.stop()


def wait(pred: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_home_assistant_shows_the_patients_devices(tmp_path: Path, hass: Hass) -> None:
    with running_broker(tmp_path / "mq") as broker:
        store = Store.open(tmp_path / "gw.db")
        store.add_patient("alice", "Alice")
        store.upsert_device("cgm-1", profile="cgm", name="CGM", patient_id="alice")
        store.update_device_state("cgm-1", battery_pct=64.0)
        now = datetime.now(UTC)
        store.add_readings([
            Reading("cgm-1", "2aa7", "cgm_glucose", 123.0, "mg/dL", now, now, "sess:a:off:0",
                    patient_id="alice", extra={"trend_mg_dl_per_min": 0.2}),
            Reading("cuff", "2a35", "bp_systolic", 16.0, "kPa", now - timedelta(hours=3), now,
                    "seq:1", patient_id="alice"),
            Reading("strap", "2a37", "heart_rate", 61.0, "/min", now, now, "rx:1",
                    patient_id="alice"),
        ])
        cfg = dataclasses.replace(
            with_broker(Config(gateway=GatewaySection(id="hub1", site="home")), broker.url),
            homeassistant=HomeAssistantSection(enabled=True))
        mqtt = broker_settings(cfg)
        assert mqtt is not None
        hass.wait_up()
        hass.onboard()
        hass.add_mqtt(broker)

        async def scenario() -> dict[str, Any]:
            stop = asyncio.Event()
            bridge = HomeAssistantBridge(store, cfg, mqtt, poll_s=0.5)
            task = asyncio.create_task(bridge.run(stop))
            seen: dict[str, Any] = {}
            try:
                cgm = await asyncio.to_thread(
                    wait, lambda: (s := hass.state("sensor.alice_cgm_glucose")) and
                    s["state"] not in ("unknown", "unavailable") and s, 90, "the CGM entity")
                seen["cgm"] = cgm
                for e in ("sensor.alice_bp_systolic", "sensor.alice_heart_rate",
                          "sensor.alice_glucose_trend", "sensor.alice_battery_cgm_1",
                          "binary_sensor.hub1_status", "binary_sensor.alice_alert"):
                    seen[e] = await asyncio.to_thread(
                        wait, lambda e=e: hass.state(e), 30, e)
                seen["device"] = await asyncio.to_thread(
                    hass.template, "{{ device_attr(device_id('sensor.alice_cgm_glucose'),"
                    " 'name') }}|{{ device_attr(device_id('sensor.alice_cgm_glucose'),"
                    " 'via_device_id') == device_id('binary_sensor.hub1_status') }}")
            finally:
                stop.set()
                await asyncio.wait_for(task, 15)
            seen["after_stop"] = await asyncio.to_thread(
                wait, lambda: (s := hass.state("sensor.alice_cgm_glucose")) and
                s["state"] == "unavailable" and s, 30, "unavailable after the gateway stops")
            return seen

        seen = asyncio.run(scenario())
        store.close()
    cgm = seen["cgm"]
    assert cgm["state"] == "123.0"
    assert cgm["attributes"]["unit_of_measurement"] == "mg/dL"
    assert cgm["attributes"]["state_class"] == "measurement"
    assert seen["sensor.alice_bp_systolic"]["attributes"]["unit_of_measurement"] == "mmHg"
    assert float(seen["sensor.alice_bp_systolic"]["state"]) == 120.0
    assert seen["sensor.alice_heart_rate"]["attributes"]["unit_of_measurement"] == "bpm"
    assert seen["sensor.alice_glucose_trend"]["state"] == "→"
    assert seen["sensor.alice_battery_cgm_1"]["attributes"]["device_class"] == "battery"
    assert seen["binary_sensor.alice_alert"]["state"] == "off"
    assert seen["device"] == "Alice|True"
    assert seen["after_stop"]["state"] == "unavailable"
