"""The closed loop, end to end, with a real browser.

A hub (SQLite file, alert engine, the daemon's ``SyncService`` with its ``CommandApplier``
pinned to the console's public key) raises an AF alert and publishes it to a real mosquitto;
``cloud ingest`` lands it in PostgreSQL; Debian's Chromium, driven by Playwright, logs in to
the console, finds the patient with the AF alert on *Now*, opens the patient page and
acknowledges the alert; the console signs and publishes the command, the hub applies it and
reports back through its outbox, the ingest lands the result, the console marks the command
applied and clears the retained message — and the hub's own ``alerts list`` shows the alert
acknowledged by that clinician.

With ``EDGE_GATEWAY_SCREENSHOTS=1`` the pages are also saved under docs/img/ (checked by eye).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from click.testing import CliRunner
from conftest import Running, wait_until
from console_helpers import Hub, add_user, query, rich_patient, served
from mosquitto import Broker
from paho.mqtt.enums import CallbackAPIVersion

from edge_gateway import commands as C
from edge_gateway.alerts.engine import AlertEngine
from edge_gateway.alerts.thresholds import ThresholdLoader
from edge_gateway.care import caregiver
from edge_gateway.cli import main
from edge_gateway.cloud.console.app import Settings
from edge_gateway.cloud.console.commander import Commander
from edge_gateway.cloud.ingest import IngestOptions
from edge_gateway.config import MqttSection, SyncSection
from edge_gateway.reading import Summary
from edge_gateway.store import Store
from edge_gateway.store import summaries as summary_rows
from edge_gateway.store.outbox import enqueue_summary

CHROMIUM = Path("/usr/bin/chromium")
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
FAST = SyncSection(batch_size=20, backoff_initial_s=0.2, backoff_max_s=1.0, interval_s=0.2)


def need_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: `sh scripts/system-deps.sh` installs it")


class HubThread:
    """The hub's sync service (with the command applier) on its own event loop."""

    def __init__(self, store: Store, broker: Broker, public_key: str) -> None:
        from edge_gateway.runtime.commands import CommandApplier
        from edge_gateway.sync.service import SyncService

        mqtt = MqttSection(host="127.0.0.1", port=broker.port, client_id="gw-demo",
                           connect_timeout_s=2.0)
        applier = CommandApplier(store, public_key=public_key, gateway="gw-demo",
                                 site="village-1")
        self.svc = SyncService(store, mqtt, FAST, "gw-demo", "village-1",
                               commands=applier.handle)
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, name="hub", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self.stop_event = asyncio.Event()
            await self.svc.run(self.stop_event, wake=asyncio.Event())
        try:
            self.loop.run_until_complete(main())
        except BaseException as err:  # surfaced by stop()
            self.error = err
        finally:
            self.loop.close()

    def start(self) -> HubThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(20)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


def hub_cli(db: Path, *args: str) -> Any:
    res = CliRunner().invoke(main, ["--db", str(db), *args, "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def retained_commands(broker: Broker) -> list[str]:
    """Topics of retained command messages the broker still holds."""
    got: list[str] = []
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="peek", protocol=paho.MQTTv5)
    c.on_message = lambda _c, _u, m: got.append(m.topic) if m.payload else None
    c.connect("127.0.0.1", broker.port)
    c.subscribe("edge-gateway/+/+/cmd/+", qos=1)
    c.loop_start()
    time.sleep(1.0)
    c.disconnect()
    c.loop_stop()
    return got


@pytest.fixture
def hub_store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "gw.db")
    try:
        yield store
    finally:
        store.close()


def test_a_clinician_acknowledges_the_af_alert_and_the_hub_applies_it(
        pg_dsn: str, broker: Broker, hub_store: Store, tmp_path: Path) -> None:
    need_chromium()
    from playwright.sync_api import expect, sync_playwright

    private_pem, public = C.generate_keypair()
    # The hub: the demo patient, an AF episode in a rhythm summary -> the AF alert.
    caregiver.add_patient(hub_store, "demo", actor="test")
    now = datetime.now(UTC)
    s = Summary(patient_id="demo", kind="rhythm", window_start=now - timedelta(minutes=5),
                window_end=now, metrics={"n_beats": 420, "mean_hr_bpm": 96.0,
                                         "af_burden_pct": 62.0, "af_episodes": [
                                             {"start": (now - timedelta(minutes=4)).isoformat(),
                                              "end": now.isoformat(), "beats": 260}],
                                         "af_longest_episode_s": 240.0},
                coverage=0.98, algorithm="rhythm/3", created_at=now)
    with hub_store.transaction():
        sid = summary_rows.add(hub_store, s)
        enqueue_summary(hub_store, sid, s)
    engine = AlertEngine(hub_store, ThresholdLoader(hub_store))
    assert [t.event for t in engine.on_summary(s)] == ["raised"]
    # Another hub's richer history lands straight in PostgreSQL, for the other pages.
    other = Hub("gw-clinic", "village-1")
    rich_patient(other, "maria", now)
    other.land(pg_dsn)

    add_user(pg_dsn, "dr-ada", "clinician", ["village-1"])
    ingest = Running(IngestOptions(broker=broker.url, dsn=pg_dsn, client_id="ingest-1")).start()
    hub = HubThread(hub_store, broker, public).start()
    commander = Commander(private_pem, broker=broker.url, prefix="edge-gateway")
    settings = Settings(dsn=pg_dsn, commander=commander, pump_interval_s=0.3)
    try:
        wait_until(lambda: query(pg_dsn, "SELECT count(*) FROM edge_gateway.alerts"
                                         " WHERE rule = 'af' AND patient = 'demo'") == [(1,)],
                   30, "the hub's AF alert in PostgreSQL")
        with served(settings) as console, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            shots: list[tuple[str, str]] = []
            page.goto(console.url + "/")
            assert page.url.startswith(console.url + "/login")
            shots.append(("login", page.url))
            page.fill("input[name=username]", "dr-ada")
            page.fill("input[name=password]", "correct horse 1")
            page.click("button[type=submit]")
            page.wait_for_url(console.url + "/")
            row = page.locator("tr", has_text="Atrial fibrillation")
            expect(row).to_have_count(1)
            expect(row.locator("a", has_text="demo")).to_be_visible()
            shots.append(("now", page.url))
            row.locator("a", has_text="demo").click()
            page.wait_for_url(console.url + "/patients/gw-demo/demo")
            expect(page.locator("h1")).to_contain_text("demo")
            page.locator("#alerts tr", has_text="Atrial fibrillation").locator(
                "button", has_text="Acknowledge").click()
            page.wait_for_url(console.url + "/patients/gw-demo/demo#commands")
            deadline = time.monotonic() + 40
            while "applied" not in page.locator("#commands table").inner_text():
                assert time.monotonic() < deadline, page.locator("#commands").inner_text()
                time.sleep(0.5)
                page.reload()
            expect(page.locator("#commands .status.applied")).to_have_count(1)
            # The alert row follows once the hub's acknowledged event has landed.
            wait_until(lambda: query(pg_dsn, "SELECT state FROM edge_gateway.alerts"
                                             " WHERE patient = 'demo'") == [("acknowledged",)],
                       20, "the acknowledged alert in PostgreSQL")
            page.reload()
            expect(page.locator("#alerts tr", has_text="Atrial fibrillation")).to_contain_text(
                "acknowledged")
            shots += [("patients", console.url + "/patients"),
                      ("patient", console.url + "/patients/gw-clinic/maria"),
                      ("hubs", console.url + "/hubs")]
            if os.environ.get("EDGE_GATEWAY_SCREENSHOTS") == "1":
                save_screenshots(browser, page, shots, tmp_path)
            browser.close()
        # The hub's own view: acknowledged by that clinician, through its CLI.
        [a] = hub_cli(hub_store.path, "alerts", "list", "--patient", "demo")
        assert a["state"] == "acknowledged" and a["acknowledged_by"] == "console:dr-ada"
        # The console saw the result and cleared the retained command.
        wait_until(lambda: query(pg_dsn, "SELECT status, cleared_at IS NOT NULL FROM"
                                         " edge_gateway.console_commands")
                   == [("applied", True)], 20, "the command to be cleared")
        assert retained_commands(broker) == []
        acts = [r[0] for r in query(pg_dsn, "SELECT action FROM edge_gateway.console_audit"
                                            " WHERE actor = 'dr-ada' ORDER BY seq")]
        assert "command.alert.ack" in acts and "patient.view" in acts
    finally:
        hub.stop()
        ingest.stop()
        commander.close()


def save_screenshots(browser: Any, page: Any, shots: list[tuple[str, str]],
                     tmp_path: Path) -> None:
    """Each page as a PNG under docs/img/ (the login page from a fresh context)."""
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    for name, url in shots:
        if name == "login":
            fresh = browser.new_page(viewport={"width": 1280, "height": 700})
            fresh.goto(url)
            fresh.screenshot(path=str(tmp_path / f"{name}.png"))
            fresh.close()
        else:
            page.goto(url)
            page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
        shutil.copy(tmp_path / f"{name}.png", DOCS_IMG / f"console-{name}.png")
