"""The PostgreSQL side alone: instances starting together never race, wrong clocks land in the
DEFAULT partition and move out when their month's partition is made, alerts fold by time."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from conftest import hub_items, hub_messages, query

from edge_gateway.cloud import decode
from edge_gateway.cloud.store import pg


def _decoded(gateway: str, n: int, t0: datetime, kind: str = "summary",
             start_seq: int = 1) -> list[decode.Decoded]:
    return [decode.classify(m.topic, m.payload) for m in hub_messages(
        gateway, hub_items(gateway, n, t0=t0, kind=kind, start_seq=start_seq), batch_size=10)]


def test_instances_starting_together_migrate_and_partition_once(pg_dsn: str) -> None:
    errors: list[BaseException] = []
    now = datetime.now(UTC)
    months = {pg.month_of(now - timedelta(days=31 * i)) for i in range(6)}

    def start() -> None:
        try:
            with pg.connect(pg_dsn) as c:
                pg.migrate(c)
                pg.Partitions().ensure(c, months)
        except BaseException as err:  # collected for the assertion below
            errors.append(err)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert query(pg_dsn, "SELECT version FROM edge_gateway.schema_version ORDER BY 1") == [
        (v,) for v, _name, _sql in pg.migrations()]  # each applied once
    parts = query(pg_dsn, "SELECT count(*) FROM pg_inherits"
                          " WHERE inhparent = 'edge_gateway.item_rows'::regclass")
    assert parts == [(len(months) + 1,)]  # + DEFAULT


def test_wrong_clock_goes_to_default_and_moves_out_later(pg_dsn: str) -> None:
    now = datetime.now(UTC)
    with pg.connect(pg_dsn) as c:
        pg.migrate(c)
        old = _decoded("gw1", 20, datetime(2001, 3, 1, tzinfo=UTC))
        r = pg.commit(c, "t", old, [now] * len(old))
        assert r.inserted == 20 and pg.wanted_months(
            [it.created_at for d in old if isinstance(d, decode.DataMessage) for it in d.items],
            now) == set()
        where = query(pg_dsn, "SELECT DISTINCT tableoid::regclass::text"
                              " FROM edge_gateway.item_rows")
        assert where == [("edge_gateway.item_rows_default",)]
        # The month gets a partition after all (e.g. an operator widens the window).
        assert pg.Partitions().ensure(c, {datetime(2001, 3, 1, tzinfo=UTC)}) == [
            "item_rows_200103"]
        again = pg.commit(c, "t", old, [now] * len(old))
        assert (again.inserted, again.duplicates) == (0, 20)  # the key still holds
    where = query(pg_dsn, "SELECT tableoid::regclass::text, count(*)"
                          " FROM edge_gateway.item_rows GROUP BY 1")
    assert where == [("edge_gateway.item_rows_200103", 20)]


def test_alerts_fold_to_the_newest_event_whatever_the_arrival_order(pg_dsn: str) -> None:
    t0 = datetime(2026, 11, 18, tzinfo=UTC)
    events = _decoded("gw1", 4, t0, kind="alert")  # ids 0,1,1,2: raised/resolved pairs
    msgs = [decode.classify(m.topic, m.payload) for m in hub_messages(
        "gw1", hub_items("gw1", 4, t0=t0, kind="alert"))]  # one item per message
    assert len(events) == 1 and len(msgs) == 4
    now = datetime.now(UTC)
    with pg.connect(pg_dsn) as c:
        pg.migrate(c)
        pg.commit(c, "t", msgs[2:3], [now])  # alert 1 resolved arrives first …
        pg.commit(c, "t", msgs[1:2], [now])  # … then its older 'raised'
        pg.commit(c, "t", msgs, [now] * 4)  # and everything again (duplicates)
    rows = query(pg_dsn, "SELECT alert_key, state, events FROM edge_gateway.alerts"
                         " WHERE alert_key = '1'")
    assert rows == [("1", "resolved", 2)]


def test_a_batch_with_any_duplicate_keeps_the_new_items_and_counts_the_rest(
        pg_dsn: str) -> None:
    """The direct COPY fails as a whole on one duplicate; the batch then goes through the
    staging table with ON CONFLICT: the new items land, the rest count as duplicates."""
    t0 = datetime(2026, 11, 18, tzinfo=UTC)
    first = _decoded("gw1", 30, t0)  # 3 messages of 10
    alerts = _decoded("gw1", 4, t0, kind="alert", start_seq=100)
    now = datetime.now(UTC)
    with pg.connect(pg_dsn) as c:
        pg.migrate(c)
        r1 = pg.commit(c, "t", first[:2], [now] * 2)
        assert (r1.inserted, r1.duplicates) == (20, 0)
        # Old and new together, one message twice in the same batch, and new alert events.
        mixed = [first[1], first[2], first[2], *alerts]
        r2 = pg.commit(c, "t", mixed, [now] * len(mixed))
        assert (r2.items, r2.inserted, r2.duplicates) == (34, 14, 20)
        r3 = pg.commit(c, "t", alerts, [now])  # alert events again: counted once only
        assert (r3.inserted, r3.duplicates) == (0, 4)
    assert query(pg_dsn, "SELECT count(*), count(DISTINCT id) FROM edge_gateway.items") == [
        (34, 34)]
    assert query(pg_dsn, "SELECT sum(events) FROM edge_gateway.alerts") == [(4,)]
    assert query(pg_dsn, "SELECT items FROM edge_gateway.gateways") == [(34,)]
