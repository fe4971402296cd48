"""The one place paho-mqtt is imported: an MQTT 5 link bridged to asyncio.

One ``Link`` is one broker connection.  A fresh paho ``Client`` is made for every connection on
purpose: paho keeps unacknowledged publishes in memory and re-sends them after a reconnect, and
we want exactly one owner of "what is still unsent" — the outbox.  When a connection drops,
every publish still waiting for its PUBACK fails, the rows stay pending, and the next connection
publishes them again (at-least-once; consumers de-duplicate on the item ids).

paho runs on the asyncio loop, not in its own thread: its socket callbacks register the socket
with the loop (``add_reader``/``add_writer``) and a named task calls ``loop_misc`` for pings
and keepalive checks.  Only the blocking TCP connect + TLS handshake runs in a worker thread, so
an unreachable broker never stalls the daemon's loop (BLE sessions share it).

Incoming messages (the console's commands, ``SyncService`` subscribes only when a key is
configured) are acknowledged by hand: ``on_message`` only queues them (``Link.incoming``), and
the PUBACK goes out (``Link.ack``) once the consumer has committed the outcome, so a hub killed
in between gets the message again from its persistent session.

Black-holed links: paho sends PINGREQ once nothing was received for ``keepalive`` seconds and
closes the socket when the PINGRESP has not come ``keepalive`` seconds later, so a dead link is
noticed within 2 × keepalive (plus one tick of the misc task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_gateway.config import MqttSection
from edge_gateway.errors import SyncError

log = logging.getLogger(__name__)

#: How often the misc task runs paho's keepalive bookkeeping (seconds, at most).
_TICK_S = 0.5


class PublishRefused(SyncError):
    """The broker answered a publish with a failure reason code (e.g. 0x87 not authorized)."""

    def __init__(self, topic: str, reason: str, code: int) -> None:
        self.topic = topic
        self.code = code
        super().__init__(f"broker refused the publish to {topic}: {reason} (0x{code:02x})",
                         hint="check the broker's ACL for this gateway's user and topics")


class SubscribeRefused(SyncError):
    """The broker answered a subscribe with a failure reason code (e.g. 0x87 not authorized)."""

    def __init__(self, topic: str, reason: str, code: int) -> None:
        self.topic = topic
        self.code = code
        super().__init__(f"broker refused the subscription to {topic}: {reason} (0x{code:02x})",
                         hint="check the broker's ACL for this gateway's user and topics")


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message the broker delivered on a subscription; ``Link.ack`` acknowledges it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool


#: Incoming messages queued at most; beyond, one is left unacknowledged (the broker sends it
#: again on the next connection) rather than held in memory.
MAX_INCOMING = 256


@dataclass(frozen=True, slots=True)
class Retained:
    """A retained QoS 1 message: the status topic's online/offline and the last will."""

    topic: str
    payload: bytes


class _TrackingContext(ssl.SSLContext):
    """Remembers the sockets it wrapped, so one whose handshake failed can be closed.

    paho wraps the TCP socket and lets the exception from a failed handshake escape without
    closing the wrapped socket; left to the garbage collector it would leak a descriptor.
    """

    wrapped: list[ssl.SSLSocket]

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock = super().wrap_socket(*args, **kwargs)
        self.wrapped.append(sock)
        return sock


def tls_context(s: MqttSection) -> ssl.SSLContext:
    ctx = _TrackingContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.wrapped = []
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if s.ca_file:
            ctx.load_verify_locations(cafile=s.ca_file)
        else:
            ctx.load_default_certs()
        if s.cert_file:
            ctx.load_cert_chain(s.cert_file, s.key_file or None)
    except (OSError, ssl.SSLError) as err:
        raise SyncError(f"TLS files for {s.url} cannot be loaded: {err}", retryable=False,
                        hint="check mqtt.ca_file, mqtt.cert_file and mqtt.key_file") from err
    return ctx


class Link:
    """One MQTT 5 connection.  Use ``async with Link.connect(...) as link``.

    ``settings`` is the config's ``[mqtt]`` section as ``config.resolve_mqtt`` resolves it (host
    set, client id and password filled in).
    """

    def __init__(self, settings: MqttSection, will: Retained | None) -> None:
        self.settings = settings
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._will = will
        self._client = self._make_client()
        self._sock: Any = None
        self._want_write = False
        self._pending: dict[int, tuple[asyncio.Future[None], str]] = {}
        self._props_cache: dict[tuple[str | None, bool], Properties] = {}
        self._connack: asyncio.Future[None] = self._loop.create_future()
        self._subscribing: dict[int, tuple[asyncio.Future[None], str]] = {}
        #: Messages delivered on subscriptions, in arrival order (see ``ack``).
        self.incoming: asyncio.Queue[Incoming] = asyncio.Queue(MAX_INCOMING)
        self.closed = asyncio.Event()
        self.close_reason = "not connected"
        #: The broker's Receive Maximum (MQTT 5 CONNACK); 65535 when it names none.
        self.receive_maximum = 65535
        #: The broker's Maximum Packet Size (MQTT 5 CONNACK); None when it names none.
        self.maximum_packet_size: int | None = None

    # ------------------------------------------------------------------ set-up
    def _make_client(self) -> paho.Client:
        s = self.settings
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=paho.MQTTv5,
            reconnect_on_failure=False,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.manual_ack_set(True)
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        # We bound what is in flight ourselves; paho must never hold a message back.
        client.max_inflight_messages_set(max(s.inflight, 1) + 2)
        client.max_queued_messages_set(0)
        client.connect_timeout = s.connect_timeout_s
        if s.username:
            client.username_pw_set(s.username, s.password or None)
        if self._will is not None:
            client.will_set(self._will.topic, self._will.payload, qos=1, retain=True)
        self._ctx: ssl.SSLContext | None = None
        if s.tls:
            self._ctx = tls_context(s)
            client.tls_set_context(self._ctx)
        return client

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, settings: MqttSection, *, will: Retained | None = None,
                      online: Retained | None = None,
                      offline: Retained | None = None) -> AsyncIterator[Link]:
        """Connect, publish ``online``; on exit publish ``offline`` and disconnect cleanly."""
        link = cls(settings, will)
        await link._open()
        try:
            if online is not None:
                try:
                    await asyncio.wait_for(
                        link.publish(online.topic, online.payload, retain=True),
                        settings.connect_timeout_s)
                except PublishRefused as err:
                    # A status topic the ACL forbids must not stop the data from flowing.
                    log.warning("mqtt %s: %s", settings.url, err)
                except TimeoutError:
                    raise SyncError(f"{settings.url}: no PUBACK for the status message within"
                                    f" {settings.connect_timeout_s:g} s") from None
            yield link
        finally:
            await link.close(offline)

    async def _open(self) -> None:
        s = self.settings
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.session_expiry_s
        connecting = asyncio.ensure_future(asyncio.to_thread(
            self._client.connect, s.host, s.port, keepalive=s.keepalive_s,
            clean_start=False, properties=props,
        ))
        try:
            await asyncio.shield(connecting)
        except asyncio.CancelledError:
            # The worker thread cannot be interrupted: let it finish (bounded by the connect
            # timeout) so the socket it may have opened is closed, not leaked.
            with contextlib.suppress(BaseException):
                await connecting
            self._discard_sockets()
            raise
        except (OSError, ValueError) as err:  # ssl errors are OSErrors
            self._discard_sockets()
            raise SyncError(f"cannot connect to {s.url}: {err}", hint=_hint(err)) from err
        # Small packets and Nagle's algorithm meet delayed ACKs: without NODELAY every publish
        # waits up to 40 ms for the previous one's TCP ACK (measured: 56 msg/s on loopback).
        with contextlib.suppress(OSError, AttributeError):
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The socket was opened in the worker thread: register it with the loop now.
        self._loop.add_reader(self._sock, self._read)
        self._loop.add_writer(self._sock, self._write)
        waiter: asyncio.Future[Any] = asyncio.ensure_future(self.closed.wait())
        try:
            async with asyncio.timeout(s.connect_timeout_s):
                await asyncio.wait([self._connack, waiter], return_when=asyncio.FIRST_COMPLETED)
            if not self._connack.done():
                raise SyncError(f"{s.url}: connection closed during CONNECT: "
                                f"{self.close_reason}")
            self._connack.result()  # raises the CONNACK refusal
        except TimeoutError:
            await self.close()
            raise SyncError(f"{s.url}: no answer to CONNECT within {s.connect_timeout_s:g} s",
                            hint="the broker may be overloaded or the link black-holed") from None
        except BaseException:
            await self.close()
            raise
        finally:
            waiter.cancel()
            if not self._connack.done():
                self._connack.cancel()

    def _discard_sockets(self) -> None:
        if isinstance(self._ctx, _TrackingContext):
            for sock in self._ctx.wrapped:
                sock.close()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    # ------------------------------------------------------------------ loop bridge
    def _on_loop(self) -> bool:
        return threading.get_ident() == self._thread

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # Called from the worker thread inside connect(); registered once it returns.
        self._sock = sock

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._on_loop():
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._on_loop():
            self._loop.add_writer(sock, self._write)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._on_loop():
            self._loop.remove_writer(sock)

    def _read(self) -> None:
        while True:
            rc = self._client.loop_read()
            if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
                self._lost(f"read failed: {paho.error_string(rc)}")
                return
            # TLS may hold decrypted bytes that the socket will never signal as readable
            # again; paho's own loop checks pending() for the same reason.
            sock = self._sock
            if self.closed.is_set() or not isinstance(sock, ssl.SSLSocket) or not sock.pending():
                return

    def _write(self) -> None:
        rc = self._client.loop_write()
        if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            self._lost(f"write failed: {paho.error_string(rc)}")

    async def run_keepalive(self) -> None:
        """Drive paho's pings and keepalive checks until the link closes."""
        tick = min(_TICK_S, self.settings.keepalive_s / 4)
        while not self.closed.is_set():
            self._client.loop_misc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed.wait(), tick)

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if self._connack.done():
            return
        if reason_code.is_failure:
            self._connack.set_exception(SyncError(
                f"{self.settings.url} refused the connection: {reason_code}",
                hint="check mqtt.username, the password and the broker's ACL"
                if reason_code.value in (0x86, 0x87) else None))
            return
        rm = getattr(properties, "ReceiveMaximum", None)
        if isinstance(rm, int) and rm > 0:
            self.receive_maximum = rm
        mps = getattr(properties, "MaximumPacketSize", None)
        if isinstance(mps, int) and mps > 0:
            self.maximum_packet_size = mps
        self._connack.set_result(None)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        self._lost(f"disconnected: {reason_code}")

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        entry = self._pending.pop(mid, None)
        if entry is None or entry[0].done():
            return
        fut, topic = entry
        if reason_code.is_failure:
            # e.g. 0x87 Not authorized from an ACL: a counted failure, never a silent success.
            fut.set_exception(PublishRefused(topic, str(reason_code), reason_code.value))
        else:
            fut.set_result(None)

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int,
                      reason_codes: list[ReasonCode], properties: Properties | None) -> None:
        entry = self._subscribing.pop(mid, None)
        if entry is None or entry[0].done():
            return
        fut, topic = entry
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            fut.set_exception(SubscribeRefused(topic, str(failed[0]), failed[0].value))
        else:
            fut.set_result(None)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            self.incoming.put_nowait(Incoming(message.topic, bytes(message.payload), message.mid,
                                              message.qos, bool(message.retain)))
        except asyncio.QueueFull:
            log.warning("mqtt %s: %d incoming messages waiting; %s left for the next "
                        "connection", self.settings.url, MAX_INCOMING, message.topic)
        except UnicodeDecodeError:  # a topic that is not UTF-8 (a broken broker): never ours
            log.warning("mqtt %s: a message with an undecodable topic ignored",
                        self.settings.url)

    def _lost(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        log.info("mqtt %s: %s", self.settings.url, reason)
        self._teardown(reason)

    def _teardown(self, reason: str) -> None:
        self.closed.set()
        if self._sock is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._sock)
                self._loop.remove_writer(self._sock)
        err = SyncError(f"connection lost before PUBACK ({reason})")
        for fut, _topic in [*self._pending.values(), *self._subscribing.values()]:
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()
        self._subscribing.clear()

    # ------------------------------------------------------------------ publishing
    @property
    def window(self) -> int:
        """How many publishes may wait for their PUBACK at once (one slot kept for status)."""
        return max(1, min(self.settings.inflight, self.receive_maximum - 1))

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False,
        user_properties: Sequence[tuple[str, str]] = (), content_type: str | None = None,
        utf8: bool = True,
    ) -> asyncio.Future[None]:
        """QoS 1 publish; the future resolves on a success PUBACK and fails otherwise."""
        fut: asyncio.Future[None] = self._loop.create_future()
        if self.closed.is_set():
            fut.set_exception(SyncError(f"not connected ({self.close_reason})"))
            return fut
        props = self._publish_properties(tuple(user_properties), content_type, utf8)
        info = self._client.publish(topic, payload, qos=1, retain=retain, properties=props)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            fut.set_exception(SyncError(f"publish failed: {paho.error_string(info.rc)}"))
            return fut
        self._pending[info.mid] = (fut, topic)
        return fut

    def subscribe(self, topic: str) -> asyncio.Future[None]:
        """QoS 1 subscription; the future resolves on a success SUBACK and fails otherwise.

        Retained messages on ``topic`` are sent again at every subscribe (MQTT 5 retain
        handling 0): the consumer must tell a re-delivery from a new message itself.  No Local
        is set: what this client publishes never comes back to it (a patient named ``cmd``
        would otherwise have the hub's own data topics match its command filter).
        """
        fut: asyncio.Future[None] = self._loop.create_future()
        if self.closed.is_set():
            fut.set_exception(SyncError(f"not connected ({self.close_reason})"))
            return fut
        rc, mid = self._client.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True))
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            fut.set_exception(SyncError(f"subscribe failed: {paho.error_string(rc)}"))
            return fut
        self._subscribing[mid] = (fut, topic)
        return fut

    def ack(self, msg: Incoming) -> None:
        """PUBACK ``msg`` (after its outcome is committed); nothing once the link closed (the
        broker then sends it again on the next connection of this session)."""
        if msg.qos > 0 and not self.closed.is_set():
            self._client.ack(msg.mid, msg.qos)

    def _publish_properties(self, user: tuple[tuple[str, str], ...], content_type: str | None,
                            utf8: bool) -> Properties:
        # paho's Properties are slow to build (a name lookup per attribute set); most
        # publishes share the same few, and paho only reads them, so reuse them.
        key = (content_type, utf8)
        cached = self._props_cache.get(key) if not user else None
        if cached is not None:
            return cached
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if user:
            props.UserProperty = list(user)
        if content_type:
            props.ContentType = content_type
        props.PayloadFormatIndicator = 1 if utf8 else 0
        if not user:
            self._props_cache[key] = props
        return props

    async def close(self, offline: Retained | None = None, grace_s: float = 2.0) -> None:
        """Publish ``offline`` (so the will is not needed), then DISCONNECT and close."""
        if not self.closed.is_set():
            if offline is not None:
                with contextlib.suppress(SyncError, TimeoutError):
                    await asyncio.wait_for(
                        self.publish(offline.topic, offline.payload, retain=True), grace_s)
            if not self.closed.is_set():
                self._client.disconnect()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.closed.wait(), grace_s)
        self._teardown("closed")
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()


def _hint(err: BaseException) -> str | None:
    if isinstance(err, ssl.SSLCertVerificationError):
        return "the broker's certificate is not trusted: check mqtt.ca_file and the host name"
    if isinstance(err, ssl.SSLError):
        return "TLS handshake failed: check the CA, client certificate and key"
    if isinstance(err, ConnectionRefusedError):
        return "nothing listens there: is the broker running, and is the port right?"
    if isinstance(err, socket.gaierror):
        return "the broker's host name does not resolve"
    return None
