"""Console commands on the hub (``make bench``): what ``cryptography`` costs the daemon.

1. Resident memory (VmRSS) of a fresh interpreter that imports what the daemon loads for the
   sync (the runtime, the store, paho, the sync service, the applier), against the same
   interpreter after it also verified one signed command (which imports ``cryptography``'s
   Ed25519).  The difference is what enabling ``[commands]`` adds; a hub without a console key
   never imports ``cryptography`` (checked here too).  Median of ``RUNS`` fresh processes each.
2. Time to handle one command end to end on a real SQLite file (verify, apply a threshold
   change, the command_log row, audit, the result item: one transaction), against verifying
   alone, in the same run.

Run: ``.venv/bin/python benchmarks/bench_commands.py [--json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUNS = 5

_PROBE = r"""
import sys
sys.path.insert(0, {root!r})
import edge_gateway.runtime.daemon, edge_gateway.sync.service, edge_gateway.runtime.commands
import edge_gateway.store, edge_gateway.alerts.engine, edge_gateway.care.caregiver
from datetime import UTC, datetime
from edge_gateway import commands as C
assert "cryptography" not in sys.modules, "imported without a console key"
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
before = rss()
if {verify}:
    # What the hub does for its first command: verify only (signing is the console's).
    C.verify({payload!r}, {pub!r}, gateway="gw1", site="home", topic_command_id="c1",
             now=datetime.now(UTC))
print(before, rss())
"""


def rss_kb(verify: bool, signed: tuple[bytes, str]) -> tuple[int, int]:
    code = _PROBE.format(root=str(ROOT), verify=verify, payload=signed[0], pub=signed[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]), int(out[1])


def handle_time(n: int) -> tuple[float, float]:
    """(ms per handled command, ms per verify alone) over ``n`` commands."""
    from edge_gateway import commands as C
    from edge_gateway.care import caregiver
    from edge_gateway.runtime.commands import CommandApplier
    from edge_gateway.store import Store

    pem, pub = C.generate_keypair()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "gw.db")
        caregiver.add_patient(store, "p", actor="bench")
        payloads: list[tuple[str, bytes]] = []
        for i in range(n):
            cmd = C.new_command(command="threshold.set", gateway="gw1", site="home",
                                patient="p", args={"key": "glucose.low_l1",
                                                   "value": f"{70 + i % 5} mg/dL"},
                                actor="dr", issued_at=now, ttl_s=3600)
            payloads.append((C.command_topic("eg", "home", "gw1", cmd["id"]), C.sign(cmd, pem)))
        applier = CommandApplier(store, public_key=pub, gateway="gw1", site="home")
        t0 = time.perf_counter()
        for topic, body in payloads:
            C.verify(body, pub, gateway="gw1", site="home", topic_command_id=topic.rsplit(
                "/", 1)[-1], now=now)
        verify_ms = (time.perf_counter() - t0) / n * 1e3
        t0 = time.perf_counter()
        outcomes = [applier.handle(topic, body) for topic, body in payloads]
        handle_ms = (time.perf_counter() - t0) / n * 1e3
        assert outcomes.count("applied") == n, outcomes
        store.close()
    return handle_ms, verify_ms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    from edge_gateway import commands as C

    pem, pub = C.generate_keypair()
    cmd = C.new_command(command="alert.ack", gateway="gw1", site="home", patient="p",
                        args={"alert_id": 1, "key": "k"}, actor="a",
                        issued_at=datetime.now(UTC), ttl_s=3600, command_id="c1")
    signed = (C.sign(cmd, pem), pub)
    base = [rss_kb(False, signed) for _ in range(RUNS)]
    with_crypto = [rss_kb(True, signed) for _ in range(RUNS)]
    base_mb = statistics.median(b for _, b in base) / 1024
    crypto_mb = statistics.median(b for _, b in with_crypto) / 1024
    added_mb = statistics.median(after - before for before, after in with_crypto) / 1024
    handle_ms, verify_ms = handle_time(200)
    res: dict[str, Any] = {
        "rss_daemon_modules_mb": round(base_mb, 1),
        "rss_after_first_verify_mb": round(crypto_mb, 1),
        "rss_added_by_cryptography_mb": round(added_mb, 1),
        "rss_ratio": round(crypto_mb / base_mb, 3),
        "handle_ms_per_command": round(handle_ms, 2),
        "verify_ms_per_command": round(verify_ms, 3),
        "handle_vs_verify": round(handle_ms / verify_ms, 1),
    }
    if a.json:
        print(json.dumps(res))
    else:
        print(f"RSS of the daemon's modules        {res['rss_daemon_modules_mb']:.1f} MB")
        print(f"  + first command verified         {res['rss_after_first_verify_mb']:.1f} MB"
              f"  (+{res['rss_added_by_cryptography_mb']:.1f} MB, x{res['rss_ratio']:.3f})")
        print(f"handle one command (threshold.set) {res['handle_ms_per_command']:.2f} ms"
              f"  (verify alone {res['verify_ms_per_command']:.3f} ms,"
              f" x{res['handle_vs_verify']:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
