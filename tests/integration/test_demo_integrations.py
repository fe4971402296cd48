"""`edge-gateway -c FILE demo --broker URL` with `[homeassistant] enabled = true` and a
`[[nightscout]]` entry: HA discovery on the demo's broker, the CGM's 14-day backfill and live
readings in (a stand-in) Nightscout, nothing uploaded twice across two runs, and
`sync status --json` with a key per destination."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nightscout_standin
from mosquitto import running_broker, subscriber


def demo(cfg: Path, db: Path, broker: str, env: dict[str, str],
         seconds: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_gateway", "-c", str(cfg), "--db", str(db), "demo",
         "--duration", str(seconds), "--broker", broker],
        capture_output=True, text=True, env=env, timeout=240)


def test_demo_feeds_home_assistant_and_nightscout(tmp_path: Path,
                                                  cli_env: dict[str, str]) -> None:
    db = tmp_path / "demo.db"
    secret = tmp_path / "ns.secret"
    secret.write_text("a-long-api-secret-0123\n")
    secret.chmod(0o600)
    with nightscout_standin.running() as ns, running_broker(tmp_path / "mq") as broker, \
            subscriber(broker, topic="homeassistant/#", client_id="ha-watch") as ha:
        cfg = tmp_path / "gateway.toml"
        cfg.write_text(f'[homeassistant]\nenabled = true\n\n[[nightscout]]\npatient = "demo"\n'
                       f'url = "{ns.url}"\napi_secret_file = "{secret}"\n')
        first = demo(cfg, db, broker.url, cli_env, 25)
        assert first.returncode == 0, first.stderr[-3000:]
        assert "Traceback" not in first.stderr
        sgv = ns.sgv()
        posted_first = sum(n for path, n, st in ns.requests
                           if path == "/api/v1/entries" and st == 200)
        # The CGM's 14-day backfill reached Nightscout, with arrows, each instant once.
        assert (sgv[-1]["date"] - sgv[0]["date"]) / 86_400_000 > 13
        assert posted_first == len(ns.entries)
        assert {e["direction"] for e in sgv} - {"NOT COMPUTABLE"}
        assert all(isinstance(e["sgv"], int) for e in sgv)
        assert ns.devicestatus and ns.devicestatus[0]["device"] == "edge-gateway://demo-hub"

        second = demo(cfg, db, broker.url, cli_env, 12)
        assert second.returncode == 0, second.stderr[-3000:]
        posted = sum(n for path, n, st in ns.requests if path == "/api/v1/entries"
                     and st == 200)
        # A restart uploads only what is new: nothing was sent twice.
        assert posted == len(ns.entries) >= posted_first
        configs = {m.topic: json.loads(m.payload) for m in ha.snapshot() if m.payload}

    cgm = configs["homeassistant/sensor/demo_hub/demo_cgm_glucose/config"]
    assert cgm["unit_of_measurement"] == "mg/dL"
    assert cgm["device"]["via_device"] == "edge_gateway_demo_hub"
    assert cgm["availability_topic"] == "edge-gateway/demo/demo-hub/status"
    units = {c["unique_id"].rsplit("demo_", 1)[-1]: c.get("unit_of_measurement")
             for t, c in configs.items() if "/demo_" in t}
    assert units["heart_rate"] == "bpm" and units["spo2"] == "%"
    assert units["bp_systolic"] == "mmHg" and units["temperature"] == "°C"
    assert "homeassistant/sensor/demo_hub/demo_2_bp_systolic/config" in configs  # cuff user 2

    res = subprocess.run([sys.executable, "-m", "edge_gateway", "-c", str(cfg), "--db", str(db),
                          "sync", "status", "--json"], capture_output=True, text=True,
                         env=cli_env, timeout=60)
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert {"pending", "sent", "failed", "mqtt", "nightscout"} <= set(st)
    assert st["mqtt"]["sent"] == st["sent"] > 0
    assert st["nightscout"]["pending"] == 0
    assert st["nightscout"]["sent"] >= posted_first
    assert st["nightscout"]["sites"]["demo"]["sent"] == st["nightscout"]["sent"]
