"""Store-and-forward against a real mosquitto: outages, broker kills, black holes, priority."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from mosquitto import Broker, Subscriber, fill, need_mosquitto, subscriber, until

from edge_gateway.config import MqttSection, SyncSection
from edge_gateway.store.db import Store
from edge_gateway.sync.service import SyncService

FAST = SyncSection(batch_size=1, backoff_initial_s=0.2, backoff_max_s=1.0, interval_s=0.2)


def service(store: Store, broker: Broker, sync: SyncSection = FAST, **kw: object) -> SyncService:
    mqtt = MqttSection(host="127.0.0.1", port=broker.port, client_id="gw1",
                       connect_timeout_s=2.0, **kw)  # type: ignore[arg-type]
    return SyncService(store, mqtt, sync, "gw1", "home")


@contextlib.asynccontextmanager
async def syncing(svc: SyncService) -> AsyncIterator[None]:
    """``svc.run`` as a task for the body of the ``async with``; then stop it and wait."""
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop), name="sync")
    yield
    stop.set()
    await task


@contextlib.contextmanager
def prepared_subscriber(broker: Broker) -> Iterator[Subscriber]:
    """A subscriber whose persistent session exists on the broker before the gateway runs;
    both are stopped at the end."""
    broker.start()
    sub = Subscriber(broker).start()
    try:
        yield sub
    finally:
        sub.stop()
        broker.stop()


def test_broker_down_at_start_then_everything_delivered_alerts_first(tmp_path: Path) -> None:
    need_mosquitto()
    broker = Broker(tmp_path / "broker")
    with prepared_subscriber(broker) as sub:
        broker.stop()  # the session (and its subscription) is saved; the broker is now down
        store = Store.open(tmp_path / "g.db")
        summaries = fill(store, 300)
        alerts = fill(store, 0, 5)
        svc = service(store, broker)

        async def scenario() -> None:
            async with syncing(svc):
                await asyncio.sleep(1.5)
                st = svc.status()
                assert not svc.connected
                assert st["pending"] == 305 and st["sent"] == 0
                assert "cannot connect" in (st["last_error"] or "")
                broker.start()
                await until(lambda: svc.outbox.pending() == 0, 30, "the outbox to drain")

        asyncio.run(scenario())
        sub.wait_for(lambda: set(summaries + alerts) <= set(sub.item_ids()), 10, "every item")
        order = sub.item_ids()
        first_summary = min(order.index(i) for i in summaries)
        assert max(order.index(i) for i in alerts) < first_summary, "alerts must jump the queue"
        assert svc.status()["sent"] == 305
    store.close()


def test_broker_sigkill_mid_drain_loses_nothing(tmp_path: Path) -> None:
    need_mosquitto()
    broker = Broker(tmp_path / "broker", durable=True)
    with prepared_subscriber(broker) as sub:
        store = Store.open(tmp_path / "g.db")
        ids = fill(store, 600)
        svc = service(store, broker)

        async def scenario() -> None:
            async with syncing(svc):
                await until(lambda: svc.outbox.status()["sent"] >= 150, 30, "a quarter sent")
                broker.kill()
                await until(lambda: not svc.connected, 10, "the gateway to notice")
                await asyncio.sleep(0.5)
                broker.start()
                await until(lambda: svc.outbox.pending() == 0, 60, "the outbox to drain")

        asyncio.run(scenario())
        sub.wait_for(lambda: set(ids) <= set(sub.item_ids()), 20, "every item after the kill")
    store.close()


def test_black_holed_link_detected_within_two_keepalives_and_recovered(tmp_path: Path) -> None:
    need_mosquitto()
    broker = Broker(tmp_path / "broker")
    with prepared_subscriber(broker) as sub:
        store = Store.open(tmp_path / "g.db")
        first = fill(store, 20)
        keepalive = 2
        svc = service(store, broker, keepalive_s=keepalive)
        detected = 0.0

        async def scenario() -> None:
            nonlocal detected
            async with syncing(svc):
                await until(lambda: svc.outbox.pending() == 0, 20, "the first items")
                broker.pause()
                t0 = time.monotonic()
                try:
                    more = fill(store, 30, start=None, step_s=60.0)  # produced during the outage
                    first.extend(more)
                    await until(lambda: not svc.connected, 4 * keepalive,
                                "the black hole to be seen")
                    detected = time.monotonic() - t0
                finally:
                    broker.resume()
                await until(lambda: svc.outbox.pending() == 0, 30, "recovery")

        asyncio.run(scenario())
        # paho pings after `keepalive` of silence and gives up `keepalive` later; allow one
        # tick of the misc task and scheduling on a busy machine.
        assert detected <= 2 * keepalive + 1.0, detected
        sub.wait_for(lambda: set(first) <= set(sub.item_ids()), 10, "every item")
        def statuses() -> list[str]:
            return [json.loads(m.payload)["status"] for m in sub.snapshot()
                    if m.topic.endswith("/status")]

        # The clean stop at the end says so (it may reach the subscriber after the items).
        sub.wait_for(lambda: statuses()[-1:] == ["offline"], 10, "the offline status")
        assert "online" in statuses()
    store.close()


def test_acl_forbidden_topic_is_a_counted_failure(tmp_path: Path) -> None:
    need_mosquitto()
    acl = tmp_path / "acl"
    # Anonymous clients (lines before any `user`): read everything, write only the status
    # topic and alerts; summaries are forbidden.
    acl.write_text("topic read edge-gateway/#\n"
                   "topic write edge-gateway/home/gw1/status\n"
                   "topic write edge-gateway/home/gw1/+/alert\n")
    broker = Broker(tmp_path / "broker", extra=[f"acl_file {acl}"])
    with subscriber(broker.start()) as sub:
        store = Store.open(tmp_path / "g.db")
        summaries = fill(store, 3)
        alerts = fill(store, 0, 1)
        svc = service(store, broker)
        left = asyncio.run(svc.drain(3.0))
        st = svc.status()
        assert left == 3
        assert st["pending_by_priority"] == {"alert": 0, "summary": 3, "bulk": 0}
        assert st["sent"] == 1 and st["failed"] == 3 and st["failed_attempts"] >= 3
        assert "Not authorized" in st["last_error"] or "0x87" in st["last_error"]
        sub.wait_for(lambda: set(alerts) <= set(sub.item_ids()), 5, "the alert")
        assert not set(summaries) & set(sub.item_ids())
        store.close()
    broker.stop()


def test_new_alert_overtakes_a_backlog_being_drained(tmp_path: Path) -> None:
    """The daemon sets ``wake`` when it queues an alert: the prefetched backlog steps aside."""
    need_mosquitto()
    broker = Broker(tmp_path / "broker").start()
    try:
        with subscriber(broker) as sub:
            store = Store.open(tmp_path / "g.db")
            summaries = fill(store, 4000)
            svc = service(store, broker)
            alert_ids: list[str] = []
            sent_then = 0

            async def scenario() -> None:
                nonlocal sent_then
                stop, wake = asyncio.Event(), asyncio.Event()
                task = asyncio.create_task(svc.run(stop, wake), name="sync")
                await until(lambda: svc.outbox.status()["sent"] >= 500, 30, "500 sent")
                sent_then = svc.outbox.status()["sent"]
                alert_ids.extend(fill(store, 0, 1))
                wake.set()
                await until(lambda: svc.outbox.pending() == 0, 60, "the outbox to drain")
                stop.set()
                await task

            asyncio.run(scenario())
            sub.wait_for(lambda: set(summaries + alert_ids) <= set(sub.item_ids()), 10, "all")
            order = sub.item_ids()
            # Before it: what was settled, plus at most one window in flight and one window
            # acknowledged but not yet settled -- nothing of the prefetched backlog.
            assert order.index(alert_ids[0]) <= sent_then + 2 * 20, (order.index(alert_ids[0]),
                                                                     sent_then)
            store.close()
    finally:
        broker.stop()


def test_batches_over_the_brokers_packet_limit_are_split_and_oversize_items_held(
        tmp_path: Path) -> None:
    need_mosquitto()
    broker = Broker(tmp_path / "broker", extra=["max_packet_size 3000"]).start()
    try:
        with subscriber(broker) as sub:
            store = Store.open(tmp_path / "g.db")
            small = fill(store, 120)
            from datetime import UTC, datetime

            from edge_gateway.reading import Summary
            from edge_gateway.store.outbox import enqueue_summary

            t = datetime(2026, 11, 25, tzinfo=UTC)
            huge = enqueue_summary(store, 999, Summary(
                "p1", "hrv", t, t, {"notes": "x" * 5000}, 1.0, "hrv/1", t))
            svc = service(store, broker, SyncSection(batch_size=50, backoff_initial_s=0.2,
                                                     backoff_max_s=1.0))
            left = asyncio.run(svc.drain(5.0))
            st = svc.status()
            assert left == 1 and st["failed"] == 1
            assert "maximum packet size" in st["last_error"]
            sub.wait_for(lambda: set(small) <= set(sub.item_ids()), 5, "the small items")
            assert huge not in sub.item_ids()
            assert len(sub.data()) == 120  # every batch of ~50 x 250 B was split
            assert "disconnected" not in (st["last_error"] or "")
            store.close()
    finally:
        broker.stop()
