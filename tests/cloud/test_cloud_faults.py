"""Faults: a consumer SIGKILLed holding an uncommitted batch, PostgreSQL restarted mid-stream,
the cloud broker restarted, a week's backlog arriving at once.  Nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import (
    BIN_DIR,
    PrivateCluster,
    Publisher,
    Running,
    hub_items,
    hub_messages,
    item_counts,
    wait_until,
)
from mosquitto import Broker

from edge_gateway.cloud.ingest import IngestOptions

CLI = [sys.executable, "-m", "edge_gateway"]


def _cli_ingest(broker: Broker, dsn: str, client_id: str, env: dict[str, str],
                *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*CLI, "cloud", "ingest", "--broker", broker.url, "--dsn", dsn,
                             "--client-id", client_id, *extra],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)


class Lines:
    """Reads a process's stderr on a thread, so the test can wait for a line."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        assert proc.stderr is not None
        self._stream = proc.stderr
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in self._stream:
            self.lines.append(raw.decode(errors="replace"))
        self._stream.close()

    def close(self) -> None:
        """After the process ended: the rest of its output, and the pipe closed."""
        self._thread.join(10)

    def count(self, needle: str) -> int:
        return sum(needle in line for line in list(self.lines))


def test_sigkill_while_holding_an_uncommitted_batch_then_restart(
        broker: Broker, pg_dsn: str, publisher: Publisher, cli_env: dict[str, str],
        tmp_path: Path) -> None:
    # A batch that will not be committed for a minute: the consumer holds what it receives.
    hold = _cli_ingest(broker, pg_dsn, "ingest-k", cli_env, "--batch-delay", "60",
                       "--batch-idle", "60", "--batch-messages", "100000",
                       "--log-level", "debug")
    out = Lines(hold)
    try:
        wait_until(lambda: out.count("mqtt.connected") == 1, 20, "the consumer to connect")
        time.sleep(0.3)
        msgs = hub_messages("gw1", hub_items("gw1", 300), batch_size=3)  # 100 messages
        publisher.send(msgs)
        wait_until(lambda: out.count("mqtt.received") >= 100, 20, "100 messages held")
        assert item_counts(pg_dsn) == (0, 0), "the batch must still be uncommitted"
    finally:
        hold.kill()  # SIGKILL: no commit, no PUBACK
        hold.wait(10)
        out.close()
    assert hold.returncode == -signal.SIGKILL
    # The same client id resumes the session: the broker re-delivers every unacked message.
    again = _cli_ingest(broker, pg_dsn, "ingest-k", cli_env)
    again_out = Lines(again)
    try:
        wait_until(lambda: item_counts(pg_dsn)[0] >= 300, 30, "300 items after the restart")
        publisher.send(msgs[:10])  # and a hub re-send on top: still once
        time.sleep(1.0)
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(20) == 0  # commits and acknowledges what it holds, exits 0
        again_out.close()
    assert not [line for line in again_out.lines if "Traceback" in line]
    assert item_counts(pg_dsn) == (300, 300)
    conf = tmp_path / "cloud.toml"  # the DSN from a [cloud] section this time
    conf.write_text(f"[cloud]\ndsn = {json.dumps(pg_dsn)}\ngroup = \"ingest\"\n")
    st = subprocess.run([*CLI, "--config", str(conf), "cloud", "status", "--json"],
                        env=cli_env, capture_output=True, text=True, check=True)
    status = json.loads(st.stdout)
    assert status["items"] == 300 and status["duplicates_dropped"] == 30
    assert status["dead_letters"] == 0 and isinstance(status["lag_s"], float)
    assert [(g["gateway"], g["site"]) for g in status["gateways"]] == [("gw1", "home")]
    assert {"status", "last_seen"} <= set(status["gateways"][0])


def test_postgresql_restarted_mid_stream(broker: Broker, private_pg: PrivateCluster) -> None:
    dsn = private_pg.dsn
    c = Running(IngestOptions(broker=broker.url, dsn=dsn, client_id="ingest-pg")).start()
    pub = Publisher(broker.port)
    try:
        msgs = hub_messages("gw1", hub_items("gw1", 600), batch_size=2)  # 300 messages
        pub.send(msgs[:100])
        wait_until(lambda: item_counts(dsn)[0] == 200, 20, "the first 200 items")
        commits_before = len(c.commits)
        private_pg.stop("immediate")  # a crash: no goodbye to the clients
        pub.send(msgs[100:200])  # the broker takes them; the consumer cannot commit
        wait_until(lambda: c.ingest.stats["db_errors"] >= 2, 20, "retries with backoff")
        assert len(c.commits) == commits_before  # nothing committed, so nothing acknowledged
        private_pg.start()
        pub.send(msgs[200:])
        wait_until(lambda: item_counts(dsn)[0] == 600, 40, "all 600 items")
    finally:
        pub.close()
        c.stop()
    assert item_counts(dsn) == (600, 600)


def test_broker_restarted_and_a_weeks_backlog(broker: Broker, pg_dsn: str) -> None:
    o = IngestOptions(broker=broker.url, dsn=pg_dsn, client_id="ingest-b")
    c = Running(o).start()
    c.stop()  # the session (and its shared subscription) now waits in the broker
    # A clinic back online after a week: 5-minute summaries of 4 patients, batches of 50.
    week = [m for p in range(4) for m in hub_messages(
        "gw1", hub_items("gw1", 2016, start_seq=1 + p * 2016, patient=f"p{p}"), batch_size=50)]
    pub = Publisher(broker.port)
    pub.send(week)
    pub.close()
    # The cloud broker restarts with all of it queued.  (A SIGKILL here can lose the last
    # message: mosquitto acknowledges before it saves; that window is the broker's.)
    broker.stop()
    broker.start()
    c = Running(o).start()
    try:
        wait_until(lambda: item_counts(pg_dsn)[0] == 8064, 60, "the week's 8064 items")
        broker.kill()  # a crash now, with the consumer connected
        broker.start()
        # mosquitto does not restore shared subscriptions from its store: until a member
        # subscribes again nothing is queued for the group (docs/fleet.md says what to do).
        wait_until(lambda: c.ingest.connects == 2 and c.ingest._connected.is_set(), 30,
                   "the consumer to reconnect")
        time.sleep(0.3)  # SUBACK
        pub = Publisher(broker.port, "hub-2")
        pub.send(hub_messages("gw2", hub_items("gw2", 100)))
        pub.close()
        wait_until(lambda: item_counts(pg_dsn)[0] == 8164, 30, "100 more after a restart")
    finally:
        c.stop()
    assert item_counts(pg_dsn) == (8164, 8164)


def test_cli_without_the_extra_says_what_to_install(tmp_path: Path,
                                                   cli_env: dict[str, str]) -> None:
    # A base install: psycopg hidden by a module that fails to import.
    fake = tmp_path / "site"
    fake.mkdir()
    (fake / "psycopg.py").write_text("raise ImportError('no psycopg here')\n")
    env = {**cli_env, "PYTHONPATH": f"{fake}{os.pathsep}{cli_env.get('PYTHONPATH', '')}"}
    r = subprocess.run([*CLI, "cloud", "status", "--dsn", "postgresql:///x"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "pip install 'edge-gateway[cloud]'" in r.stderr
    assert BIN_DIR.exists()


def test_scale_down_with_leave_hands_the_rest_to_the_group(broker: Broker, pg_dsn: str) -> None:
    a = Running(IngestOptions(broker=broker.url, dsn=pg_dsn, client_id="ing-a"), leave=True)
    b = Running(IngestOptions(broker=broker.url, dsn=pg_dsn, client_id="ing-b"))
    a.start()
    b.start()
    pub = Publisher(broker.port)
    try:
        pub.send(hub_messages("gw1", hub_items("gw1", 200)))
        wait_until(lambda: item_counts(pg_dsn)[0] == 200, 20, "200 items")
        a.stop()  # stop taking, drain, end the session: nothing stays queued for ing-a
        pub.send(hub_messages("gw1", hub_items("gw1", 200, start_seq=201)))
        wait_until(lambda: item_counts(pg_dsn)[0] == 400, 20, "the rest through ing-b alone")
    finally:
        pub.close()
        b.stop()
    assert item_counts(pg_dsn) == (400, 400)
    assert a.ingest.stats["messages"] > 0
