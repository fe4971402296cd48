"""Nightscout uploader: a patient's CGM and meter glucose to a Nightscout site.

Two steps, both durable:

1. **Enqueue.**  New ``cgm_glucose`` / ``glucose`` readings of the site's patient (followed by
   reading id from a mark kept in ``meta``) become outbox items of the destination
   ``nightscout:<name>``, each carrying its finished Nightscout entry: ``date`` (ms) and
   ``dateString`` are the reading's derived UTC time, frozen in the item, so a retry re-sends
   the same instant and Nightscout's upsert on ``sysTime`` + ``type`` never duplicates it.
   The items and the mark commit together (a crash redoes at most that step, which the upsert
   absorbs).  The first run starts ``backfill_days`` back, so a new CGM's stored 14 days go
   up too.
2. **Upload.**  ``POST /api/v1/entries`` in batches of at most 300, ``/api/v1/devicestatus``
   for the status items; an item is settled only on a 2xx.  A 401/403 is a counted failure with
   one clear log line; anything else is retried with full-jitter backoff, for as long as it
   takes (a week offline uploads the week).

Pure builders (``direction``, ``sgv_entry``, ``mbg_entry``, ``devicestatus``, ``api_secret``)
do no I/O.  HTTP is the standard library's, in a worker thread (``asyncio.to_thread``).

The server side this follows is cgm-remote-monitor: ``lib/server/entries.js`` (``create``:
sysTime from dateString, else date; upsert filter ``{sysTime, type}``) and
``lib/authorization/index.js`` (the ``api-secret`` header compared with the SHA-1 hex of
API_SECRET).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from edge_gateway.backoff import Backoff
from edge_gateway.config import NightscoutSite, read_secret
from edge_gateway.reading import iso, parse_iso
from edge_gateway.store import integrations as q
from edge_gateway.store.db import Store
from edge_gateway.store.outbox import PRIORITY_BULK, PRIORITY_SUMMARY, Item, Outbox
from edge_gateway.units import convert

log = logging.getLogger(__name__)

#: Nightscout's own bound on one upload batch (and ours).
MAX_BATCH = 300
KINDS = ("cgm_glucose", "glucose")
#: A devicestatus at most this often (a backfill of 4000 readings sends one).
STATUS_EVERY = timedelta(minutes=5)
PREFIX = "nightscout:"

# xDrip+'s slope thresholds (mg/dL per minute) -> Nightscout direction names.
_DIRECTIONS = ((-3.5, "DoubleDown"), (-2.0, "SingleDown"), (-1.0, "FortyFiveDown"),
               (1.0, "Flat"), (2.0, "FortyFiveUp"), (3.5, "SingleUp"))


# ---------------------------------------------------------------------- pure builders
def direction(rate_mg_dl_per_min: float | None) -> str:
    """The Nightscout direction of a trend rate, with xDrip+'s thresholds."""
    if rate_mg_dl_per_min is None:
        return "NOT COMPUTABLE"
    for upper, name in _DIRECTIONS:
        if rate_mg_dl_per_min <= upper:
            return name
    return "DoubleUp"


def api_secret(secret: str) -> str:
    """The ``api-secret`` header: lowercase hex SHA-1 of the site's API_SECRET."""
    return hashlib.sha1(secret.encode("utf-8")).hexdigest()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _when(time_text: str) -> tuple[int, str]:
    """(epoch ms, ISO 8601 with ms and Z) of one instant: ``date`` and ``dateString``."""
    t = parse_iso(time_text)
    assert t is not None
    ms = (t - _EPOCH) // timedelta(milliseconds=1)
    text = (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return ms, text


def _mgdl(value: float, unit: str) -> int:
    mg = convert(value, unit, "mg/dL")
    return round(value if mg is None else mg)


def sgv_entry(r: q.ReadingRow, device: str) -> dict[str, Any]:
    """A CGM reading as a Nightscout ``sgv`` entry (mg/dL integer)."""
    ms, text = _when(r.time)
    rate = r.extra.get("trend_mg_dl_per_min")
    rate_f = float(rate) if isinstance(rate, int | float) else None
    if rate_f is not None and r.unit == "mmol/L":
        rate_f *= convert(1.0, "mmol/L", "mg/dL") or 1.0
    entry: dict[str, Any] = {"type": "sgv", "sgv": _mgdl(float(r.value or 0), r.unit),
                             "date": ms, "dateString": text, "direction": direction(rate_f),
                             "device": device}
    if rate_f is not None:
        entry["trendRate"] = round(rate_f, 2)
    return entry


def mbg_entry(r: q.ReadingRow, device: str) -> dict[str, Any]:
    """A meter reading as a Nightscout ``mbg`` entry (mg/dL integer)."""
    ms, text = _when(r.time)
    return {"type": "mbg", "mbg": _mgdl(float(r.value or 0), r.unit), "date": ms,
            "dateString": text, "device": device}


def devicestatus(gateway: str, at: datetime, battery_pct: float | None,
                 sensor_status: int | None) -> dict[str, Any]:
    """The uploader's status.  The hub runs on mains, so the battery shown is the CGM
    transmitter's (the part that runs out); the sensor state comes from its annunciation."""
    uploader: dict[str, Any] = {"name": f"edge-gateway {gateway}"}
    if battery_pct is not None:
        uploader["battery"] = round(battery_pct)
    state = "OK" if not sensor_status else f"sensor status 0x{sensor_status:06x}"
    return {"device": f"edge-gateway://{gateway}", "created_at": iso(at),
            "uploader": uploader, "xdripjs": {"stateString": state}}


def entries_and_statuses(items: Sequence[Item]) -> tuple[list[Item], list[Item]]:
    return ([i for i in items if i.kind == "entry"], [i for i in items if i.kind != "entry"])


# ---------------------------------------------------------------------- HTTP
class UploadError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def auth(self) -> bool:
        return self.status in (401, 403)


def post_json(url: str, secret_hash: str, body: Any, timeout_s: float = 30.0) -> int:
    """POST ``body`` as JSON; the HTTP status on a 2xx, UploadError otherwise (blocking).

    TLS is verified against the system's CA store (``ssl.create_default_context``)."""
    data = json.dumps(body, separators=(",", ":")).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json",
        "api-secret": secret_hash, "User-Agent": "edge-gateway"})
    ctx = ssl.create_default_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(req, timeout=timeout_s, context=ctx) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as err:
        err.read()
        err.close()
        raise UploadError(f"HTTP {err.code} {err.reason}", err.code) from None
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        raise UploadError(f"cannot reach {url}: {reason}") from None


# ---------------------------------------------------------------------- the uploader
@dataclass
class _Counts:
    batches: int = 0
    auth_failures: int = 0


class NightscoutUploader:
    """One ``[[nightscout]]`` site: enqueue new readings, upload pending items."""

    def __init__(self, store: Store, site: NightscoutSite, gateway_id: str, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 post: Callable[[str, str, Any], int] = post_json,
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.site = site
        self.gateway = gateway_id
        self.clock = clock
        self.post = post
        self.outbox = Outbox(store, destination=site.destination)
        self.base = site.url.rstrip("/")
        self.secret_hash = api_secret(read_secret(site.api_secret_file))
        self.mark_key = f"{site.destination}.reading_id"
        self.backoff = Backoff(2.0, 300.0, rng=rng or random.Random())
        self.counts = _Counts()
        self._mark: int | None = None
        self._last_status: datetime | None = None

    # ------------------------------------------------------------------ enqueue
    def enqueue_new(self, limit: int = 5000) -> int:
        """Queue new readings of the patient as entries; returns how many were queued."""
        if self._mark is None:
            self._mark = int(self.store.meta(self.mark_key) or 0)
        top = q.max_reading_id(self.store)
        if top <= self._mark:
            return 0
        since = iso(self.clock() - timedelta(days=self.site.backfill_days))
        rows = q.readings_after(self.store, self._mark, KINDS, limit=limit,
                                patient_id=self.site.patient, since=since)
        new_mark = rows[-1].id if len(rows) >= limit else top
        if not rows:
            self._mark = new_mark  # nothing of ours: remember in memory only (no disk write)
            return 0
        now = self.clock()
        cgm = [r for r in rows if r.kind == "cgm_glucose"]
        with self.store.transaction():
            for r in rows:
                device = self._device_label(r.device_id)
                entry = sgv_entry(r, device) if r.kind == "cgm_glucose" else mbg_entry(r, device)
                self.outbox.add("entry", entry, priority=PRIORITY_SUMMARY, created_at=now,
                                patient_id=self.site.patient, ref_table="readings", ref_id=r.id)
            if cgm and (self._last_status is None or now - self._last_status >= STATUS_EVERY):
                self._last_status = now
                battery = next((d.battery_pct for d in q.devices(self.store)
                                if d.id == cgm[-1].device_id), None)
                status = cgm[-1].extra.get("sensor_status")
                self.outbox.add("devicestatus", devicestatus(
                    self.gateway, now, battery, status if isinstance(status, int) else None),
                    priority=PRIORITY_BULK, created_at=now, patient_id=self.site.patient)
            self.store.set_meta(self.mark_key, str(new_mark))
        self._mark = new_mark
        return len(rows)

    def _device_label(self, device_id: str) -> str:
        return f"edge-gateway://{self.gateway}/{device_id}"

    # ------------------------------------------------------------------ upload
    async def upload_once(self) -> int:
        """Upload up to one batch of each kind; returns how many items were settled.
        Raises UploadError when the site refused or could not be reached."""
        items = self.outbox.batch(MAX_BATCH)
        if not items:
            return 0
        entries, statuses = entries_and_statuses(items)
        done = 0
        for path, group in (("/api/v1/entries", entries), ("/api/v1/devicestatus", statuses)):
            if not group:
                continue
            body: Any = [i.body for i in group] if path.endswith("entries") else None
            seqs = [i.seq for i in group]
            try:
                if body is not None:
                    await asyncio.to_thread(self.post, self.base + path, self.secret_hash, body)
                else:
                    for i in group:  # devicestatus: one document per request
                        await asyncio.to_thread(self.post, self.base + path, self.secret_hash,
                                                i.body)
            except UploadError as err:
                self.outbox.reject(seqs, str(err), self.clock())
                if err.auth:
                    self.counts.auth_failures += 1
                    log.error("nightscout %s refused the upload (%s): check api_secret_file"
                              " (%s) holds the site's API_SECRET; %d items kept", self.base,
                              err, self.site.api_secret_file, len(seqs))
                raise
            with self.store.relaxed_sync():
                done += self.outbox.accept(seqs, self.clock())
            self.counts.batches += 1
        return done

    async def drain(self, timeout_s: float) -> int:
        """Enqueue and upload until nothing is pending or ``timeout_s`` passes; returns what
        is left pending."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self.enqueue_new()
        while self.outbox.pending() and loop.time() < deadline:
            try:
                await asyncio.wait_for(self.upload_once(), max(0.1, deadline - loop.time()))
            except (UploadError, TimeoutError):
                break
        return self.outbox.pending()

    async def run(self, stop: asyncio.Event, wake: asyncio.Event | None = None,
                  interval_s: float = 10.0, drain_timeout_s: float = 0.0) -> None:
        """Follow and upload until ``stop``; then drain for up to ``drain_timeout_s``."""
        log.info("nightscout: uploading patient %s to %s", self.site.patient, self.base)
        while not stop.is_set():
            delay = interval_s
            try:
                self.enqueue_new()
                while not stop.is_set() and await self.upload_once():
                    pass
                self.backoff.reset()
            except UploadError as err:
                delay = self.backoff.next()
                if not err.auth:
                    log.warning("nightscout %s: %s; retrying in %.0f s", self.base, err, delay)
            waits = [asyncio.ensure_future(stop.wait())]
            if wake is not None:
                waits.append(asyncio.ensure_future(wake.wait()))
            try:
                await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        if drain_timeout_s > 0:
            with contextlib.suppress(Exception):
                await self.drain(drain_timeout_s)


# ---------------------------------------------------------------------- status
def status(store: Store, sites: Sequence[NightscoutSite] = ()) -> dict[str, Any]:
    """The ``nightscout`` key of ``sync status``: the same counts as MQTT's, over every
    Nightscout destination (configured or found in the outbox), and per site."""
    from edge_gateway.store import outbox

    names = {s.destination for s in sites}
    names |= {d for d in outbox.destinations(store) if d.startswith(PREFIX)}
    per = {d[len(PREFIX):]: outbox.status(store, d) for d in sorted(names)}
    total = _combine(list(per.values()))
    total["sites"] = per
    return total


def _combine(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    by = {"alert": 0, "summary": 0, "bulk": 0}
    for p in parts:
        for k, v in p["pending_by_priority"].items():
            by[k] = by.get(k, 0) + v

    def pick(key: str, fn: Callable[[list[str]], str]) -> str | None:
        vals = [str(p[key]) for p in parts if p[key]]
        return fn(vals) if vals else None

    newest_err = max(parts, key=lambda p: p["last_error_at"] or "", default=None)
    return {
        "pending": sum(p["pending"] for p in parts), "pending_by_priority": by,
        "sent": sum(p["sent"] for p in parts), "failed": sum(p["failed"] for p in parts),
        "failed_attempts": sum(p["failed_attempts"] for p in parts),
        "oldest_pending_at": pick("oldest_pending_at", min),
        "last_success_at": pick("last_success_at", max),
        "last_error": newest_err["last_error"] if newest_err else None,
        "last_error_at": newest_err["last_error_at"] if newest_err else None,
    }
