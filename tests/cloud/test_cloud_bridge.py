"""Clinic -> cloud over real brokers: hubs publish to the clinic's mosquitto, a persistent MQTT 5
bridge forwards to the cloud mosquitto, two ingest instances consume there.  The link between
the two brokers is cut (a relay that drops every connection and refuses new ones) and restored:
the clinic broker queues meanwhile and nothing is lost or doubled."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from conftest import (
    BROKER_EXTRA,
    Publisher,
    Running,
    hub_items,
    hub_messages,
    item_counts,
    wait_until,
)
from mosquitto import Broker, free_port

from edge_gateway.cloud.ingest import IngestOptions


class Relay:
    """A TCP relay 127.0.0.1:port -> target that can be cut and restored."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.up = threading.Event()
        self.up.set()
        self.conns: list[socket.socket] = []
        self.pipes: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.server.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            if not self.up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                t = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                self.pipes.append(t)
                t.start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        src.close()  # each socket is the source of exactly one pipe

    def cut(self) -> None:
        self.up.clear()
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.conns.clear()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.cut()
        self.stopping = True
        self.thread.join(5)
        for t in self.pipes:
            t.join(5)
        self.server.close()


def test_clinic_bridge_link_cut_and_restored(tmp_path: Path, pg_dsn: str) -> None:
    cloud = Broker(tmp_path / "cloud", extra=BROKER_EXTRA, durable=True).start()
    relay = Relay(cloud.port)
    clinic = Broker(tmp_path / "clinic", durable=True, extra=[
        "connection cloud",
        f"address 127.0.0.1:{relay.port}",
        "bridge_protocol_version mqttv50",
        "cleansession false",
        "local_cleansession false",
        "restart_timeout 1 2",
        "keepalive_interval 5",
        "topic edge-gateway/# out 1",
    ])
    consumers: list[Running] = []
    pub = None
    try:
        consumers = [Running(IngestOptions(broker=cloud.url, dsn=pg_dsn, client_id=f"ing-{i}"))
                     for i in range(2)]
        for c in consumers:
            c.start()
        clinic.start()
        wait_until(lambda: "bridge" in cloud.log_text().lower()
                   or "cloud" in cloud.log_text(), 10, "the bridge to connect")
        time.sleep(1.0)
        pub = Publisher(clinic.port, "hub-clinic")
        msgs = [m for g in range(3) for m in hub_messages(
            f"gw{g}", hub_items(f"gw{g}", 300), site=f"site{g}", batch_size=5)]
        pub.send(msgs[:60])
        wait_until(lambda: item_counts(pg_dsn)[0] == 300, 20, "items through the bridge")
        relay.cut()
        pub.send(msgs[60:150])  # the clinic broker queues these for the bridge
        time.sleep(1.0)
        assert item_counts(pg_dsn)[0] == 300, "nothing can pass while the link is cut"
        relay.restore()
        pub.send(msgs[150:])
        wait_until(lambda: item_counts(pg_dsn)[0] == 900, 40, "all 900 items after restore")
        time.sleep(0.5)
    finally:
        if pub is not None:
            pub.close()
        for c in consumers:
            c.stop()
        clinic.stop()
        relay.close()
        cloud.stop()
    assert item_counts(pg_dsn) == (900, 900)
    assert all(c.ingest.stats["messages"] > 0 for c in consumers)
