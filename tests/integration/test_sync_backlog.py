"""A week offline: the whole backlog is drained, batched and compressed, nothing lost."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from mosquitto import fill, need_mosquitto, running_broker, subscriber

from edge_gateway.config import MqttSection, SyncSection
from edge_gateway.store.db import Store
from edge_gateway.sync.service import SyncService

WEEK_S = 7 * 24 * 3600


def drain_backlog(tmp_path: Path, summaries: int, alerts: int, sync: SyncSection,
                  within_s: float) -> None:
    need_mosquitto()
    store = Store.open(tmp_path / "g.db")
    ids = fill(store, summaries, alerts, step_s=WEEK_S / summaries)
    with running_broker(tmp_path / "broker") as broker, subscriber(broker) as sub:
        svc = SyncService(store, MqttSection(host="127.0.0.1", port=broker.port,
                                             client_id="gw1"), sync, "gw1", "home")
        t = time.monotonic()
        left = asyncio.run(svc.drain(within_s))
        took = time.monotonic() - t
        assert left == 0, f"{left} left after {took:.1f} s"
        sub.wait_for(lambda: set(ids) <= set(sub.item_ids()), 30, "every item")
        messages = len(sub.data())
        assert messages <= len(ids) // max(1, sync.batch_size // 2) + 10
        assert svc.status()["sent"] == len(ids)
    store.close()


def test_one_week_backlog_drained_batched_and_compressed(tmp_path: Path) -> None:
    # One patient's week: HRV every 5 minutes (2016) plus a few alerts.
    drain_backlog(tmp_path, 2016, 12, SyncSection(batch_size=50, compression="gzip"), 60)


@pytest.mark.soak
def test_four_week_backlog_one_item_per_message(tmp_path: Path) -> None:
    drain_backlog(tmp_path, 4 * 2016 * 3, 50, SyncSection(batch_size=1), 300)
