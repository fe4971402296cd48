"""Commands to hubs: sign, store, publish retained with an expiry, clear once answered.

A command is first stored (``console_commands``, status ``pending``) by the request that made
it; this loop publishes what the broker has not acknowledged yet (retained, QoS 1, MQTT 5
Message Expiry Interval = seconds until ``expires_at``), folds the hubs' results (``command``
items landed by the ingest) into the commands, and clears the retained message of every
command that is done (an empty retained publish on the same topic).  A broker that is away
only delays all this: nothing is lost, the loop retries every ``interval_s``.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from datetime import UTC, datetime
from typing import Any

from edge_gateway import commands
from edge_gateway.cloud.store import console as store
from edge_gateway.config import parse_broker_url
from edge_gateway.logfmt import log

LOG = logging.getLogger("edge_gateway.cloud.console")
#: How long a command stays valid (a hub offline for a week still gets it).
DEFAULT_TTL_S = 8 * 86400.0


class Commander:
    """Signs commands and owns the MQTT client that delivers them (paho, MQTT 5)."""

    def __init__(self, private_key_pem: bytes, *, broker: str | None, prefix: str,
                 username: str | None = None, password: str | None = None,
                 ca_file: str | None = None, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.key = private_key_pem
        self.public_key = commands.public_key_of(private_key_pem)
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.broker = broker
        self.client: Any = None
        self.connected = threading.Event()
        if broker:
            self._make_client(broker, username, password, ca_file)

    def _make_client(self, broker: str, username: str | None, password: str | None,
                     ca_file: str | None) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        host, port, tls = parse_broker_url(broker)
        c = paho.Client(CallbackAPIVersion.VERSION2,
                        client_id=f"edge-gateway-console-{socket.gethostname()}",
                        protocol=paho.MQTTv5)
        c.reconnect_delay_set(1, 30)
        if username:
            c.username_pw_set(username, password or None)
        if tls:
            ctx = ssl.create_default_context(cafile=ca_file or None)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            c.tls_set_context(ctx)
        c.on_connect = lambda *a: self.connected.set()
        c.on_disconnect = lambda *a: self.connected.clear()
        c.connect_async(host, port, keepalive=30)
        c.loop_start()
        self.client = c

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    # ------------------------------------------------------------------ making
    def make(self, db: store.Db, *, command: str, gateway: str, site: str, patient: str,
             args: dict[str, Any], actor: str) -> dict[str, Any]:
        """Sign and store a command (published by :meth:`pump`); returns the command."""
        cmd = commands.new_command(command=command, gateway=gateway, site=site,
                                   patient=patient, args=args, actor=actor,
                                   issued_at=datetime.now(UTC), ttl_s=self.ttl_s)
        payload = commands.sign(cmd, self.key)
        topic = commands.command_topic(self.prefix, site, gateway, cmd["id"])
        store.add_command(db, cmd, topic, payload)
        return cmd

    # ------------------------------------------------------------------ delivering
    def _publish(self, topic: str, payload: bytes, expiry_s: int | None) -> bool:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        if self.client is None or not self.connected.is_set():
            return False
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if expiry_s is not None:
            props.MessageExpiryInterval = max(1, expiry_s)
        info = self.client.publish(topic, payload, qos=1, retain=True, properties=props)
        info.wait_for_publish(10)
        return bool(info.is_published())

    def pump(self, db: store.Db) -> dict[str, int]:
        """One round: publish unsent commands, fold results, clear finished ones."""
        sent = cleared = 0
        now = datetime.now(UTC)
        for cid, topic, payload, expires_at in store.unsent(db):
            left = int((expires_at - now).total_seconds())
            if left > 0 and self._publish(topic, payload, left):
                store.mark_sent(db, cid)
                sent += 1
                log(LOG, logging.INFO, "command.sent", id=cid, topic=topic)
        for cid, topic, status in store.finish_results(db):
            if self._publish(topic, b"", None):
                store.mark_cleared(db, cid)
                cleared += 1
                log(LOG, logging.INFO, "command.done", id=cid, status=status)
        return {"sent": sent, "cleared": cleared}
