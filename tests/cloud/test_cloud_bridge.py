"""Clinic -> cloud over real brokers: hubs publish to the clinic's mosquitto, a persistent MQTT 5
bridge forwards to the cloud mosquitto, two ingest instances consume there.  The link between
the two brokers is cut (a relay that drops every connection and refuses new ones) and restored:
the clinic broker queues meanwhile and nothing is lost or doubled."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    BROKER_EXTRA,
    Publisher,
    Running,
    hub_items,
    hub_messages,
    item_counts,
    query,
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


# ---------------------------------------------------------------------- the bridge over TLS
def _ssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _pki(d: Path) -> Path:
    """A test CA, the cloud broker's certificate, a clinic's, and one from another CA."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed: `make test` installs it")
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "rogue-ca"):
        _ssl("req", "-x509", *curve, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
             "-subj", f"/CN={ca}", cwd=d)
    for name, ca, ext in (("cloud", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                          ("clinic", "ca", "extendedKeyUsage=clientAuth"),
                          ("impostor", "rogue-ca", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        _ssl("req", *curve, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", cwd=d)
        _ssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
             cwd=d)
        (d / f"{name}.key").chmod(0o600)
    return d


def _tls_clinic(workdir: Path, pki: Path, cloud: Broker, who: str) -> Broker:
    """docs/fleet.md's clinic config: a persistent MQTT 5 bridge over TLS, client cert."""
    return Broker(workdir, durable=True, extra=[
        "connection cloud",
        f"remote_clientid bridge-{who}",
        f"address 127.0.0.1:{cloud.tls_port}",
        "bridge_protocol_version mqttv50",
        "cleansession false",
        "local_cleansession false",
        "restart_timeout 1 2",
        f"bridge_cafile {pki / 'ca.crt'}",
        f"bridge_certfile {pki / f'{who}.crt'}",
        f"bridge_keyfile {pki / f'{who}.key'}",
        "topic edge-gateway/# out 1",
    ])


def test_clinic_bridge_over_tls_with_a_client_certificate(tmp_path: Path, pg_dsn: str) -> None:
    pki = _pki(tmp_path)
    cloud = Broker(tmp_path / "cloud", extra=BROKER_EXTRA, tls={
        "ca": str(pki / "ca.crt"), "cert": str(pki / "cloud.crt"),
        "key": str(pki / "cloud.key")}).start()
    clinic = _tls_clinic(tmp_path / "clinic", pki, cloud, "clinic")
    rogue = _tls_clinic(tmp_path / "rogue", pki, cloud, "impostor")
    consumer = None
    pubs: list[Publisher] = []
    try:
        consumer = Running(IngestOptions(broker=cloud.url, dsn=pg_dsn, client_id="ing-tls"))
        consumer.start()
        clinic.start()
        rogue.start()
        wait_until(lambda: "Connecting bridge" in clinic.log_text(), 10, "the bridge to start")
        time.sleep(1.5)
        pubs = [Publisher(clinic.port, "hub-a"), Publisher(rogue.port, "hub-b")]
        pubs[0].send(hub_messages("gw1", hub_items("gw1", 40), site="site1", batch_size=4))
        pubs[1].send(hub_messages("gw9", hub_items("gw9", 40), site="site9", batch_size=4))
        wait_until(lambda: item_counts(pg_dsn)[0] >= 40, 20, "items over the TLS bridge")
        time.sleep(2.0)  # what the impostor's bridge might have let through would be here now
        logs = cloud.log_text(), rogue.log_text()
    finally:
        for p in pubs:
            p.close()
        if consumer is not None:
            consumer.stop()
        for b in (clinic, rogue, cloud):
            b.stop()
    assert item_counts(pg_dsn) == (40, 40)
    # The clinic with a certificate from another CA never got a connection at the cloud.
    assert "certificate verify failed" in logs[0]
    assert {g for (g,) in query(pg_dsn, "SELECT gateway FROM edge_gateway.gateways")} == {"gw1"}
