"""The Nightscout uploader against a stand-in Nightscout (tests/integration/nightscout_standin.py,
which follows cgm-remote-monitor's auth and entries upsert): batches, retries without
duplicates, 401, a week offline, a CGM's 14-day backfill, restarts."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nightscout_standin
import pytest

from edge_gateway.config import ConfigError, NightscoutSite, load_config
from edge_gateway.reading import Reading
from edge_gateway.store import Store
from edge_gateway.store.outbox import pending_count
from edge_gateway.store.outbox import status as outbox_status
from edge_gateway.sync import nightscout
from edge_gateway.sync.nightscout import NightscoutUploader, UploadError

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def cgm(start: datetime, n: int, *, trend: float | None = 0.5, patient: str = "alice",
        session: str = "s1") -> list[Reading]:
    """``n`` CGM readings every 5 minutes from ``start`` (a sensor session's records)."""
    out = []
    for i in range(n):
        at = start + timedelta(minutes=5 * i)
        extra = {"time_offset_min": 5 * i}
        if trend is not None:
            extra["trend_mg_dl_per_min"] = trend
        out.append(Reading("cgm-1", "2aa7", "cgm_glucose", 100.0 + (i % 50), "mg/dL", at, NOW,
                           f"sess:{session}:off:{5 * i}", patient_id=patient, extra=extra))
    return out


@pytest.fixture
def ns() -> Iterator[nightscout_standin.Nightscout]:
    with nightscout_standin.running() as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "gw.db")
    s.add_patient("alice", "Alice")
    s.upsert_device("cgm-1", profile="cgm", name="CGM", patient_id="alice")
    s.update_device_state("cgm-1", battery_pct=81.0)
    yield s
    s.close()


def site(tmp_path: Path, url: str, secret: str = "a-long-api-secret-0123") -> NightscoutSite:
    f = tmp_path / "ns.secret"
    f.write_text(secret + "\n")
    f.chmod(0o600)
    return NightscoutSite(patient="alice", url=url, api_secret_file=str(f))


def uploader(store: Store, s: NightscoutSite, now: datetime = NOW) -> NightscoutUploader:
    return NightscoutUploader(store, s, "hub", clock=lambda: now)


# ---------------------------------------------------------------------- pure parts
@pytest.mark.parametrize(("rate", "name"), [
    (None, "NOT COMPUTABLE"), (-4.0, "DoubleDown"), (-3.5, "DoubleDown"),
    (-3.4, "SingleDown"), (-2.0, "SingleDown"), (-1.5, "FortyFiveDown"), (-1.0, "FortyFiveDown"),
    (0.0, "Flat"), (1.0, "Flat"), (1.5, "FortyFiveUp"), (2.0, "FortyFiveUp"),
    (3.0, "SingleUp"), (3.5, "SingleUp"), (3.6, "DoubleUp"),
])
def test_direction_follows_xdrip_thresholds(rate: float | None, name: str) -> None:
    assert nightscout.direction(rate) == name


def test_api_secret_header_is_lowercase_sha1_hex() -> None:
    assert nightscout.api_secret("a-long-api-secret-0123") == hashlib.sha1(
        b"a-long-api-secret-0123").hexdigest()
    assert nightscout.api_secret("x") == nightscout.api_secret("x").lower()


def test_config_refuses_plain_http_to_another_host(tmp_path: Path) -> None:
    secret = tmp_path / "s"
    secret.write_text("a-long-api-secret-0123")
    secret.chmod(0o600)
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'[[nightscout]]\npatient = "alice"\nurl = "http://ns.example.org"\n'
                   f'api_secret_file = "{secret}"\n')
    with pytest.raises(ConfigError, match=r"nightscout\[0\]\.url: plain http is allowed only"):
        load_config(cfg, required=True)
    cfg.write_text(f'[[nightscout]]\npatient = "alice"\nurl = "http://127.0.0.1:1337"\n'
                   f'api_secret_file = "{secret}"\n')
    assert load_config(cfg, required=True).nightscout[0].destination == "nightscout:alice"
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match=r"api_secret_file: .* readable by others"):
        load_config(cfg, required=True)


# ---------------------------------------------------------------------- against the stand-in
def test_backfill_of_14_days_goes_up_in_batches_of_at_most_300(
        tmp_path: Path, store: Store, ns: nightscout_standin.Nightscout) -> None:
    # A new CGM's stored 14 days (4032 records) plus two older ones outside backfill_days.
    store.add_readings(cgm(NOW - timedelta(days=14), 14 * 288))
    store.add_readings(cgm(NOW - timedelta(days=20), 2, session="old"))
    up = uploader(store, site(tmp_path, ns.url))
    assert asyncio.run(up.drain(60)) == 0
    sgv = ns.sgv()
    assert len(sgv) == 14 * 288
    entry_posts = [n for path, n, st in ns.requests if path == "/api/v1/entries"]
    assert max(entry_posts) <= 300 and sum(entry_posts) == 14 * 288
    first = sgv[0]
    assert first["date"] == int((NOW - timedelta(days=14)).timestamp() * 1000)
    assert first["dateString"] == "2026-11-21T12:00:00.000Z"
    assert first["sgv"] == 100 and first["direction"] == "Flat"
    assert first["device"] == "edge-gateway://hub/cgm-1"
    # One devicestatus for the whole backfill, with the transmitter battery.
    assert len(ns.devicestatus) == 1
    assert ns.devicestatus[0]["uploader"]["battery"] == 81
    st = nightscout.status(store)
    assert st["pending"] == 0 and st["sent"] == 14 * 288 + 1 and st["sites"]["alice"]["sent"]
    # MQTT's counts are untouched by Nightscout's.
    assert outbox_status(store)["sent"] == 0


def test_lost_replies_are_retried_without_duplicates(
        tmp_path: Path, store: Store, ns: nightscout_standin.Nightscout) -> None:
    store.add_readings(cgm(NOW - timedelta(hours=2), 24))
    up = uploader(store, site(tmp_path, ns.url))
    up.enqueue_new()
    ns.store_then_fail_next(1)  # stored, but the client sees a 500
    with pytest.raises(UploadError, match="HTTP 500"):
        asyncio.run(up.upload_once())
    assert pending_count(store, "nightscout:alice") == 25  # nothing settled before a 2xx
    assert len(ns.sgv()) == 24
    assert asyncio.run(up.drain(30)) == 0
    assert len(ns.sgv()) == 24  # the retry upserted the same sysTime+type
    # A restart (new uploader, same database) queues nothing again.
    again = uploader(store, site(tmp_path, ns.url))
    assert again.enqueue_new() == 0
    assert len(ns.sgv()) == 24


def test_a_wrong_secret_is_a_counted_failure_with_a_clear_log_line(
        tmp_path: Path, store: Store, ns: nightscout_standin.Nightscout,
        caplog: pytest.LogCaptureFixture) -> None:
    store.add_readings(cgm(NOW - timedelta(hours=1), 12))
    up = uploader(store, site(tmp_path, ns.url, secret="not-the-right-secret"))
    up.enqueue_new()
    with caplog.at_level(logging.ERROR), pytest.raises(UploadError) as err:
        asyncio.run(up.upload_once())
    assert err.value.auth
    assert "refused the upload (HTTP 401 Unauthorized): check api_secret_file" in caplog.text
    st = nightscout.status(store)
    assert st["failed"] == 12 and st["failed_attempts"] == 12 and st["pending"] == 13
    assert "401" in st["last_error"]
    assert ns.sgv() == []
    # Fixed secret: everything goes.
    good = uploader(store, site(tmp_path, ns.url))
    assert asyncio.run(good.drain(30)) == 0 and len(ns.sgv()) == 12


def test_a_week_offline_uploads_the_week(
        tmp_path: Path, store: Store, ns: nightscout_standin.Nightscout) -> None:
    s = site(tmp_path, ns.url)
    ns.down = True
    day = NOW - timedelta(days=7)
    for d in range(7):  # a day of readings arrives, the uploader tries and fails
        store.add_readings(cgm(day + timedelta(days=d), 288, session=f"d{d}"))
        up = uploader(store, s, now=day + timedelta(days=d + 1))
        assert asyncio.run(up.drain(5)) > 0
    assert ns.sgv() == []
    assert pending_count(store, "nightscout:alice") >= 7 * 288
    ns.down = False
    assert asyncio.run(uploader(store, s).drain(60)) == 0
    assert len(ns.sgv()) == 7 * 288


def test_meter_readings_become_mbg_in_mg_dl(
        tmp_path: Path, store: Store, ns: nightscout_standin.Nightscout) -> None:
    at = NOW - timedelta(hours=1)
    store.add_readings([Reading("meter", "2a18", "glucose", 5.5, "mmol/L", at, at, "seq:1",
                                patient_id="alice")])
    assert asyncio.run(uploader(store, site(tmp_path, ns.url)).drain(30)) == 0
    mbg = [e for e in ns.entries.values() if e["type"] == "mbg"]
    assert len(mbg) == 1 and mbg[0]["mbg"] == 99  # 5.5 mmol/L * 18.016


def test_the_uploader_task_uploads_live_readings(
        tmp_path: Path, store: Store, ns: nightscout_standin.Nightscout) -> None:
    up = NightscoutUploader(store, site(tmp_path, ns.url), "hub")

    async def scenario() -> None:
        stop, wake = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(up.run(stop, wake, interval_s=0.2))
        now = datetime.now(UTC)
        store.add_readings(cgm(now - timedelta(minutes=10), 2, trend=-2.5))
        wake.set()
        for _ in range(100):
            if len(ns.sgv()) == 2:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert [e["direction"] for e in ns.sgv()] == ["SingleDown", "SingleDown"]
