"""Fleet data for the console tests, and a console served on a loopback port.

The summaries are computed by the hub's own DSP (``dsp.glucose``, ``dsp.bp``) from synthetic
readings, packed by the hub's payload builder and landed by the ingest's decoder and commit,
so the console reads exactly what a real fleet stores.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import psycopg

from edge_gateway.cloud import decode
from edge_gateway.cloud.store import pg
from edge_gateway.config import SyncSection
from edge_gateway.dsp import bp, glucose
from edge_gateway.store.outbox import Item
from edge_gateway.sync import payload

DAY = 86400.0


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Hub:
    """Items as one hub's outbox would hold them, landed through decode + pg.commit."""

    def __init__(self, gateway: str, site: str) -> None:
        self.gateway, self.site = gateway, site
        self.seq = 0
        self.items: list[Item] = []

    def _add(self, kind: str, patient: str, created: datetime, body: dict[str, Any]) -> str:
        self.seq += 1
        item_id = f"{self.gateway}:db0:{self.seq}"
        self.items.append(Item(self.seq, item_id, 0 if kind == "alert" else 1, kind, patient,
                               _iso(created), json.dumps(body, separators=(",", ":"))))
        return item_id

    def summary(self, patient: str, kind: str, start: datetime, end: datetime,
                metrics: dict[str, Any], algorithm: str = "test/1") -> None:
        self._add("summary", patient, end, {
            "summary_id": self.seq + 1, "kind": kind, "patient": patient, "device": "dev-1",
            "window_start": _iso(start), "window_end": _iso(end), "metrics": metrics,
            "coverage": 0.95, "algorithm": algorithm, "created_at": _iso(end)})

    def alert(self, patient: str, alert_id: int, rule: str, severity: str, state: str,
              message: str, raised_at: datetime, at: datetime | None = None) -> None:
        self._add("alert", patient, at or raised_at, {
            "alert_id": alert_id, "rule": rule, "severity": severity, "state": state,
            "message": message, "raised_at": _iso(raised_at), "key": f"{rule}:{patient}",
            "value": None, "unit": None, "patient": patient, "device": "dev-1", "details": {}})

    def command_result(self, patient: str, command_id: str, status: str,
                       reason: str | None = None, at: datetime | None = None) -> None:
        when = at or datetime.now(UTC)
        self._add("command", patient, when, {
            "command_id": command_id, "command": "alert.ack", "status": status,
            "reason": reason, "actor": "x", "applied_at": _iso(when)})

    def land(self, dsn: str) -> None:
        """Everything added so far, through the hub's payload builder and the ingest."""
        opts = payload.Options(self.gateway, self.site, sync=SyncSection(batch_size=50))
        by_patient: dict[tuple[str, str | None], list[Item]] = {}
        for it in self.items:
            by_patient.setdefault((it.kind, it.patient_id), []).append(it)
        msgs = [m for group in by_patient.values()
                for m in payload.build_all(group, opts, datetime.now(UTC))]
        decoded = [decode.classify(m.topic, m.payload) for m in msgs]
        bad = [d for d in decoded if isinstance(d, decode.DeadLetter)]
        assert not bad, bad[:1]
        with pg.connect(dsn) as conn:
            pg.migrate(conn)
            times = [it.created_at for d in decoded if isinstance(d, decode.DataMessage)
                     for it in d.items]
            pg.Partitions().ensure(conn, pg.wanted_months(times, datetime.now(UTC)))
            pg.commit(conn, "test", decoded, [datetime.now(UTC)] * len(decoded))
        self.items.clear()


def cgm_day(rng: np.random.Generator, start: datetime, days: int, *, low_night: bool = True
            ) -> tuple[np.ndarray, np.ndarray]:
    t = start.timestamp() + np.arange(0, days * DAY, 300.0)
    hours = (t % DAY) / 3600.0
    g = 135 + 45 * np.sin(2 * math.pi * (hours - 9) / 24) + rng.normal(0, 18, t.size)
    g += 60 * np.exp(-((hours - 13.5) ** 2) / 2)  # lunch
    if low_night:
        g -= 55 * np.exp(-((hours - 3.5) ** 2) / 0.8)
    return t, np.clip(g, 40, 400)


def rich_patient(hub: Hub, patient: str, now: datetime, *, af: bool = True,
                 seed: int = 1) -> None:
    """14 days of CGM (daily + 14-day summaries with AGP), 6 weeks of BP, rhythm, HRV."""
    rng = np.random.default_rng(seed)
    end = datetime(now.year, now.month, now.day, tzinfo=UTC)
    start = end - timedelta(days=14)
    t, g = cgm_day(rng, start, 14)
    hub.summary(patient, "glucose_14d", start, end,
                glucose.glucose_metrics(t, g, window_s=14 * DAY).as_dict(), glucose.ALGORITHM)
    for d in range(14):
        a = start + timedelta(days=d)
        sel = (t >= a.timestamp()) & (t < a.timestamp() + DAY)
        m = glucose.glucose_metrics(t[sel], g[sel], window_s=DAY).as_dict()
        m.pop("agp")
        hub.summary(patient, "glucose_daily", a, a + timedelta(days=1), m, glucose.ALGORITHM)
    monday = end - timedelta(days=end.weekday())
    for w in range(6, 0, -1):
        a = monday - timedelta(weeks=w)
        tt = a.timestamp() + np.sort(rng.uniform(0, 7 * DAY, 14))
        sys_ = rng.normal(142 - 2 * w, 9, 14)
        dia = rng.normal(88 - w, 6, 14)
        res = bp.bp_summary(tt, sys_, dia, rng.normal(72, 5, 14))
        hub.summary(patient, "bp_weekly", a, a + timedelta(weeks=1), asdict(res), bp.ALGORITHM)
    for d in range(14):
        a = start + timedelta(days=d)
        burden = float(rng.uniform(3, 30)) if af and d >= 10 else 0.0
        episodes = ([{"start": _iso(a + timedelta(hours=2)),
                      "end": _iso(a + timedelta(hours=2, minutes=40)), "beats": 3000}]
                    if burden else [])
        hub.summary(patient, "rhythm_daily", a, a + timedelta(days=1), {
            "n_beats": 98000, "mean_hr_bpm": 70.0, "af_burden_pct": round(burden, 2),
            "af_episodes": episodes, "af_longest_episode_s": 2400.0 if burden else 0.0},
            "rhythm/3")
        hub.summary(patient, "hrv_daily", a, a + timedelta(days=1), {
            "mean_hr_bpm": float(rng.normal(70, 3)), "sdnn_ms": float(rng.normal(42, 4)),
            "rmssd_ms": float(rng.normal(31, 4))}, "hrv/1")
    hub.summary(patient, "hrv", end - timedelta(minutes=5), end,
                {"mean_hr_bpm": 74.0, "sdnn_ms": 40.0, "rmssd_ms": 30.0}, "hrv/1")


def query(dsn: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as c:
        cur = c.execute(sql.encode(), params or None)
        return list(cur.fetchall()) if cur.description is not None else []


# ---------------------------------------------------------------------- a served console
class Served:
    """The console app under uvicorn on a loopback port, in a thread of this process."""

    def __init__(self, settings: Any, port: int) -> None:
        import uvicorn

        from edge_gateway.cloud.console.app import make_app

        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        cfg = uvicorn.Config(make_app(settings), host="127.0.0.1", port=port,
                             log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, name="console", daemon=True)

    def start(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "console did not start"
            assert self.thread.is_alive(), "console thread died"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@contextmanager
def served(settings: Any) -> Iterator[Served]:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
    from mosquitto import free_port

    s = Served(settings, free_port()).start()
    try:
        yield s
    finally:
        close_clients()
        s.stop()


def add_user(dsn: str, name: str, role: str, sites: Sequence[str],
             password: str = "correct horse 1") -> None:
    from edge_gateway.cloud.console.auth import hash_password
    from edge_gateway.cloud.store import console as cstore

    with pg.connect(dsn) as conn:
        pg.migrate(conn)
        assert cstore.add_user(cstore.Db(conn), name, role, sites, hash_password(password))


#: Clients made by :func:`client`; :func:`close_clients` closes them (test teardown).
OPEN: list[httpx.Client] = []


def client(base: str) -> httpx.Client:
    c = httpx.Client(base_url=base, follow_redirects=False, timeout=20)
    OPEN.append(c)
    return c


def close_clients() -> None:
    while OPEN:
        OPEN.pop().close()


def login(base: str, name: str, password: str = "correct horse 1") -> httpx.Client:
    """An HTTP client logged in as ``name`` (its cookies hold the session)."""
    c = client(base)
    r = c.get("/login")
    token = r.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = c.post("/login", data={"username": name, "password": password, "csrf_token": token})
    assert r.status_code == 303, (r.status_code, r.text[:300])
    return c


def csrf_of(html: str) -> str:
    return html.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
