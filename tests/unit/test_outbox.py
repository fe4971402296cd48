"""outbox.py: add / batch / accept / reject, ids, priorities, counters, status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_gateway.reading import Alert, Summary
from edge_gateway.store.db import Store
from edge_gateway.store.outbox import Outbox, enqueue_alert, enqueue_reading, enqueue_summary

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def summary(i: int) -> Summary:
    t = T0 + timedelta(minutes=5 * i)
    return Summary("p1", "hrv", t, t + timedelta(minutes=5), {"sdnn_ms": 40.0 + i}, 0.9,
                   "hrv/1", t + timedelta(minutes=5))


def alert(i: int) -> Alert:
    return Alert("p1", "hr_high", "urgent", "raised", "high", T0 + timedelta(hours=i),
                 f"k{i}", 150.0, "/min")


def test_ids_are_gateway_db_sequence_and_never_reused(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db")
    ob = Outbox(store, "gw1")
    a = enqueue_summary(store, 1, summary(1))
    b = enqueue_summary(store, 2, summary(2))
    assert a == f"gw1:{store.db_id}:1" and b == f"gw1:{store.db_id}:2"
    ob.accept([1, 2], T0)
    # eviction deletes sent rows; the sequence must not restart
    with store.transaction() as conn:
        conn.execute("DELETE FROM outbox")
    assert enqueue_summary(store, 3, summary(3)).endswith(":3")
    # a second database (a restored backup is a copy: same db_id, but sequences go on)
    other = Store.open(tmp_path / "h.db")
    assert other.db_id != store.db_id


def test_batch_orders_alerts_then_summaries_then_bulk(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db")
    ob = Outbox(store, "gw1")
    with store.transaction():
        enqueue_reading(store, 1, {"kind": "heart_rate", "value": 60}, T0)
        for i in range(3):
            enqueue_summary(store, i, summary(i))
        enqueue_alert(store, 1, alert(1), T0 + timedelta(hours=1))
    kinds = [it.kind for it in ob.batch(10)]
    assert kinds == ["alert", "summary", "summary", "summary", "reading"]
    got = ob.batch(2, exclude={5})
    assert [it.seq for it in got] == [2, 3]


def test_enqueue_joins_the_callers_transaction(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db")
    Outbox(store, "gw1")
    try:
        with store.transaction():
            enqueue_summary(store, 1, summary(1))
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    assert Outbox(store).pending() == 0


def test_accept_reject_and_status(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db")
    ob = Outbox(store, "gw1")
    for i in range(4):
        enqueue_summary(store, i, summary(i))
    enqueue_alert(store, 1, alert(1), T0)
    st = ob.status()
    assert st["pending"] == 5 and st["pending_by_priority"] == {"alert": 1, "summary": 4,
                                                                 "bulk": 0}
    assert st["sent"] == 0 and st["failed"] == 0 and st["last_success_at"] is None
    assert st["oldest_pending_at"] == "2026-11-25T08:00:00.000000Z"
    assert ob.accept([1, 2], T0) == 2
    assert ob.accept([1], T0) == 0  # a duplicate PUBACK settles nothing twice
    assert ob.reject([3, 4], "broker refused: Not authorized", T0) == 2
    st = ob.status()
    assert st["sent"] == 2 and st["pending"] == 3 and st["failed"] == 2
    assert st["failed_attempts"] == 2
    assert st["last_success_at"] == "2026-11-25T08:00:00.000000Z"
    assert "Not authorized" in st["last_error"]
    ob.accept([3], T0)
    assert ob.status()["failed"] == 1
    # sent survives eviction of sent rows
    with store.transaction() as conn:
        conn.execute("DELETE FROM outbox WHERE sent_at IS NOT NULL")
    assert ob.status()["sent"] == 3


def test_full_jitter_backoff_is_bounded_and_capped_at_five_minutes() -> None:
    import random

    from edge_gateway.backoff import full_jitter
    from edge_gateway.config import SyncSection

    rng = random.Random(1)
    s = SyncSection()
    assert s.backoff_max_s == 300.0
    for attempt in range(40):
        bound = min(300.0, 1.0 * 2 ** attempt)
        draws = [full_jitter(attempt, s.backoff_initial_s, s.backoff_max_s, rng)
                 for _ in range(50)]
        assert all(0.0 <= d <= bound for d in draws)
    late = [full_jitter(30, 1.0, 300.0, rng) for _ in range(200)]
    assert max(late) > 150 and min(late) < 150  # spread over the whole range, not clustered


def test_bulk_readings_queue_last(tmp_path: Path) -> None:
    from edge_gateway.reading import Reading
    from edge_gateway.store.outbox import enqueue_readings

    store = Store.open(tmp_path / "g.db")
    ob = Outbox(store, "gw1")
    r = Reading("strap", "2a37", "heart_rate", 61.0, "/min", T0, T0, "rx:1", patient_id="p1")
    assert enqueue_readings(store, [r, r]) == 2
    enqueue_alert(store, 1, alert(1), T0)
    items = ob.batch(5)
    assert [i.kind for i in items] == ["alert", "reading", "reading"]
    assert items[1].body["value"] == 61.0 and items[1].body["unit"] == "/min"
