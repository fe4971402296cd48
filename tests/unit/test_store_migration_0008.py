"""Migration 0008 (the readings natural key reordered, issue 14): a database made with the
0007 schema and readings of every kind comes out with the same rows, ids, counts and exports,
and keeps its guarantees (idempotent inserts, backfill marks, follow-by-id)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_gateway.care.export import export_text, window
from edge_gateway.reading import Reading
from edge_gateway.store import Store, migrate
from edge_gateway.store import readings as reading_rows
from edge_gateway.store.db import _INSERT_READING, _reading_row

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def _old_database(path: Path) -> None:
    """The schema as 0001..0007 made it, with its UNIQUE table constraint."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA page_size = 1024")
    conn.execute("PRAGMA journal_mode = WAL")
    migrate.applied(conn)
    for mig in migrate.available():
        if mig.version > 7:
            continue
        for statement in migrate._split(mig.sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, '2026-11-01T00:00:00Z')",
                     (mig.version, mig.name))
    conn.execute("INSERT INTO meta VALUES ('db_id', 'abcdef012345')")
    conn.execute("INSERT INTO patients VALUES ('p1', 'Pat', NULL, '2026-11-01T00:00:00Z')")
    conn.close()


def _readings() -> list[tuple[bytes, list[Reading]]]:
    """Frames and readings of every kind the profiles make, as they key them."""
    out: list[tuple[bytes, list[Reading]]] = []
    for i in range(40):
        t = T0 + timedelta(seconds=i)
        key = f"rx:{t.isoformat()}"
        out.append((b"\x10\x48\x41\x03", [
            Reading("strap", "2a37", "heart_rate", 72.0 + i % 5, "/min", t, t, key,
                    patient_id="p1", extra={"sensor_contact": "detected"}),
            *(Reading("strap", "2a37", "rr_interval", 800.0 + j, "ms", t, t, f"{key}:rr{j}",
                      patient_id="p1", extra={"index": j}) for j in range(i % 3))]))
    for i in range(12):
        t = T0 + timedelta(minutes=5 * i)
        out.append((bytes([i]) * 6, [Reading(
            "cgm", "2aa7", "cgm_glucose", 100.0 + i, "mg/dL", t, t + timedelta(hours=1),
            f"sess:2026-11-20T00:00:00:off:{i * 5}", patient_id="p1",
            extra={"time_offset_min": i * 5})]))
    for i in range(4):
        t = T0 + timedelta(hours=i)
        dev = f"2026-11-20T{8 + i:02d}:00:00"
        out.append((bytes([0x10 + i]) * 10, [Reading(
            "cuff", "2a35", kind, v, "mmHg", t, t + timedelta(minutes=1), f"u1:dev:{dev}",
            patient_id="p1", device_time=dev, extra={"user_id": 1})
            for kind, v in (("bp_systolic", 128.0 + i), ("bp_diastolic", 81.0),
                            ("bp_map", 97.0))]))
        out.append((bytes([0x20 + i]) * 8, [Reading(
            "meter", "2a18", "glucose", 5.4 + i / 10, "mmol/L", t, t, f"seq:{i + 1}",
            patient_id="p1", extra={"record_sequence": i + 1})]))
    t = T0 + timedelta(minutes=3)
    out.append((b"\x00\x64", [
        Reading("ox", "2a5f", "spo2", 97.0, "%", t, t, f"rx:{t.isoformat()}", patient_id="p1"),
        Reading("ox", "2a5f", "pulse_rate", 64.0, "/min", t, t, f"rx:{t.isoformat()}",
                patient_id="p1"),
        Reading("ox", "2a5f", "spo2", None, "%", t, t, f"rx:{t.isoformat()}:b",
                special="nres", patient_id="p1")]))
    out.append((b"\x06", [Reading("therm", "2a1c", "temperature", 36.8, "Cel", t, t, "seq:1",
                                  patient_id="p1")]))
    out.append((b"\x50", [Reading("scale", "2a9d", "body_weight", 71.3, "kg", t, t,
                                  "dev:2026-11-20T08:03:00", patient_id="p1")]))
    out.append((b"\x5a", [Reading("strap", "2a19", "battery", 90.0, "%", t, t,
                                  f"rx:{t.isoformat()}", patient_id="p1")]))
    return out


def _fill(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for fid, (payload, rs) in enumerate(_readings(), start=1):
        first = rs[0]
        conn.execute("INSERT INTO raw_frames (id, device_id, characteristic, received_at,"
                     " payload) VALUES (?, ?, ?, ?, ?)",
                     (fid, first.device_id, first.characteristic,
                      first.received_at.isoformat(), payload))
        conn.executemany(_INSERT_READING, [_reading_row(r, fid) for r in rs])
    conn.execute("COMMIT")
    conn.close()


def _snapshot(store: Store) -> dict[str, object]:
    w = window("2026-11-19", "2026-11-22", "UTC")
    return {
        "rows": store.conn.execute("SELECT * FROM readings ORDER BY id").fetchall(),
        "count": store.conn.execute("SELECT count(*) FROM readings").fetchone()[0],
        **{fmt: export_text(store, patient="p1", w=w, fmt=fmt)
           for fmt in ("csv", "json", "fhir")},
        "payloads": reading_rows.record_payloads(store, "meter", "2a18", 0, 3),
        "window": reading_rows.window(store, "p1", ["heart_rate", "rr_interval"],
                                      "2026-11-20T08:00:00", "2026-11-20T08:01:00"),
    }


def test_0007_database_migrates_with_identical_rows_and_exports(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    _old_database(db)
    _fill(db)
    old_conn = sqlite3.connect(db, isolation_level=None)
    before = _snapshot(Store(old_conn, db, None))
    old_conn.close()
    assert isinstance(before["count"], int) and before["count"] > 100
    assert "heart_rate" in str(before["csv"]) and "rr_interval" in str(before["csv"])

    store = Store.open(db)
    try:
        assert 8 in migrate.applied(store.conn)
        after = _snapshot(store)
        assert after == before
        indexes = {r[0]: r[1] for r in store.conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
            " AND tbl_name = 'readings'")}
        assert "readings_natural_key" in indexes
        assert not any(n.startswith("sqlite_autoindex_readings") for n in indexes)
        assert store.integrity_check() == ["ok"]
        # Idempotency holds on the reordered key: a re-downloaded record is ignored, a new
        # one is stored with the next id.
        rs = _readings()
        top = store.conn.execute("SELECT max(id) FROM readings").fetchone()[0]
        assert store.add_readings(rs[-4][1]) == 0
        assert store.add_readings(r for _, batch in rs for r in batch) == 0
        new = Reading("meter", "2a18", "glucose", 6.1, "mmol/L", T0 + timedelta(days=1),
                      T0 + timedelta(days=1), "seq:99", patient_id="p1")
        assert store.add_readings([new]) == 1
        assert store.conn.execute("SELECT max(id) FROM readings").fetchone()[0] == top + 1
    finally:
        store.close()


def test_new_database_has_the_reordered_key(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "new.db")
    try:
        plan = " ".join(str(r) for r in store.conn.execute(
            "EXPLAIN QUERY PLAN SELECT max(id) FROM readings WHERE device_id = ?"
            " AND characteristic = ? AND reset_epoch = ?", ("d", "c", 0)))
        assert "readings_natural_key" in plan
    finally:
        store.close()
