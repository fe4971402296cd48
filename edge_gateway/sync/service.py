"""The sync loop: outbox -> MQTT, forever, with full-jitter reconnects.

``SyncService.run(stop, wake)`` is the task the daemon runs; ``drain(timeout)`` publishes what
is pending and returns (``sync now``, the demo's shutdown).  Per connection, a pump keeps at
most ``window`` publishes between "published" and "settled in SQLite": a slot is freed only
once the PUBACK's outcome is committed, so a gateway killed at any instant re-sends at most one
window of messages (the only duplicates a consumer sees).

With a ``commands`` handler (the daemon wires one when ``[commands]`` pins a console key), each
connection also subscribes to ``<prefix>/<site>/<gateway>/cmd/+`` and a third task hands every
command message to the handler, one at a time, and acknowledges it once handled (docs/mqtt.md).

Run standalone for tests and tools::

    python -m edge_gateway.sync.service --db var/gateway.db --broker mqtt://127.0.0.1:1883
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import fcntl
import functools
import logging
import os
import random
import signal
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_gateway import __version__
from edge_gateway.backoff import Backoff, full_jitter
from edge_gateway.commands import command_topic
from edge_gateway.config import MqttSection, SyncSection
from edge_gateway.errors import StoreError, SyncError
from edge_gateway.store.db import Store
from edge_gateway.store.outbox import Outbox
from edge_gateway.sync import payload
from edge_gateway.sync.mqtt import Incoming, Link, PublishRefused, Retained, SubscribeRefused

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Flight:
    """What one connection has between "published" and "settled"."""

    outstanding: dict[asyncio.Future[None], payload.Message] = field(default_factory=dict)
    seqs: set[int] = field(default_factory=set)
    done: list[tuple[asyncio.Future[None], payload.Message, BaseException | None]] = field(
        default_factory=list)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    #: Messages built ahead from the outbox, in send order; dropped when new items are
    #: announced (``wake``) so a fresh alert is not stuck behind a prefetched backlog.
    ready: collections.deque[payload.Message] = field(default_factory=collections.deque)


class SyncBusy(SyncError):
    """Another process (the daemon) is publishing this database's outbox right now."""

    def __init__(self) -> None:
        super().__init__("the daemon is running and syncing this database", retryable=True,
                         hint="nothing to do: it publishes what is pending")


class SyncLock:
    """An exclusive ``flock`` on ``<database>.sync-lock``, held while publishing.

    The kernel drops it when the holder exits, even on SIGKILL: a stale lock file is harmless.
    Without a lock file (a folder this account may not write) the sync goes on unlocked.
    """

    POLL_S = 1.0

    def __init__(self, db: Path) -> None:
        self.path = Path(str(db) + ".sync-lock")
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if free; True when held (or when no lock file can exist here)."""
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
            except OSError as err:
                log.warning("sync: no lock file %s (%s); syncing unlocked", self.path,
                            err.strerror)
                return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def __enter__(self) -> SyncLock:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None


class SyncService:
    """Publishes the outbox of ``store`` to the broker in ``mqtt`` (None: keep buffering).

    ``mqtt`` is the config's ``[mqtt]`` as ``config.resolve_mqtt`` resolves it, ``sync`` its
    ``[sync]``: batch size, format, compression, idle interval, reconnect backoff.
    ``commands(topic, payload)``, when given, receives the console's command messages (the
    runtime's ``CommandApplier.handle``); without it the sync does not subscribe at all.
    """

    #: A publish the broker refused (e.g. not authorized) is retried after this long at first.
    REFUSED_RETRY_S = 60.0
    #: On stop, how long to wait for PUBACKs of what is already in flight.
    STOP_GRACE_S = 2.0

    def __init__(
        self, store: Store, mqtt: MqttSection | None, sync: SyncSection, gateway_id: str,
        site_id: str, *, clock: Callable[[], datetime] = _now,
        rng: random.Random | None = None,
        commands: Callable[[str, bytes], object] | None = None,
    ) -> None:
        self.store = store
        self.commands = commands
        self.mqtt = mqtt
        self.sync = sync
        self.outbox = Outbox(store, gateway_id)
        self.gateway = gateway_id
        self.site = site_id
        self.clock = clock
        self.rng = rng or random.Random()
        prefix = mqtt.topic_prefix if mqtt else "edge-gateway"
        self.opts = payload.Options(gateway=gateway_id, site=site_id, prefix=prefix, sync=sync)
        if sync.compression != "none":
            payload.compress(b"{}", sync.compression)  # fail at start when zstd is missing
        self.status_topic = payload.status_topic(prefix, site_id, gateway_id)
        self.command_filter = command_topic(prefix, site_id, gateway_id, "+")
        self.connected = False
        #: Set when a handled command queued its result, so the pump publishes it at once.
        self._wake: asyncio.Event | None = None
        #: Items the broker refused, held back until the time given (loop clock).
        self._held: dict[int, float] = {}
        self._refusals: dict[int, int] = {}

    # ------------------------------------------------------------------ public
    async def run(self, stop: asyncio.Event, wake: asyncio.Event | None = None,
                  drain_timeout_s: float = 0.0) -> None:
        """Sync until ``stop`` is set; then publish for up to ``drain_timeout_s`` more."""
        await self._run(stop, wake, until_empty=False, drain_timeout_s=drain_timeout_s)

    async def drain(self, timeout_s: float) -> int:
        """Publish until the outbox is empty or ``timeout_s`` passes; return what is pending."""
        if self.outbox.pending() == 0:
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        await self._run(stop, None, until_empty=True, drain_timeout_s=timeout_s,
                        deadline=loop.time() + timeout_s)
        return self.outbox.pending()

    def status(self) -> dict[str, Any]:
        st = self.outbox.status()
        st["connected"] = self.connected
        return st

    # ------------------------------------------------------------------ connection loop
    def _retained(self, status: str) -> Retained:
        return Retained(self.status_topic, payload.status_payload(
            status, self.gateway, self.site, self.clock() if status == "online" else None,
            version=__version__))

    async def _run(self, stop: asyncio.Event, wake: asyncio.Event | None, *, until_empty: bool,
                   drain_timeout_s: float, deadline: float | None = None) -> None:
        if self.mqtt is None:
            log.warning("no broker configured: summaries and alerts stay in the outbox")
            await stop.wait()
            return
        # One publisher per database: the daemon's loop and a `sync now` beside it would
        # both take the same pending rows and publish them twice.  `sync now` (until_empty)
        # gives way at once; the daemon waits for a `sync now` to finish.
        with SyncLock(self.store.path) as lock:
            while not lock.acquire():
                if until_empty:
                    raise SyncBusy()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), SyncLock.POLL_S)
                if stop.is_set():
                    return
            await self._run_locked(stop, wake, until_empty=until_empty,
                                   drain_timeout_s=drain_timeout_s, deadline=deadline)

    async def _run_locked(self, stop: asyncio.Event, wake: asyncio.Event | None, *,
                          until_empty: bool, drain_timeout_s: float,
                          deadline: float | None) -> None:
        assert self.mqtt is not None
        loop = asyncio.get_running_loop()
        if wake is None and self.commands is not None:
            wake = asyncio.Event()  # a handled command's result goes out at once
        self._wake = wake
        backoff = Backoff(self.sync.backoff_initial_s, self.sync.backoff_max_s, rng=self.rng)
        while True:
            if deadline is not None and loop.time() >= deadline:
                return
            if stop.is_set() and deadline is None:
                return
            try:
                async with Link.connect(self.mqtt, will=self._retained("offline"),
                                        online=self._retained("online"),
                                        offline=self._retained("offline")) as link:
                    backoff.reset()
                    self.connected = True
                    log.info("sync: connected to %s", self.mqtt.url)
                    done = await self._session(link, stop, wake, until_empty,
                                               drain_timeout_s, deadline)
                if done or (until_empty and self.outbox.pending() == 0):
                    return  # finished: stopped or drained
                self._note(link.close_reason)
            except SyncError as err:
                log.warning("sync: %s", err)
                self._note(str(err))
                if not err.retryable:
                    raise
            except sqlite3.OperationalError as err:
                # e.g. "database is locked" beyond the busy timeout (a long `sync now` or
                # backup holding the write lock): the rows are intact; try again later
                # rather than take the whole daemon down.
                log.error("sync: database error, retrying: %s", err)
                self._note(f"database error: {err}")
            finally:
                self.connected = False
            delay = backoff.next()
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    def _note(self, error: str) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.outbox.note_error(error, self.clock())

    async def _session(self, link: Link, stop: asyncio.Event, wake: asyncio.Event | None,
                       until_empty: bool, drain_timeout_s: float, deadline: float | None) -> bool:
        """One connection's tasks: paho's keepalive, the pump and (with a handler) the
        commands.  True: finished."""
        if self.commands is not None:
            await self._subscribe(link)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(link.run_keepalive(), name="mqtt-keepalive")
                # Also without a handler: a subscription left in the persistent session by an
                # earlier run with a key still delivers; those messages are dropped (below).
                tg.create_task(self._serve_commands(link), name="sync-commands")
                pump = tg.create_task(
                    self._pump(link, stop, wake, until_empty, drain_timeout_s, deadline),
                    name="sync-pump")
        except BaseExceptionGroup as group:
            # Only the pump can fail; surface its error as itself, not wrapped in a group.
            raise group.exceptions[0] from None
        return pump.result()

    # ------------------------------------------------------------------ commands
    async def _subscribe(self, link: Link) -> None:
        assert self.mqtt is not None
        try:
            await asyncio.wait_for(link.subscribe(self.command_filter),
                                   self.mqtt.connect_timeout_s)
        except SubscribeRefused as err:
            # An ACL without the command topic must not stop the data from flowing.
            log.warning("sync: %s; console commands will not arrive", err)
        except TimeoutError:
            raise SyncError(f"{self.mqtt.url}: no SUBACK for {self.command_filter} within"
                            f" {self.mqtt.connect_timeout_s:g} s") from None

    async def _serve_commands(self, link: Link) -> None:
        """Hand each command message to the handler, in order, until the link closes."""
        closed = asyncio.ensure_future(link.closed.wait())
        try:
            while not link.closed.is_set():
                getter = asyncio.ensure_future(link.incoming.get())
                await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    return
                self._handle_command(link, getter.result())
        finally:
            closed.cancel()

    def _handle_command(self, link: Link, msg: Incoming) -> None:
        if self.commands is None:
            # The retained message stays on the broker: a key configured again gets it.
            log.warning("sync: %s arrived but [commands] pins no console key: dropped",
                        msg.topic)
            link.ack(msg)
            return
        try:
            self.commands(msg.topic, msg.payload)
        except (sqlite3.Error, StoreError) as err:
            # Not acknowledged: the broker sends it again on the next connection.
            log.error("sync: command %s not handled, kept for the next connection: %s",
                      msg.topic, err)
            return
        except Exception:  # a bug must not stop the sync; the message comes again later
            log.exception("sync: command %s not handled", msg.topic)
            return
        link.ack(msg)
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------------ the pump
    async def _pump(self, link: Link, stop: asyncio.Event, wake: asyncio.Event | None,
                    until_empty: bool, drain_timeout_s: float, deadline: float | None) -> bool:
        """Publish until the link drops (False) or we are done (True); closes the link."""
        loop = asyncio.get_running_loop()
        fl = _Flight()
        try:
            while True:
                self._settle(fl, loop.time())
                if link.closed.is_set():
                    return False
                if stop.is_set() and deadline is None:
                    deadline = loop.time() + drain_timeout_s
                if deadline is not None and loop.time() >= deadline:
                    return True
                if wake is not None and wake.is_set():
                    wake.clear()
                    fl.ready.clear()
                free = link.window - len(fl.outstanding)
                sent = self._refill(link, fl, free) if free > 0 else 0
                if not fl.outstanding:
                    if sent == 0 and (until_empty or deadline is not None):
                        return True  # nothing left that we can send now
                    waits = [link.closed.wait(), stop.wait()]
                    if wake is not None:
                        waits.append(wake.wait())
                    await _first(waits, self.sync.interval_s)
                else:
                    # Every outstanding future settles on PUBACK or fails when the link
                    # closes, so ``progress`` alone covers both (no extra tasks per wake-up).
                    if deadline is None:
                        await fl.progress.wait()
                    else:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(fl.progress.wait(),
                                                   max(0.0, deadline - loop.time()))
                    fl.progress.clear()
        finally:
            await self._finish(link, fl)

    #: How many items to read and build ahead (amortises the query and JSON work).
    PREFETCH = 256

    def _refill(self, link: Link, fl: _Flight, free: int) -> int:
        if not fl.ready:
            now = asyncio.get_running_loop().time()
            for seq, until in list(self._held.items()):
                if until <= now:
                    del self._held[seq]
            items = self.outbox.batch(max(free * self.sync.batch_size, self.PREFETCH),
                                      exclude=fl.seqs | self._held.keys())
            ready, too_big = payload.fit(items, self.opts, self.clock(),
                                         link.maximum_packet_size)
            fl.ready.extend(ready)
            if too_big:
                self._refuse_too_big(too_big, link.maximum_packet_size or 0)
        n = 0
        while fl.ready and n < free:
            msg = fl.ready.popleft()
            fut = link.publish(
                msg.topic, msg.payload, user_properties=msg.user_properties,
                content_type=msg.content_type, utf8=msg.encoding == "identity")
            fl.outstanding[fut] = msg
            fl.seqs.update(msg.seqs)
            fut.add_done_callback(functools.partial(self._on_done, fl, msg=msg))
            n += 1
        return n

    def _refuse_too_big(self, msgs: list[payload.Message], limit: int) -> None:
        """Items that cannot fit the broker's packet limit even alone: counted failures."""
        now = self.clock()
        loop_now = asyncio.get_running_loop().time()
        with self.store.transaction():
            for msg in msgs:
                log.error("sync: item %s is %d bytes, over the broker's maximum packet size"
                          " %d; held back", msg.id, payload.packet_size(msg), limit)
                self.outbox.reject(msg.seqs, f"{payload.packet_size(msg)} bytes: over the"
                                   f" broker's maximum packet size ({limit})", now)
                for seq in msg.seqs:
                    # Tried again after the longest backoff: the broker may allow more by then.
                    self._held[seq] = loop_now + self.sync.backoff_max_s

    @staticmethod
    def _on_done(fl: _Flight, fut: asyncio.Future[None], *, msg: payload.Message) -> None:
        err = None if fut.cancelled() else fut.exception()
        fl.done.append((fut, msg, err))
        fl.progress.set()

    def _settle(self, fl: _Flight, loop_now: float) -> None:
        """Commit every finished publish in one transaction, then free their slots."""
        if not fl.done:
            return
        done, fl.done = fl.done, []
        now = self.clock()
        # Settling commits without fsync: see Store.relaxed_sync for why that is safe.
        with self.store.relaxed_sync(), self.store.transaction():
            ok = [seq for _f, msg, err in done if err is None for seq in msg.seqs]
            self.outbox.accept(ok, now)
            for _f, msg, err in done:
                if err is not None:
                    self.outbox.reject(msg.seqs, str(err), now)
        for _f, msg, err in done:
            if isinstance(err, PublishRefused):
                log.warning("sync: %s refused %s (%d items): %s", self.mqtt and self.mqtt.url,
                            msg.topic, len(msg.seqs), err)
                for seq in msg.seqs:
                    n = self._refusals.get(seq, 0)
                    self._refusals[seq] = n + 1
                    self._held[seq] = loop_now + full_jitter(
                        n, self.REFUSED_RETRY_S, self.sync.backoff_max_s, self.rng
                    ) + self.REFUSED_RETRY_S / 2
        # Free exactly the slots whose outcome was just committed.  (A future can already be
        # done while its callback is still queued: freeing it here would re-send its items.)
        for fut, msg, _err in done:
            fl.outstanding.pop(fut, None)
            fl.seqs.difference_update(msg.seqs)

    async def _finish(self, link: Link, fl: _Flight) -> None:
        """Wait briefly for PUBACKs already on their way, settle them, close the link."""
        if fl.outstanding and not link.closed.is_set():
            pending = [f for f in fl.outstanding if not f.done()]
            if pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.wait(pending), self.STOP_GRACE_S)
            await asyncio.sleep(0)  # let the futures' done-callbacks record them
        self._settle(fl, asyncio.get_running_loop().time())
        await link.close(self._retained("offline"))
        # Anything still unanswered stays pending in SQLite and goes out next time.


async def _first(aws: list[Any], within_s: float | None) -> None:
    """Wait until the first of ``aws`` finishes (or ``within_s`` passes), cancelling the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


# ---------------------------------------------------------------------- standalone entry point
def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m edge_gateway.sync.service",
                                description="Run the sync loop alone over one database.")
    p.add_argument("--db", required=True)
    p.add_argument("--broker", required=True, help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    p.add_argument("--gateway", default="gw1")
    p.add_argument("--site", default="home")
    p.add_argument("--client-id", default="")
    p.add_argument("--keepalive", type=int, default=30)
    p.add_argument("--inflight", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--format", default="json")
    p.add_argument("--compression", default="none")
    p.add_argument("--ca-file")
    p.add_argument("--cert-file")
    p.add_argument("--key-file")
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("--drain", type=float, default=None,
                   help="publish what is pending for at most this many seconds, then exit")
    return p.parse_args(argv)


async def _amain(a: argparse.Namespace) -> int:
    store = Store.open(a.db)
    try:
        mqtt = MqttSection(
            client_id=a.client_id or f"edge-gateway-{a.gateway}", keepalive_s=a.keepalive,
            inflight=a.inflight, ca_file=a.ca_file or "", cert_file=a.cert_file or "",
            key_file=a.key_file or "", username=a.username or "", password=a.password or "",
        ).at(a.broker)
        svc = SyncService(store, mqtt, SyncSection(
            batch_size=a.batch_size, format=a.format, compression=a.compression,
            backoff_initial_s=0.2, backoff_max_s=5.0), a.gateway, a.site)
        if a.drain is not None:
            left = await svc.drain(a.drain)
            return 0 if left == 0 else 3
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await svc.run(stop)
        return 0
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return asyncio.run(_amain(_parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
