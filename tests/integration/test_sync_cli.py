"""`edge-gateway sync status|now` against a real mosquitto."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from mosquitto import fill, need_mosquitto, running_broker, subscriber

from edge_gateway.cli import main
from edge_gateway.store.db import Store


def test_sync_status_and_now(tmp_path: Path) -> None:
    need_mosquitto()
    db = tmp_path / "g.db"
    store = Store.open(db)
    ids = fill(store, 10, 2)
    store.close()
    runner = CliRunner()
    cfg = tmp_path / "gateway.toml"  # no [mqtt] host: no broker configured
    cfg.write_text('[gateway]\nid = "gw1"\nsite = "home"\n')
    base = ["-c", str(cfg), "--db", str(db)]

    res = runner.invoke(main, [*base, "sync", "status", "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output)
    for key in ("pending", "pending_by_priority", "sent", "failed", "oldest_pending_at",
                "last_success_at", "last_error"):
        assert key in st
    assert st["pending"] == 12 and st["pending_by_priority"]["alert"] == 2

    res = runner.invoke(main, [*base, "sync", "now", "--timeout", "2"])
    assert res.exit_code == 2 and "no broker configured" in res.output

    with running_broker(tmp_path / "broker") as broker, subscriber(broker) as sub:
        res = runner.invoke(main, [*base, "sync", "now", "--broker", broker.url])
        assert res.exit_code == 0, res.output
        assert "published 12 items; 0 pending" in res.output
        sub.wait_for(lambda: set(ids) <= set(sub.item_ids()), 5, "every item")

    res = runner.invoke(main, [*base, "sync", "status"])
    assert res.exit_code == 0 and "sent          12" in res.output
    assert "last success  2" in res.output

    res = runner.invoke(main, [*base, "sync", "now", "--broker", "mqtt://127.0.0.1:1",
                               "--timeout", "1"])
    assert res.exit_code == 0  # nothing pending: nothing to do
