"""One fleet-ingest consumer: MQTT 5 shared subscription -> batches -> PostgreSQL -> PUBACK.

paho-mqtt runs its network loop in its own thread and only queues what arrives; this module's
loop (the caller's thread) takes batches off the queue, commits each in one transaction
(:mod:`edge_gateway.cloud.store.pg`) and only then acknowledges its messages, in the order they
arrived.  A message received on a connection that has since dropped is committed (inserts are
idempotent) but never acknowledged on the new connection: the broker re-delivers it there, and
the copy is dropped as a duplicate.  While PostgreSQL is unreachable nothing is acknowledged;
the broker stops sending once ``receive_maximum`` messages are unacknowledged, so memory stays
bounded, and the commit is retried with full-jitter backoff.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_gateway.backoff import Backoff
from edge_gateway.cloud import decode
from edge_gateway.cloud.store import pg
from edge_gateway.config import parse_broker_url
from edge_gateway.errors import GatewayError
from edge_gateway.logfmt import log

LOG = logging.getLogger("edge_gateway.cloud.ingest")


class CloudError(GatewayError):
    """The ingest could not start (database or broker settings)."""


@dataclass(frozen=True, slots=True)
class IngestOptions:
    broker: str  # mqtt://HOST:PORT or mqtts://HOST:PORT
    dsn: str  # libpq connection string
    group: str = "ingest"
    client_id: str = ""  # default: edge-gateway-ingest-<host name>
    prefix: str = "edge-gateway"
    #: A batch is committed at this many messages …
    batch_messages: int = 500
    #: … or when its oldest message has waited this long.
    batch_delay_s: float = 0.05
    #: … or when nothing more arrived for this long: the broker may be waiting for our acks
    #: (Receive Maximum), so holding on would only add lag.
    batch_idle_s: float = 0.005
    #: MQTT 5 Receive Maximum: unacknowledged messages the broker may send us.
    receive_maximum: int = 1000
    session_expiry_s: int = 7 * 24 * 3600
    keepalive_s: int = 30
    ca_file: str = ""
    username: str = ""
    password: str = ""
    limits: decode.Limits = field(default_factory=decode.Limits)

    def resolved_client_id(self) -> str:
        return self.client_id or f"edge-gateway-ingest-{socket.gethostname()}"


@dataclass(slots=True)
class Held:
    """A received message not yet acknowledged."""

    gen: int  # connection generation it arrived on
    mid: int
    qos: int
    topic: str
    payload: bytes
    decoded: decode.Decoded
    received_at: datetime


#: Called after each commit with the batch and the commit time (tests, benchmarks).
OnCommit = Callable[[Sequence[Held], pg.BatchResult, float], None]


class Ingest:
    """Run with :meth:`run` until ``stop`` is set; then commit and acknowledge what is held."""

    def __init__(self, opts: IngestOptions, *, on_commit: OnCommit | None = None,
                 leave: bool = False) -> None:
        self.opts = opts
        self.client_id = opts.resolved_client_id()
        self.on_commit = on_commit
        #: Scale-down (docs/fleet.md): unsubscribe, drain, then end the session.
        self.leave = leave
        self.inbox: queue.SimpleQueue[Held] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _gen and the acks against a reconnect
        self._gen = 0
        self._connected = threading.Event()
        self.connects = 0  # successful connections so far (the first included)
        self._partitions = pg.Partitions()
        self._conn: pg.Connection | None = None
        self.db_backoff = Backoff(initial=0.2, cap=10.0, stable_s=5.0)
        self.stats = {"messages": 0, "items": 0, "duplicates": 0, "dead_letters": 0,
                      "commits": 0, "db_errors": 0}
        host, port, tls = parse_broker_url(opts.broker)
        self._host, self._port, self._tls = host, port, tls
        self.client = self._make_client()

    # ------------------------------------------------------------------ MQTT side
    def _make_client(self) -> paho.Client:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        protocol=paho.MQTTv5)
        c.manual_ack_set(True)  # PUBACK only after the commit (Ingest._ack)
        c.reconnect_delay_set(1, 30)
        if self.opts.username:
            c.username_pw_set(self.opts.username, self.opts.password or None)
        if self._tls:
            ctx = ssl.create_default_context(cafile=self.opts.ca_file or None)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            c.tls_set_context(ctx)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_connect_fail = lambda *_: log(LOG, logging.WARNING, "mqtt.unreachable",
                                           broker=f"{self._host}:{self._port}")
        return c

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                    props: Any) -> None:
        if rc.is_failure:
            log(LOG, logging.WARNING, "mqtt.refused", reason=str(rc))
            return
        with self._lock:
            self._gen += 1
        self.connects += 1
        prefix = self.opts.prefix.rstrip("/")
        # Retained messages never come through a shared subscription: the gateways' retained
        # status needs its own (unshared) one.  Retain handling 1: only on a new subscription.
        # Always subscribe again, session or not: mosquitto (2.0.11) restores a session's plain
        # subscriptions from its persistence file after a restart but not its shared ones.
        client.subscribe([
            (f"$share/{self.opts.group}/{prefix}/#", SubscribeOptions(qos=1)),
            (f"{prefix}/+/+/status", SubscribeOptions(qos=1, retainHandling=1)),
        ])
        self._connected.set()
        log(LOG, logging.INFO, "mqtt.connected", client_id=self.client_id,
            session_present=bool(flags.session_present))

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                       props: Any) -> None:
        with self._lock:
            self._gen += 1  # what the old connection delivered is never acknowledged now
        self._connected.clear()
        log(LOG, logging.WARNING if rc.is_failure else logging.INFO, "mqtt.disconnected",
            reason=str(rc))

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        decoded = decode.classify(msg.topic, payload, self.opts.prefix, self.opts.limits)
        if LOG.isEnabledFor(logging.DEBUG):  # no payload: health data stays out of logs
            log(LOG, logging.DEBUG, "mqtt.received", mid=msg.mid, dup=bool(msg.dup),
                what=type(decoded).__name__)
        self.inbox.put(Held(self._gen, msg.mid, msg.qos, msg.topic, payload, decoded,
                            datetime.now(UTC)))

    def _connect_mqtt(self) -> None:
        p = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        p.SessionExpiryInterval = self.opts.session_expiry_s
        p.ReceiveMaximum = self.opts.receive_maximum
        self.client.connect_async(self._host, self._port, keepalive=self.opts.keepalive_s,
                                  clean_start=False, properties=p)
        self.client.loop_start()

    def _ack(self, batch: Sequence[Held]) -> int:
        """PUBACK the batch in arrival order; skip what came on an earlier connection."""
        n = 0
        with self._lock:
            for h in batch:
                if h.qos > 0 and h.gen == self._gen and self._connected.is_set():
                    self.client.ack(h.mid, h.qos)
                    n += 1
        return n

    # ------------------------------------------------------------------ database side
    def _db(self) -> pg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = pg.connect(self.opts.dsn)
        return self._conn

    def _drop_db(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None

    def _commit(self, batch: Sequence[Held]) -> pg.BatchResult:
        conn = self._db()
        now = datetime.now(UTC)
        times = [it.created_at for h in batch if isinstance(h.decoded, decode.DataMessage)
                 for it in h.decoded.items]
        self._partitions.ensure(conn, pg.wanted_months(times, now))
        sent = [h.decoded.sent_at for h in batch
                if isinstance(h.decoded, decode.DataMessage) and h.decoded.sent_at is not None]
        lag = (now - max(sent)).total_seconds() if sent else None
        try:
            return pg.commit(conn, self.client_id, [h.decoded for h in batch],
                             [h.received_at for h in batch], lag)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as err:
            if len(batch) == 1:  # this message is what the database refuses: dead letter
                h = batch[0]
                log(LOG, logging.WARNING, "ingest.refused", topic=h.topic,
                    error=type(err).__name__)
                letter = decode.DeadLetter(h.topic, f"store: {str(err)[:200]}", h.payload)
                return pg.commit(conn, self.client_id, [letter], [h.received_at])
            # Find the message(s) the database refuses without blocking the others.
            results = [self._commit([h]) for h in batch]
            return pg.BatchResult(*(sum(getattr(r, f) for r in results) for f in
                                    ("messages", "items", "inserted", "duplicates",
                                     "dead_letters")))

    def _commit_until_done(self, batch: Sequence[Held],
                           stop: threading.Event) -> pg.BatchResult | None:
        while True:
            try:
                result = self._commit(batch)
                self.db_backoff.reset()
                return result
            except psycopg.OperationalError as err:
                self.stats["db_errors"] += 1
                self._drop_db()
                pause = self.db_backoff.next()
                log(LOG, logging.WARNING, "db.unavailable", error=str(err).splitlines()[0][:200],
                    held=len(batch), retry_in_s=round(pause, 2))
                if stop.is_set():
                    return None  # not acknowledged: the broker keeps them for the next run
                stop.wait(pause)

    # ------------------------------------------------------------------ the loop
    def _collect(self, stop: threading.Event) -> list[Held]:
        try:
            first = self.inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.opts.batch_delay_s
        while len(batch) < self.opts.batch_messages:
            try:
                batch.append(self.inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0 or stop.is_set():
                break
            try:
                batch.append(self.inbox.get(timeout=min(left, self.opts.batch_idle_s)))
            except queue.Empty:
                break
        return batch

    def _drain(self) -> list[Held]:
        out: list[Held] = []
        while True:
            try:
                out.append(self.inbox.get_nowait())
            except queue.Empty:
                return out

    def _handle(self, batch: list[Held], stop: threading.Event) -> None:
        result = self._commit_until_done(batch, stop)
        if result is None:
            return
        acked = self._ack(batch)
        for k, v in (("messages", result.messages), ("items", result.inserted),
                     ("duplicates", result.duplicates), ("dead_letters", result.dead_letters),
                     ("commits", 1)):
            self.stats[k] += v
        if result.dead_letters:
            log(LOG, logging.WARNING, "ingest.dead_letters", n=result.dead_letters)
        log(LOG, logging.DEBUG, "ingest.committed", messages=result.messages,
            inserted=result.inserted, duplicates=result.duplicates, acked=acked)
        if self.on_commit is not None:
            self.on_commit(batch, result, time.time())

    def start(self) -> None:
        """Open the database (create or migrate the schema), then connect to the broker."""
        try:
            version = pg.migrate(self._db())
        except psycopg.Error as err:
            raise CloudError(f"cannot open the database: {str(err).splitlines()[0]}",
                             hint="check --dsn and that PostgreSQL runs") from err
        log(LOG, logging.INFO, "ingest.start", client_id=self.client_id, group=self.opts.group,
            schema_version=version)
        self._connect_mqtt()

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set, then commit and acknowledge what is held and leave."""
        self.start()
        try:
            while not stop.is_set():
                batch = self._collect(stop)
                if batch:
                    self._handle(batch, stop)
            if self.leave:
                self.client.unsubscribe(f"$share/{self.opts.group}/"
                                        f"{self.opts.prefix.rstrip('/')}/#")
                time.sleep(0.5)  # what the broker had in flight to us still arrives
            batch = self._drain()
            if batch:
                self._handle(batch, stop)
        finally:
            self.close()

    def close(self) -> None:
        p = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
        if self.leave:
            p.SessionExpiryInterval = 0  # end the session: nothing stays queued for us
        try:
            self.client.disconnect(properties=p)
        except (OSError, ValueError):
            pass
        self.client.loop_stop()
        self._drop_db()
        log(LOG, logging.INFO, "ingest.stop", **self.stats)
