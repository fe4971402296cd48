"""The gateway's sync process SIGKILLed mid-drain and restarted: nothing lost, duplicates only
within one in-flight window."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from mosquitto import Subscriber, fill, need_mosquitto, running_broker

from edge_gateway.store.db import Store

INFLIGHT = 20


def start_gateway(db: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_gateway.sync.service", "--db", str(db), "--broker", url,
             "--gateway", "gw1", "--site", "home", "--inflight", str(INFLIGHT),
             "--batch-size", "1"],
            stdout=out, stderr=subprocess.STDOUT)


def test_gateway_sigkill_mid_drain_loses_nothing(tmp_path: Path) -> None:
    kill_and_restart(tmp_path, kills=1, items=3000)


@pytest.mark.soak
def test_gateway_killed_again_and_again(tmp_path: Path) -> None:
    kill_and_restart(tmp_path, kills=8, items=12000)


def kill_and_restart(tmp_path: Path, kills: int, items: int) -> None:
    need_mosquitto()
    db = tmp_path / "g.db"
    store = Store.open(db)
    from edge_gateway.store.outbox import Outbox

    Outbox(store, "gw1")
    ids = fill(store, items)
    store.close()
    log = tmp_path / "gateway.log"
    with running_broker(tmp_path / "broker") as broker:
        sub = Subscriber(broker).start()
        try:
            step = len(ids) // (kills + 2)
            for k in range(1, kills + 1):
                gw = start_gateway(db, broker.url, log)
                try:
                    sub.wait_for(lambda k=k: len(sub.data()) >= k * step, 60,
                                 f"{k}/{kills + 2} of the backlog")
                finally:
                    os.kill(gw.pid, signal.SIGKILL)
                    gw.wait(10)
                assert not set(ids) <= set(sub.item_ids()), "the kill must land mid-drain"
            gw = start_gateway(db, broker.url, log)
            try:
                try:
                    sub.wait_for(lambda: set(ids) <= set(sub.item_ids()), 60, "every item")
                except AssertionError as err:
                    missing = len(set(ids) - set(sub.item_ids()))
                    raise AssertionError(f"{err}: {missing} missing; gateway log:\n"
                                         f"{log.read_text()[-3000:]}\nbroker log:\n"
                                         f"{broker.log_text()[-3000:]}") from None
                check = Store.open(db)
                try:
                    sub.wait_for(lambda: check.conn.execute(
                        "SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0] == 0,
                        20, "every row settled")
                finally:
                    check.conn.close()
            finally:
                gw.send_signal(signal.SIGTERM)
                assert gw.wait(20) == 0, log.read_text()[-2000:]
            received = Counter(sub.item_ids())
            dups = {i: n for i, n in received.items() if n > 1}
            assert set(received) == set(ids)
            # Only what was published but not yet settled in SQLite when the process died.
            assert sum(n - 1 for n in dups.values()) <= INFLIGHT * kills, dups
            # The broker published the last will when the process died.
            status = [json.loads(m.payload)["status"] for m in sub.snapshot()
                      if m.topic.endswith("/status")]
            assert status[:3] == ["online", "offline", "online"], status
            assert status.count("offline") >= kills
        finally:
            sub.stop()
