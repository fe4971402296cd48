"""The fleet ingest end to end: a real mosquitto, a real PostgreSQL, hub-built messages."""

from __future__ import annotations

import gzip
import json
import time
from datetime import timedelta
from pathlib import Path

from conftest import (
    T0,
    Publisher,
    Running,
    hub_items,
    hub_messages,
    item_counts,
    query,
    wait_until,
)
from mosquitto import Broker

from edge_gateway.cloud.ingest import IngestOptions
from edge_gateway.sync import payload

STEP = timedelta(seconds=300)


def opts(broker: Broker, dsn: str, client_id: str, **kw: object) -> IngestOptions:
    return IngestOptions(broker=broker.url, dsn=dsn, client_id=client_id, **kw)  # type: ignore[arg-type]


def test_every_shape_lands_once_with_gateways_patients_alerts(
        broker: Broker, pg_dsn: str, publisher: Publisher) -> None:
    publisher.send([(payload.status_topic("edge-gateway", "clinic-1", "gw1"),
                     payload.status_payload("online", "gw1", "clinic-1", None,
                                            version="0.1.0"))], retain=True)
    c = Running(opts(broker, pg_dsn, "ingest-a")).start()
    try:
        msgs = (hub_messages("gw1", hub_items("gw1", 20), site="clinic-1")
                + hub_messages("gw1", hub_items("gw1", 30, start_seq=21, t0=T0 + 20 * STEP),
                               site="clinic-1",
                               batch_size=10, compression="gzip")
                + hub_messages("gw2", hub_items("gw2", 10, kind="alert"), site="clinic-2",
                               batch_size=4, compression="zstd")
                + hub_messages("gw3", hub_items("gw3", 5), site="clinic-2", fmt="fhir"))
        publisher.send(msgs)
        publisher.send(msgs[:5])  # a hub re-send: duplicates, dropped
        wait_until(lambda: item_counts(pg_dsn)[0] == 65, 20, "65 items")
        wait_until(lambda: c.ingest.stats["duplicates"] == 5, 10, "5 duplicates")
    finally:
        c.stop()
    assert item_counts(pg_dsn) == (65, 65)
    assert query(pg_dsn, "SELECT version FROM edge_gateway.gateways WHERE gateway = 'gw1'") == [
        ("0.1.0",)]  # from the retained status (the console's Hubs page shows it)
    # created_at is each item's own time (the partition key), not the batch's.
    rows = query(pg_dsn, "SELECT id, created_at, site, kind, data->>'summary_id'"
                         " FROM edge_gateway.items WHERE gateway = 'gw1' ORDER BY created_at")
    assert [r[0] for r in rows] == [f"gw1:db0:{i}" for i in range(1, 51)]
    assert rows[1][1] - rows[0][1] == rows[49][1] - rows[48][1]
    assert {r[2] for r in rows} == {"clinic-1"} and rows[0][4] == "1"
    parts = query(pg_dsn, "SELECT DISTINCT tableoid::regclass::text FROM edge_gateway.item_rows")
    assert parts == [("edge_gateway.item_rows_202611",)]
    gws = {r[0]: r[1:] for r in query(pg_dsn, "SELECT gateway, site, status, items"
                                              " FROM edge_gateway.gateways")}
    assert gws == {"gw1": ("clinic-1", "online", 50), "gw2": ("clinic-2", "unknown", 10),
                   "gw3": ("clinic-2", "unknown", 5)}
    assert len(query(pg_dsn, "SELECT * FROM edge_gateway.patients")) == 3
    # Ten alert items -> six alerts (ids 0..5), folded to their newest event.
    alerts = query(pg_dsn, "SELECT alert_key, state, events FROM edge_gateway.alerts"
                           " ORDER BY alert_key::int")
    assert [a[0] for a in alerts] == ["0", "1", "2", "3", "4", "5"]
    # Alert 1: raised (seq 2), then resolved (seq 3): the newer event wins, both counted.
    assert alerts[1] == ("1", "resolved", 2) and alerts[0] == ("0", "resolved", 1)
    fhir = query(pg_dsn, "SELECT data->>'resourceType' FROM edge_gateway.items"
                         " WHERE gateway = 'gw3'")
    assert {f[0] for f in fhir} == {"Observation"}


def test_bad_messages_are_dead_lettered_and_never_block(
        broker: Broker, pg_dsn: str, publisher: Publisher) -> None:
    c = Running(opts(broker, pg_dsn, "ingest-a")).start()
    good = hub_messages("gw1", hub_items("gw1", 6))
    topic = good[0].topic
    bomb = gzip.compress(b"[" * (40 << 20))
    bad = [(topic, b"not json"), ("edge-gateway/home/gw1/p1/weird", good[0].payload),
           (topic, json.dumps({"schema": "other/2"}).encode()), (topic, bomb),
           (topic, b"{" + b" " * (1 << 20) + b"}"), ("edge-gateway/x", b"{}")]
    try:
        for g, b in zip(good, bad, strict=True):
            publisher.send([g, b])
        wait_until(lambda: c.ingest.stats["dead_letters"] == 6, 20, "6 dead letters")
    finally:
        c.stop()
    assert item_counts(pg_dsn) == (6, 6)
    dead = query(pg_dsn, "SELECT topic, reason, payload FROM edge_gateway.dead_letters"
                         " ORDER BY received_at, reason")
    reasons = sorted(d[1].split(":")[0] for d in dead)
    assert reasons == ["bomb", "not-json", "oversized", "schema", "topic", "topic"]
    by_reason = {d[1].split(":")[0]: d for d in dead}
    assert bytes(by_reason["not-json"][2]) == b"not json"
    assert bytes(by_reason["bomb"][2]) == bomb
    # Everything was acknowledged: a new consumer in the same session gets nothing again.
    again = Running(opts(broker, pg_dsn, "ingest-a")).start()
    time.sleep(1.0)
    again.stop()
    assert again.ingest.stats["messages"] == 0


def test_two_consumers_share_the_load(broker: Broker, pg_dsn: str, tmp_path: Path) -> None:
    a = Running(opts(broker, pg_dsn, "ingest-a")).start()
    b = Running(opts(broker, pg_dsn, "ingest-b")).start()
    pubs = [Publisher(broker.port, f"hub-{i}") for i in range(3)]
    try:
        for i, p in enumerate(pubs):
            p.send(hub_messages(f"gw{i}", hub_items(f"gw{i}", 400), batch_size=1 + i * 10))
        wait_until(lambda: item_counts(pg_dsn)[0] == 1200, 30, "1200 items")
    finally:
        for p in pubs:
            p.close()
        a.stop()
        b.stop()
    assert item_counts(pg_dsn) == (1200, 1200)
    na, nb = a.ingest.stats["messages"], b.ingest.stats["messages"]
    assert na > 50 and nb > 50, (na, nb)  # both took a real share
    assert a.ingest.stats["duplicates"] + b.ingest.stats["duplicates"] == 0


def test_command_results_land_once_and_a_malformed_one_is_dead_lettered(
        broker: Broker, pg_dsn: str, publisher: Publisher) -> None:
    from test_cloud_decode import GOOD_COMMAND, command_message

    c = Running(opts(broker, pg_dsn, "ingest-a")).start()
    good = command_message(GOOD_COMMAND)
    bad = command_message({**GOOD_COMMAND, "status": "maybe"}, cid="gw1:db0:901")
    try:
        publisher.send([good, bad, good])  # the hub re-sends: still one row
        wait_until(lambda: c.ingest.stats["messages"] == 3, 20, "3 messages")
    finally:
        c.stop()
    rows = query(pg_dsn, "SELECT id, kind, gateway, site, patient, data->>'command_id',"
                         " data->>'status' FROM edge_gateway.items")
    assert rows == [("gw1:db0:900", "command", "gw1", "home", "p1", "c-1", "applied")]
    dead = query(pg_dsn, "SELECT topic, reason, payload FROM edge_gateway.dead_letters")
    assert [(d[0], d[1].split(":")[0], bytes(d[2])) for d in dead] == [
        ("edge-gateway/home/gw1/p1/command", "schema", bad[1])]
    assert c.ingest.stats["duplicates"] == 1
