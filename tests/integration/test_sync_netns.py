"""A black-holed link: packets silently dropped on a route inside network namespaces that this
test makes (gateway and broker each in their own, joined by a veth pair), then restored.

The gateway must notice within 2 × keepalive (no RST ever comes: only its keepalive can tell),
and deliver everything once the route is back.  Skipped where namespaces cannot be made.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mosquitto import Broker, fill, need_mosquitto

from edge_gateway.store.db import Store
from edge_gateway.store.outbox import Outbox

KEEPALIVE = 2
# Addresses exist only inside the two namespaces below (a /30 on their private veth pair).
BROKER_IP, GATEWAY_IP = "10.231.77.1", "10.231.77.2"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    if shutil.which("ip") is None:
        pytest.fail("iproute2 is not installed: run `make test` (it installs it)")
    if os.geteuid() != 0:
        # Only root can make namespaces; the SIGSTOP black-hole test covers the same
        # recovery for other users, and CI runs as root.
        pytest.skip("network namespaces need root")
    tag = f"{os.getpid() % 100000}"
    nb, ng = f"egw-b{tag}", f"egw-g{tag}"
    try:
        ip("netns", "add", nb)
    except subprocess.CalledProcessError as err:
        pytest.fail(f"cannot make a network namespace: {err.stderr.decode().strip()}")
    try:
        ip("netns", "add", ng)
        ip("link", "add", f"vb{tag}", "type", "veth", "peer", "name", f"vg{tag}")
        ip("link", "set", f"vb{tag}", "netns", nb)
        ip("link", "set", f"vg{tag}", "netns", ng)
        ip("-n", nb, "addr", "add", f"{BROKER_IP}/30", "dev", f"vb{tag}")
        ip("-n", ng, "addr", "add", f"{GATEWAY_IP}/30", "dev", f"vg{tag}")
        for ns, dev in ((nb, f"vb{tag}"), (ng, f"vg{tag}")):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")
        yield nb, ng
    finally:
        for ns in (nb, ng):  # deleting a namespace deletes its end of the veth pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def pending(db: Path) -> int:
    store = Store.open(db)
    try:
        return Outbox(store).pending()
    finally:
        store.conn.close()


def wait(pred: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_black_holed_route_detected_and_recovered(tmp_path: Path,
                                                  namespaces: tuple[str, str]) -> None:
    need_mosquitto()
    nb, ng = namespaces
    db = tmp_path / "g.db"
    store = Store.open(db)
    Outbox(store, "gw1")
    first = fill(store, 50)
    broker = Broker(tmp_path / "broker", netns=nb, host=BROKER_IP).start()
    log = tmp_path / "gateway.log"
    out = log.open("wb")
    gw = subprocess.Popen(
        ["ip", "netns", "exec", ng, sys.executable, "-m", "edge_gateway.sync.service",
         "--db", str(db), "--broker", broker.url, "--gateway", "gw1",
         "--keepalive", str(KEEPALIVE)], stdout=out, stderr=subprocess.STDOUT)
    holed = False
    try:
        wait(lambda: pending(db) == 0, 30, "the first items")
        # Black hole both ways: packets vanish, nothing answers, no RST.
        ip("-n", ng, "route", "add", "blackhole", f"{BROKER_IP}/32")
        ip("-n", nb, "route", "add", "blackhole", f"{GATEWAY_IP}/32")
        holed = True
        t0 = time.monotonic()
        more = fill(store, 30, step_s=60.0)
        wait(lambda: re.search(r"disconnected|keepalive|lost", log.read_text()) is not None,
             4 * KEEPALIVE + 2, "the gateway to notice the black hole")
        detected = time.monotonic() - t0
        assert pending(db) == len(more)
        ip("-n", ng, "route", "del", "blackhole", f"{BROKER_IP}/32")
        ip("-n", nb, "route", "del", "blackhole", f"{GATEWAY_IP}/32")
        holed = False
        wait(lambda: pending(db) == 0, 30, "recovery after the route came back")
        assert Outbox(store).status()["sent"] == len(first) + len(more)
        # paho pings after `keepalive` of silence and gives up `keepalive` later.
        print(f"black hole noticed after {detected:.2f} s")
        assert detected <= 2 * KEEPALIVE + 1.0, (detected, log.read_text()[-1500:])
    finally:
        if holed:
            subprocess.run(["ip", "-n", ng, "route", "del", "blackhole", f"{BROKER_IP}/32"],
                           capture_output=True)
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(15)
        except subprocess.TimeoutExpired:
            gw.kill()
            gw.wait(5)
        out.close()
        broker.stop()
        store.close()
