"""TLS with a test CA made here (openssl CLI): a client without a valid certificate is refused."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from mosquitto import Broker, fill, need_mosquitto, subscriber

from edge_gateway.config import MqttSection, SyncSection
from edge_gateway.errors import SyncError
from edge_gateway.store.db import Store
from edge_gateway.sync.mqtt import Link
from edge_gateway.sync.service import SyncService


def _ssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(d: Path, name: str) -> None:
    _ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
         cwd=d)


def _leaf(d: Path, name: str, ca: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext + "\n")
    _ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    _ssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
         "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
         cwd=d)
    (d / f"{name}.key").chmod(0o600)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed: `make test` installs it"
                    " (or apt-get install openssl)")
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _ca(d, "rogue-ca")
    _leaf(d, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost")
    _leaf(d, "gw1", "ca", "extendedKeyUsage=clientAuth")
    _leaf(d, "impostor", "rogue-ca", "extendedKeyUsage=clientAuth")
    return d


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Path) -> Iterator[Broker]:
    need_mosquitto()
    b = Broker(tmp_path / "broker", tls={"ca": str(pki / "ca.crt"),
                                         "cert": str(pki / "server.crt"),
                                         "key": str(pki / "server.key")}).start()
    try:
        yield b
    finally:
        b.stop()


def settings(broker: Broker, pki: Path, **kw: str) -> MqttSection:
    return MqttSection(client_id="gw1", connect_timeout_s=3.0,
                       ca_file=kw.pop("ca_file", str(pki / "ca.crt")), **kw).at(broker.tls_url)


def drain(tmp_path: Path, mqtt: MqttSection, n: int = 5) -> tuple[int, SyncService, list[str]]:
    store = Store.open(tmp_path / "g.db")
    ids = fill(store, n)
    svc = SyncService(store, mqtt, SyncSection(batch_size=1, backoff_initial_s=0.2,
                                               backoff_max_s=0.5), "gw1", "home")
    left = asyncio.run(svc.drain(2.0))
    return left, svc, ids


def test_client_with_valid_certificate_delivers(tmp_path: Path, tls_broker: Broker,
                                                pki: Path) -> None:
    with subscriber(tls_broker) as sub:
        left, svc, ids = drain(tmp_path, settings(tls_broker, pki,
                                                  cert_file=str(pki / "gw1.crt"),
                                                  key_file=str(pki / "gw1.key")))
        assert left == 0
        sub.wait_for(lambda: set(ids) <= set(sub.item_ids()), 5, "every item over TLS")
        svc.store.close()


@pytest.mark.parametrize("who", ["no certificate", "certificate from another CA"])
def test_client_without_valid_certificate_is_refused(tmp_path: Path, tls_broker: Broker,
                                                     pki: Path, who: str) -> None:
    kw = {} if who == "no certificate" else {"cert_file": str(pki / "impostor.crt"),
                                             "key_file": str(pki / "impostor.key")}
    with subscriber(tls_broker) as sub:
        left, svc, _ids = drain(tmp_path, settings(tls_broker, pki, **kw))
        st = svc.status()
        assert left == 5 and st["sent"] == 0 and st["last_error"]
        assert not sub.data()
        svc.store.close()


def test_gateway_refuses_a_broker_it_does_not_trust(tls_broker: Broker, pki: Path) -> None:
    mqtt = settings(tls_broker, pki, ca_file=str(pki / "rogue-ca.crt"),
                    cert_file=str(pki / "gw1.crt"), key_file=str(pki / "gw1.key"))

    async def connect() -> None:
        async with Link.connect(mqtt):
            pass

    with pytest.raises(SyncError, match="certificate"):
        asyncio.run(connect())
