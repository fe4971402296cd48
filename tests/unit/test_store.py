from __future__ import annotations

import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_gateway.errors import MigrationError
from edge_gateway.reading import Reading
from edge_gateway.store import BatchWriter, FrameRecord, Store
from edge_gateway.store import migrate as migrate_mod

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def reading(i: int, *, key: str | None = None, epoch: int = 0, kind: str = "glucose",
            at: datetime | None = None) -> Reading:
    t = at or T0 + timedelta(minutes=i)
    return Reading(device_id="meter-1", characteristic="2a18", kind=kind, value=100.0 + i,
                   unit="mg/dL", time=t, received_at=t, record_key=key or f"seq:{i}",
                   reset_epoch=epoch)


def test_new_database_is_migrated_private_and_has_an_id(tmp_path: Path) -> None:
    path = tmp_path / "state" / "g.db"
    store = Store.open(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    assert len(store.db_id) == 12
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    versions = [r[0] for r in store.conn.execute("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in migrate_mod.available()]
    db_id = store.db_id
    store.close()
    # Re-opening an already migrated database applies nothing and keeps the id.
    again = Store.open(path)
    assert again.db_id == db_id
    assert migrate_mod.migrate(again.conn) == []


def test_failed_migration_rolls_back_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    store = Store.open(tmp_path / "g.db")
    bad = migrate_mod.Migration(9999, "broken", "CREATE TABLE t_ok (x INT); CREATE TABLE t_ok (y);")
    monkeypatch.setattr(migrate_mod, "available", lambda: [bad])
    with pytest.raises(MigrationError, match="migration 9999 failed"):
        migrate_mod.migrate(store.conn)
    tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master")}
    assert "t_ok" not in tables
    assert 9999 not in migrate_mod.applied(store.conn)


def test_reading_inserts_are_idempotent_on_the_natural_key(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db")
    first = [reading(i) for i in range(10)]
    assert store.add_readings(first) == 10
    # Re-downloading the meter's memory adds nothing.
    assert store.add_readings(first) == 0
    # After a device reboot the sequence restarts; a new reset epoch keeps the new records.
    after_reset = [reading(i, epoch=1, at=T0 + timedelta(days=1, minutes=i)) for i in range(3)]
    assert store.add_readings(after_reset) == 3
    assert store.conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 13


def test_write_batch_keeps_raw_frames_and_rejected_frames(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db")
    ok = FrameRecord("meter-1", "2a18", T0, b"\x01\x02")
    bad = FrameRecord("meter-1", "2a18", T0, b"\xff", error="2a18: offset 1: truncated")
    frames, new = store.write_batch([(ok, [reading(1)]), (bad, [])])
    assert (frames, new) == (2, 1)
    rows = store.conn.execute(
        "SELECT status, payload, error FROM raw_frames ORDER BY id").fetchall()
    assert rows == [("ok", b"\x01\x02", None), ("rejected", b"\xff", "2a18: offset 1: truncated")]
    frame_id = store.conn.execute("SELECT raw_frame_id FROM readings").fetchone()[0]
    assert frame_id == 1


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_batch_commits_after_max_delay_or_max_frames(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db")
    clock = FakeClock()
    w = BatchWriter(store, max_frames=5, max_delay_s=1.0, clock=clock)
    other = sqlite3.connect(tmp_path / "g.db")

    def committed() -> int:
        return int(other.execute("SELECT count(*) FROM raw_frames").fetchone()[0])

    w.submit(FrameRecord("d", "2a37", T0, b"\x00\x48"))
    clock.t = 0.5
    assert not w.due() and committed() == 0
    clock.t = 1.0
    assert w.due()
    w.flush()
    assert committed() == 1 and w.stats.commits == 1
    for i in range(5):  # the 5th frame triggers a commit at once
        w.submit(FrameRecord("d", "2a37", T0 + timedelta(seconds=i), b"\x00\x48"))
    assert committed() == 6 and w.stats.commits == 2 and w.pending == 0


def test_failed_commit_keeps_the_batch(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db")
    w = BatchWriter(store, max_frames=100)
    w.submit(FrameRecord("d", "2a37", T0, b"\x00\x48"), [reading(1)])
    blocker = sqlite3.connect(tmp_path / "g.db", timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    store.conn.execute("PRAGMA busy_timeout = 0")
    assert w.flush() == 0  # the writer never dies: the batch is held for a retry
    assert w.pending == 1 and w.holding and w.stats.failures == 1
    blocker.execute("ROLLBACK")
    assert w.flush(force=True) == 1
    assert w.pending == 0 and not w.holding


def test_storage_cap_evicts_old_synced_data_and_counts_it(tmp_path: Path) -> None:
    cap = 1_000_000
    store = Store.open(tmp_path / "g.db", cap_bytes=cap)
    old = T0 - timedelta(days=400)
    payload = bytes(200)
    i = 0
    # Fill with old data until past the eviction threshold.
    while store.used_bytes() < 0.92 * cap:
        batch = []
        for _ in range(200):
            t = old + timedelta(seconds=i)
            batch.append((FrameRecord("hr", "2a37", t, payload),
                          [Reading("hr", "2a37", "heart_rate", 60.0, "/min", t, t,
                                   f"rx:{i}")]))
            i += 1
        store._write_batch(batch)  # no eviction on the way up: evict() is tested
    # An unsynced alert and an unsynced summary must survive.
    with store.transaction() as conn:
        conn.execute("INSERT INTO alerts (rule, key, severity, state, message, raised_at,"
                     " updated_at) VALUES ('glucose_low', 'k', 'urgent', 'raised', 'low', ?, ?)",
                     ("2025-01-01T00:00:00.000000Z",) * 2)
    deleted = store.evict(retention=timedelta(days=90), now=T0)
    assert deleted > 0
    assert store.used_bytes() <= 0.8 * cap + 64 * 1024
    assert store.evicted() == deleted
    assert store.counter("evicted.raw_frames") > 0 and store.counter("evicted.readings") > 0
    assert store.conn.execute("SELECT count(*) FROM alerts").fetchone()[0] == 1
    # Oldest first: what remains is the newest data.
    first_left = store.conn.execute("SELECT min(id) FROM readings").fetchone()[0]
    assert first_left > 1


def test_cap_reached_with_nothing_evictable_stops_raw_frames_before_refusing_readings(
        tmp_path: Path) -> None:
    cap = 1_000_000
    store = Store.open(tmp_path / "g.db", cap_bytes=cap)
    recent = datetime.now(UTC)
    i = 0
    while store.used_bytes() < 0.93 * cap:  # no eviction on the way up: evict() is tested
        store._write_batch([(FrameRecord("hr", "2a37", recent, bytes(400)),
                            [Reading("hr", "2a37", "heart_rate", 60.0, "/min", recent, recent,
                                     f"rx:{i}")])])
        i += 1
    assert store.evict() == 0  # nothing is old enough to go
    assert store.keep_raw is False
    store.write_batch([(FrameRecord("hr", "2a37", recent, bytes(400)),
                        [Reading("hr", "2a37", "heart_rate", 61.0, "/min", recent, recent,
                                 "rx:last")])])
    row = store.conn.execute(
        "SELECT r.value, f.payload FROM readings r JOIN raw_frames f ON f.id = r.raw_frame_id"
        " WHERE r.record_key = 'rx:last'").fetchone()
    assert row == (61.0, None)


def test_backup_is_a_consistent_copy(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db")
    store.add_readings([reading(i) for i in range(5)])
    dest = store.backup(tmp_path / "backup.db")
    copy = Store.open(dest)
    assert copy.db_id == store.db_id
    assert copy.integrity_check() == ["ok"]
    assert copy.conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 5


def test_device_statistics_follow_new_readings_only(tmp_path: Path) -> None:
    from edge_gateway.runtime.status import gateway_status

    store = Store.open(tmp_path / "g.db")
    store.upsert_device("meter-1", profile="glucose", name="Meter")
    now = datetime.now(UTC)
    old = [reading(i, at=now - timedelta(hours=30, minutes=i)) for i in range(4)]
    fresh = [reading(10 + i, at=now - timedelta(minutes=i)) for i in range(3)]
    store.add_readings(old + fresh)
    store.add_readings(fresh)  # duplicates count nowhere
    st = gateway_status(store, now=now)
    dev = st["devices"][0]
    assert (dev["readings_total"], dev["readings_24h"]) == (7, 3)
    assert dev["last_reading_at"] == max(r[0] for r in store.conn.execute(
        "SELECT received_at FROM readings"))
    assert store.prune_stats(now=now + timedelta(hours=20)) == 4  # the four 30 h old minutes


def test_status_json_has_the_documented_keys(tmp_path: Path) -> None:
    import json as _json

    from click.testing import CliRunner

    from edge_gateway.cli import main

    db = tmp_path / "g.db"
    store = Store.open(db, cap_bytes=5_000_000)
    store.add_patient("alice")
    store.upsert_device("meter-1", profile="glucose", name="Meter", patient_id="alice")
    store.add_readings([reading(1, at=datetime.now(UTC))])
    store.set_connected("meter-1", True, datetime.now(UTC))
    store.close()
    res = CliRunner().invoke(main, ["--db", str(db), "status", "--json"])
    assert res.exit_code == 0, res.output
    st = _json.loads(res.output)
    dev = st["devices"][0]
    for key in ("id", "name", "profile", "patient", "connected", "last_reading_at",
                "readings_24h", "readings_total"):
        assert key in dev
    assert (dev["patient"], dev["connected"], dev["readings_24h"]) == ("alice", True, 1)
    assert dev["connected_recorded_at"] is not None
    assert set(st["outbox"]) >= {"pending", "oldest_pending_at"}
    assert "last_sync_at" in st
    assert set(st["storage"]) >= {"db_bytes", "cap_bytes", "evicted"}


def test_repository_writes_join_the_open_transaction(tmp_path: Path) -> None:
    """A change and its audit row commit or roll back together; alone, each commits."""
    from edge_gateway.store import audit, patients, settings

    store = Store.open(tmp_path / "g.db")
    with pytest.raises(RuntimeError), store.transaction():
        patients.insert(store, "alice", "Alice", None, "2026-11-20T08:00:00.000000Z")
        audit.record(store, "carol", "patient.add", "alice")
        settings.bump_version(store)
        raise RuntimeError("the caller failed after the writes")
    assert not patients.exists(store, "alice")
    assert audit.entries(store) == []
    assert store.meta(settings.SETTINGS_VERSION) is None
    audit.record(store, "carol", "export", "alice", {"rows": 3})  # no transaction: its own
    assert [(e["actor"], e["details"]) for e in audit.entries(store)] == [("carol", {"rows": 3})]
    store.close()


def test_relaxed_sync_is_full_again_afterwards(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db")
    with store.relaxed_sync():
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_a_read_only_store_closes_without_writing(tmp_path: Path) -> None:
    Store.open(tmp_path / "g.db").close()
    reader = Store.open(tmp_path / "g.db", readonly=True)
    assert reader.readonly
    reader.close()  # no checkpoint: a reader must not write
    with pytest.raises(sqlite3.ProgrammingError):
        reader.conn.execute("SELECT 1")
