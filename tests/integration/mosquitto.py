"""A private mosquitto per test, and a persistent-session subscriber to read what arrives.

Never the broker a developer may have on port 1883: each ``Broker`` gets a free loopback port,
its own config file and its own persistence directory under the test's tmp dir, and is killed
by PID.  ``autosave_on_changes true`` + ``autosave_interval 1`` make mosquitto write its store
after every change, so a SIGKILL loses (almost) nothing it had acknowledged — mosquitto sends a
PUBACK before it saves, and that window is the broker's, not the gateway's.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from hardware_sim.procs import die_with_parent
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_gateway.sync import payload

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_mosquitto() -> None:
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed: `make test` installs it"
                    " (or apt-get install mosquitto)")


@dataclass
class Broker:
    """One mosquitto process.  ``start``/``kill``/``pause``/``resume`` keep port and store."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra: Sequence[str] = ()
    tls: dict[str, str] | None = None
    durable: bool = False
    #: Run inside this network namespace (made by the test), listening on ``host``.
    netns: str | None = None
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None
    tls_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "data").mkdir(exist_ok=True)
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        lines = [
            # Started as root (CI), mosquitto would switch to the 'mosquitto' user and then be
            # unable to write its log and store in our tmp dir.
            *(["user root"] if os.geteuid() == 0 else []),
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.workdir / 'data'}/",
            # Durable: save after every change (slow: the whole store is rewritten each time).
            *(["autosave_on_changes true", "autosave_interval 1"] if self.durable else []),
            "max_keepalive 65535",
            # The default (1000) makes mosquitto drop QoS 1 messages for a subscriber that
            # falls behind a fast drain: the test's reader, not the gateway, would lose them.
            # (0, documented as "no maximum", made mosquitto 2.0.11 drop our connections.)
            "max_queued_messages 1000000",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        # Listener options apply to the listener line above them: keep the plain one (for the
        # test's subscriber) first and the TLS one (for the gateway) last.
        lines += list(self.extra)
        if self.tls:
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {self.tls['ca']}",
                      f"certfile {self.tls['cert']}", f"keyfile {self.tls['key']}",
                      "require_certificate true", "tls_version tlsv1.2"]
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.tls_port}"

    def start(self, wait_s: float = 10.0) -> Broker:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        # Dies with the test run even when pytest is killed (start it from the main thread).
        self.proc = subprocess.Popen([*prefix, MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     preexec_fn=die_with_parent())
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err} {self.log_text()}")
            if self.netns:  # not reachable from here: trust its log
                if " running" in self.log_text():
                    return self
                time.sleep(0.05)
                continue
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL: no goodbye, no final save."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_pipes()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGCONT)
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def pause(self) -> None:
        """SIGSTOP: the TCP connection stays up but nothing answers (a black-holed link)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)


@contextmanager
def running_broker(workdir: Path, **kw: Any) -> Iterator[Broker]:
    need_mosquitto()
    b = Broker(workdir, **kw).start()
    try:
        yield b
    finally:
        b.stop()


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    props: dict[str, str]

    def envelope(self) -> dict[str, Any]:
        return payload.decode(self.payload, self.props.get("content-encoding", "identity"))


class Subscriber:
    """A paho client with a persistent session (clean_start false, long session expiry).

    It subscribes once; after a broker restart the broker's persisted session still holds the
    subscription and the messages queued meanwhile.
    """

    def __init__(self, broker: Broker, topic: str = "edge-gateway/#",
                 client_id: str = "test-sub") -> None:
        self.broker = broker
        self.topic = topic
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=paho.MQTTv5)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self.connected.clear()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                    props: Any) -> None:
        if not flags.session_present:
            client.subscribe(self.topic, qos=1)
        self.connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        props = dict(getattr(msg.properties, "UserProperty", []) or [])
        with self.lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain),
                                          props))

    def start(self) -> Subscriber:
        p = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        p.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", self.broker.port, keepalive=60, clean_start=False,
                            properties=p)
        self.client.loop_start()
        assert self.connected.wait(10), "subscriber could not connect"
        time.sleep(0.2)  # let the SUBACK land before anything is published
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.messages)

    def data(self) -> list[Received]:
        return [m for m in self.snapshot() if not m.topic.endswith("/status")]

    def item_ids(self) -> list[str]:
        """Every item id received, in arrival order, duplicates included."""
        out: list[str] = []
        for m in self.data():
            out += [i for i, _ in payload.items_of(m.envelope())]
        return out

    def wait_for(self, pred: Any, timeout_s: float, what: str = "condition") -> None:
        wait_until(pred, timeout_s, what)


def wait_until(pred: Any, timeout_s: float, what: str = "condition") -> None:
    """Poll ``pred`` every 50 ms; fail the test after ``timeout_s`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@contextmanager
def subscriber(broker: Broker, **kw: Any) -> Iterator[Subscriber]:
    s = Subscriber(broker, **kw).start()
    try:
        yield s
    finally:
        s.stop()


# ---------------------------------------------------------------------- the gateway side
def fill(store: Any, summaries: int, alerts: int = 0, *, start: Any = None,
         step_s: float = 300.0) -> list[str]:
    """Queue ``summaries`` HRV summaries (oldest first) then ``alerts`` alerts; return ids."""
    from datetime import UTC, datetime, timedelta

    from edge_gateway.reading import Alert, Summary
    from edge_gateway.store.outbox import enqueue_alert, enqueue_summary

    t0 = start or datetime(2026, 11, 18, tzinfo=UTC)
    ids: list[str] = []
    with store.transaction():
        for i in range(summaries):
            t = t0 + timedelta(seconds=step_s * i)
            ids.append(enqueue_summary(store, i + 1, Summary(
                "p1", "hrv", t, t + timedelta(seconds=step_s),
                {"mean_hr_bpm": 60 + i % 20, "sdnn_ms": 40.0 + i % 9}, 0.95, "hrv/1",
                t + timedelta(seconds=step_s), "strap-1")))
        for j in range(alerts):
            t = t0 + timedelta(seconds=step_s * summaries + j)
            ids.append(enqueue_alert(store, j + 1, Alert(
                "p1", "hr_high", "urgent", "raised", f"heart rate high #{j}", t, f"hr:{j}",
                150.0, "/min"), t))
    return ids


async def until(pred: Any, timeout_s: float, what: str) -> None:
    """Poll ``pred`` from async code (the sync runs on this loop)."""
    import asyncio

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
