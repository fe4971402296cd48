"""Real PostgreSQL and mosquitto for the fleet-ingest tests.

``pg_dsn``: a fresh database per test on the machine's PostgreSQL (``scripts/system-deps.sh``
installs and starts it and makes a role for the current user), dropped afterwards.  Set
``EDGE_GATEWAY_TEST_PG`` to a libpq string to use another server.  ``PrivateCluster``: a
cluster of our own (initdb/pg_ctl, as the ``postgres`` user when we are root: PostgreSQL refuses
to run as root) on a private socket folder, for the tests that stop and start the server.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from mosquitto import Broker, free_port, need_mosquitto, wait_until  # noqa: F401 (the cloud tests import it from here)

from edge_gateway.config import SyncSection
from edge_gateway.store.outbox import Item
from edge_gateway.sync import payload

BASE_DSN = os.environ.get("EDGE_GATEWAY_TEST_PG", "host=/var/run/postgresql dbname=postgres")
BIN_DIR = Path(sys.executable).parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")

#: The broker settings a fleet broker needs (docs/fleet.md): a consumer's Receive Maximum is
#: honoured up to max_inflight_messages; a week's backlog must not hit max_queued_messages.
BROKER_EXTRA = ("max_inflight_messages 1000",)


def _admin() -> Any:
    try:
        return psycopg.connect(BASE_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        pytest.fail(f"PostgreSQL is not reachable ({str(err).splitlines()[0]}): "
                    "`sh scripts/system-deps.sh` installs and starts it")


def with_db(base: str, name: str) -> str:
    return f"{base} dbname={name}"


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    name = f"egw_test_{uuid.uuid4().hex[:12]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = " ".join(p for p in BASE_DSN.split() if not p.startswith("dbname="))
    try:
        yield with_db(base, name)
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def query(dsn: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as c:
        return list(c.execute(sql, params).fetchall())


def item_counts(dsn: str) -> tuple[int, int]:
    """(rows, distinct ids) in the items view."""
    rows = query(dsn, "SELECT count(*), count(DISTINCT id) FROM edge_gateway.items")
    return int(rows[0][0]), int(rows[0][1])


# ---------------------------------------------------------------------- private cluster
@dataclass
class PrivateCluster:
    """initdb + pg_ctl on a private socket folder (and port); stop/start at will."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="egw-pg-")))
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.sock.mkdir()
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in (self.root, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._run(self._bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "egw",
                  "--no-sync", "-E", "UTF8")

    def _bin(self, name: str) -> str:
        return str(PG_BIN / name) if (PG_BIN / name).exists() else (shutil.which(name) or name)

    def _run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=60)

    @property
    def dsn(self) -> str:
        return f"host={self.sock} port={self.port} user=egw dbname=postgres"

    def start(self) -> None:
        opts = f"-k {self.sock} -p {self.port} -c listen_addresses='' -c fsync=off"
        self._run(self._bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                  str(self.root / "log"), "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(self._bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    c = PrivateCluster()
    c.start()
    try:
        yield c
    finally:
        c.remove()


# ---------------------------------------------------------------------- brokers
@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    need_mosquitto()
    b = Broker(tmp_path / "cloud-broker", extra=BROKER_EXTRA, durable=True).start()
    try:
        yield b
    finally:
        b.stop()


# ---------------------------------------------------------------------- hub messages
T0 = datetime(2026, 11, 18, tzinfo=UTC)


def hub_items(gateway: str, n: int, *, start_seq: int = 1, patient: str | None = "p1",
              kind: str = "summary", t0: datetime = T0, step_s: float = 300.0) -> list[Item]:
    """Outbox items as the hub keeps them (summaries, or alerts with their life cycle)."""
    out = []
    for i in range(n):
        seq = start_seq + i
        t = t0 + timedelta(seconds=step_s * i)
        at = t.isoformat().replace("+00:00", "Z")
        if kind == "alert":
            body: dict[str, Any] = {
                "alert_id": seq // 2, "rule": "hr_high", "severity": "urgent",
                "state": "raised" if seq % 2 == 0 else "resolved", "message": "hr high",
                "raised_at": at, "key": f"{patient}:hr_high", "value": 150.0, "unit": "/min",
                "patient": patient, "device": "strap-1", "details": {}}
        else:
            body = {"summary_id": seq, "kind": "hrv", "patient": patient, "device": "strap-1",
                    "window_start": at, "window_end": at, "metrics": {"mean_hr_bpm": 60.0},
                    "coverage": 0.97, "algorithm": "hrv/1", "created_at": at}
        out.append(Item(seq, f"{gateway}:db0:{seq}", 0 if kind == "alert" else 1, kind,
                        patient, at, json.dumps(body, separators=(",", ":"))))
    return out


def hub_messages(gateway: str, items: Sequence[Item], *, site: str = "home",
                 batch_size: int = 1, compression: str = "none",
                 fmt: str = "json") -> list[payload.Message]:
    opts = payload.Options(gateway, site, sync=SyncSection(
        batch_size=batch_size, compression=compression, format=fmt))
    return payload.build_all(items, opts, datetime.now(UTC))


class Publisher:
    """A hub-like MQTT 5 publisher (QoS 1, waits for every PUBACK)."""

    def __init__(self, port: int, client_id: str = "test-hub") -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=paho.MQTTv5)
        self.client.max_inflight_messages_set(100)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def send(self, messages: Sequence[payload.Message] | Sequence[tuple[str, bytes]],
             *, retain: bool = False, pace_s: float = 0.0) -> None:
        infos = []
        for m in messages:
            topic, body = (m.topic, m.payload) if isinstance(m, payload.Message) else m
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if isinstance(m, payload.Message) and m.user_properties:
                props.UserProperty = list(m.user_properties)
            infos.append(self.client.publish(topic, body, qos=1, retain=retain,
                                             properties=props))
            if pace_s:
                time.sleep(pace_s)
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker: Broker) -> Iterator[Publisher]:
    p = Publisher(broker.port)
    try:
        yield p
    finally:
        p.close()


# ---------------------------------------------------------------------- consumers
class Running:
    """An in-process :class:`Ingest` on its own thread."""

    def __init__(self, opts: Any, **kw: Any) -> None:
        from edge_gateway.cloud.ingest import Ingest

        self.commits: list[tuple[int, float]] = []
        self.ingest = Ingest(opts, on_commit=self._on_commit, **kw)
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=opts.client_id, daemon=True)

    def _on_commit(self, batch: Any, result: Any, t: float) -> None:
        self.commits.append((result.messages, t))

    def _run(self) -> None:
        try:
            self.ingest.run(self.stop_event)
        except BaseException as err:  # surfaced by stop()
            self.error = err

    def start(self) -> Running:
        self.thread.start()
        assert self.ingest._connected.wait(10), "consumer did not connect"
        time.sleep(0.2)  # SUBACK
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error
