"""Sync benchmarks (``make bench``): drain rate against bare paho, and bytes on the wire per day.

1. Drain a 10,000-message outbox backlog (batch_size 1, so one item per PUBLISH) to a private
   local mosquitto and compare with a bare paho QoS 1 publish loop to the same broker in the same
   run (same in-flight window).  Target: the gateway reaches at least 50 % of the bare rate —
   the difference is the price of durability (every PUBACK's outcome committed to SQLite before
   its in-flight slot is reused).
2. Bytes per day for one patient wearing an HR strap, a CGM and a BP cuff: the summaries and
   alerts one day produces, published one message per item as JSON against batched (50 per
   message) + gzip and + zstd.  Bytes counted are the MQTT PUBLISH packets (fixed header,
   topic, properties, payload) as the broker receives them, excluding TCP/IP and TLS framing.

Run: ``.venv/bin/python benchmarks/bench_sync.py [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_gateway.config import MqttSection, SyncSection  # noqa: E402
from edge_gateway.reading import Alert, Summary  # noqa: E402
from edge_gateway.store.db import Store  # noqa: E402
from edge_gateway.store.outbox import Item, Outbox, enqueue_alert, enqueue_summary  # noqa: E402
from edge_gateway.sync import payload  # noqa: E402
from edge_gateway.sync.service import SyncService  # noqa: E402
from tests.integration.mosquitto import Broker  # noqa: E402

N = 10_000
WINDOW = 20


def bare_paho_rate(port: int, n: int, body: bytes) -> float:
    """Messages/s of a plain paho loop: publish n QoS 1 messages, wait for every PUBACK."""
    done = threading.Event()
    acked = 0

    def on_publish(c: Any, u: Any, mid: int, rc: Any, props: Any) -> None:
        nonlocal acked
        acked += 1
        if acked == n:
            done.set()

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=paho.MQTTv5)
    c.on_publish = on_publish
    c.max_inflight_messages_set(WINDOW)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    time.sleep(0.2)
    t = time.perf_counter()
    for _ in range(n):
        c.publish("bench/bare/p1/summary", body, qos=1)
    done.wait(300)
    rate = n / (time.perf_counter() - t)
    c.disconnect()
    c.loop_stop()
    return rate


def gateway_rate(port: int, workdir: Path, n: int) -> float:
    workdir.mkdir(parents=True, exist_ok=True)
    store = Store.open(workdir / "bench.db")
    ob = Outbox(store, "gw-bench")
    now = datetime(2026, 11, 25, tzinfo=UTC)
    with store.transaction():
        for i in range(n):
            ob.add("summary", {"i": i, "metrics": {"sdnn_ms": 42.0}}, priority=1,
                   created_at=now, patient_id="p1")
    svc = SyncService(store, MqttSection(host="127.0.0.1", port=port, client_id="bench-gw",
                                         inflight=WINDOW),
                      SyncSection(batch_size=1), "gw-bench", "bench")
    t = time.perf_counter()
    left = asyncio.run(svc.drain(300))
    rate = n / (time.perf_counter() - t)
    store.close()
    if left:
        raise SystemExit(f"gateway drain left {left} messages")
    return rate


# ---------------------------------------------------------------------- one patient's day
def one_day(start: datetime) -> tuple[list[Summary], list[Alert]]:
    """HR strap: HRV + rhythm every 5 min; CGM: glucose every 15 min; BP cuff: 3 a day."""
    sums: list[Summary] = []
    for k in range(288):
        t = start + timedelta(minutes=5 * k)
        sums.append(Summary("p1", "hrv", t, t + timedelta(minutes=5), {
            "mean_hr_bpm": 62.0 + k % 17, "sdnn_ms": 41.3 + k % 9, "rmssd_ms": 33.1 + k % 7,
            "pnn50_pct": 11.2, "lf_hf_ratio": 1.7}, 0.97, "hrv/1", t + timedelta(minutes=5),
            "strap-1"))
        sums.append(Summary("p1", "rhythm", t, t + timedelta(minutes=5), {
            "af_burden_pct": 0.0, "pauses": 0, "ectopy_per_min": 0.4, "brady_s": 0,
            "tachy_s": 0}, 0.97, "rhythm/1", t + timedelta(minutes=5), "strap-1"))
    for k in range(96):
        t = start + timedelta(minutes=15 * k)
        sums.append(Summary("p1", "cgm", t, t + timedelta(minutes=15), {
            "mean_glucose_mg_dl": 104.0 + k % 30, "min_glucose_mg_dl": 88.0,
            "max_glucose_mg_dl": 131.0, "trend_mg_dl_min": 0.4,
            "time_in_range_pct": 100.0}, 1.0, "glucose/1", t + timedelta(minutes=15), "cgm-1"))
    for h in (7, 13, 21):
        t = start + timedelta(hours=h)
        sums.append(Summary("p1", "bp", t, t + timedelta(minutes=2), {
            "systolic_mmhg": 128.0, "diastolic_mmhg": 82.0, "map_mmhg": 97.3,
            "pulse_bpm": 66.0}, 1.0, "bp/1", t + timedelta(minutes=2), "cuff-1"))
    alerts = [Alert("p1", "glucose_low", "urgent", "raised", "glucose 62 mg/dL below 70",
                    start + timedelta(hours=3), "p1:glucose_low", 62.0, "mg/dL", "cgm-1")]
    return sums, alerts


def publish_packet_bytes(msg: payload.Message) -> int:
    """The PUBLISH packet for ``msg`` plus the 4-byte PUBACK coming back."""
    return payload.packet_size(msg) + 4


def bytes_per_day(workdir: Path) -> dict[str, int]:
    store = Store.open(workdir / "day.db")
    Outbox(store, "gw-bench")
    start = datetime(2026, 11, 25, tzinfo=UTC)
    sums, alerts = one_day(start)
    with store.transaction():
        for i, s in enumerate(sums):
            enqueue_summary(store, i + 1, s)
        for i, a in enumerate(alerts):
            enqueue_alert(store, i + 1, a, a.raised_at)
    items = Outbox(store).batch(100_000)
    store.close()
    out: dict[str, int] = {"items": len(items)}
    for name, fmt, batch, comp in (
        ("json_single", "json", 1, "none"), ("json_batched", "json", 50, "none"),
        ("json_batched_gzip", "json", 50, "gzip"), ("json_batched_zstd", "json", 50, "zstd"),
        ("fhir_single", "fhir", 1, "none"), ("fhir_batched_zstd", "fhir", 50, "zstd"),
    ):
        opts = payload.Options(gateway="gw-bench", site="bench", sync=SyncSection(
            format=fmt, compression=comp, batch_size=batch))
        msgs = payload.build_all(items, opts, start + timedelta(days=1))
        out[name] = sum(publish_packet_bytes(m) for m in msgs)
        out[name + "_messages"] = len(msgs)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("-n", type=int, default=N)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker").start()
        try:
            body = payload.build([Item(1, "gw:x:1", 1, "summary", "p1", "t",
                                               '{"i":1,"metrics":{"sdnn_ms":42.0}}')],
                                 payload.Options(gateway="gw"), datetime.now(UTC)).payload
            # Alternate the two, several rounds, and compare medians: other work on a small
            # machine shifts a single pair of runs by tens of percent.
            bares, gws = [], []
            for r in range(args.rounds):
                bares.append(bare_paho_rate(broker.port, args.n, body))
                gws.append(gateway_rate(broker.port, work / f"r{r}", args.n))
            bare, gw = statistics.median(bares), statistics.median(gws)
        finally:
            broker.stop()
        day = bytes_per_day(work)
    result = {"backlog": args.n, "rounds": args.rounds, "bare_paho_msgs_per_s": round(bare),
              "gateway_msgs_per_s": round(gw), "ratio": round(gw / bare, 3),
              "target_ratio": 0.5, "bytes_per_day": day}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"drain {args.n} messages: bare paho {bare:,.0f} msg/s, gateway {gw:,.0f} msg/s,"
              f" ratio {gw / bare:.0%} (target >= 50%)")
        print(f"bytes/day, one patient (HR strap, CGM, BP cuff; {day['items']} items):")
        for k, v in day.items():
            if k != "items" and not k.endswith("_messages"):
                print(f"  {k:22s} {v:>9,d} B in {day[k + '_messages']:>4d} messages")
    return 0 if gw / bare >= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
