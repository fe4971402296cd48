"""Alerts: the life cycle (pure) and the engine that keeps it in SQLite.

Life cycle of one alert (one de-duplication key, e.g. ``glucose_low:alice``)::

    raised ──(nobody acknowledged within alert.escalate, or the condition worsened)──> escalated
      │                                                                                  │
      └──────────────(caregiver: alerts ack)──> acknowledged <───────────────────────────┘
    any open state ──(condition clear for alert.clear_after / event quiet)──> resolved

* **Hysteresis:** a condition clears only beyond a margin (``*.hysteresis``) and must stay
  clear for ``alert.clear_after`` before the alert resolves, so a glucose wobbling around 70
  is one alert, not twenty.
* **Re-notify:** an open, unacknowledged alert is delivered again every ``alert.renotify``
  (``renotified`` events go to the local hook and ``alert_events``; they are not state changes,
  so they are not synced).
* **Escalation:** after ``alert.escalate`` without acknowledgement, or when a condition
  worsens (glucose level 1 → level 2), the alert is escalated and its severity raised.
* Every state change is one row in ``alert_events`` and one outbox item at priority 0, in the
  same transaction as the alert row.

:class:`Lifecycle` is pure (times come from readings, or from the ``now`` the daemon passes
to :meth:`AlertEngine.tick`).  :class:`AlertEngine` is the store edge the daemon calls.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge_gateway.alerts.rules import SEVERITIES, DeviceFacts, Observation, Rules
from edge_gateway.alerts.thresholds import Thresholds
from edge_gateway.errors import NotFound, UsageError
from edge_gateway.reading import Alert, Reading, Summary, iso, parse_iso
from edge_gateway.store import Store
from edge_gateway.store import alerts as alert_rows
from edge_gateway.store import devices as device_rows
from edge_gateway.store.outbox import enqueue_alert, oldest_pending_at

OPEN_STATES = ("raised", "escalated", "acknowledged")
ThresholdsFor = Callable[[str | None], Thresholds]


@dataclass(slots=True)
class OpenAlert:
    """The mutable state of one open alert (a row of ``alerts``)."""

    key: str
    rule: str
    patient_id: str | None
    device_id: str | None
    severity: str
    level: int
    state: str
    message: str
    raised_at: datetime
    value: float | None = None
    unit: str | None = None
    id: int | None = None
    last_notified_at: datetime | None = None
    escalated_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    clear_since: datetime | None = None
    last_event_at: datetime | None = None
    notify_count: int = 0
    updated_at: datetime | None = None
    event: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """One thing that happened to an alert: ``raised``, ``escalated``, ``renotified``,
    ``acknowledged`` or ``resolved``.  ``to_json()`` is what the hook reads on stdin."""

    event: str
    at: datetime
    alert: OpenAlert  # a snapshot taken right after the transition

    @property
    def alert_id(self) -> int | None:
        return self.alert.id

    def to_alert(self) -> Alert:
        a = self.alert
        details = dict(a.details, event=self.event, level=a.level, at=iso(self.at))
        return Alert(patient_id=a.patient_id, rule=a.rule, severity=a.severity, state=a.state,
                     message=a.message, raised_at=a.raised_at, key=a.key, value=a.value,
                     unit=a.unit, device_id=a.device_id, details=details)

    def to_json(self) -> str:
        a = self.alert
        return json.dumps({
            "alert_id": a.id, "event": self.event, "state": a.state, "at": iso(self.at),
            "rule": a.rule, "severity": a.severity, "level": a.level, "key": a.key,
            "patient": a.patient_id, "device": a.device_id, "message": a.message,
            "value": a.value, "unit": a.unit, "raised_at": iso(a.raised_at),
            "acknowledged_by": a.acknowledged_by, "notify_count": a.notify_count,
            "details": a.details,
        }, separators=(",", ":"), default=str)


def _bump(severity: str, by: int = 1) -> str:
    i = SEVERITIES.index(severity) if severity in SEVERITIES else 1
    return SEVERITIES[min(i + by, len(SEVERITIES) - 1)]


def _max_sev(a: str, b: str) -> str:
    return a if SEVERITIES.index(a) >= SEVERITIES.index(b) else b


class Lifecycle:
    """Pure state machine: (open alert or None, observation) -> transitions."""

    @staticmethod
    def observe(alert: OpenAlert | None, obs: Observation,
                th: Thresholds) -> tuple[OpenAlert | None, list[AlertTransition], bool]:
        """Apply one observation.  Returns (alert, transitions, changed)."""
        if obs.active is True:
            if alert is None:
                new = OpenAlert(
                    key=obs.key, rule=obs.rule, patient_id=obs.patient_id,
                    device_id=obs.device_id, severity=obs.severity, level=obs.level,
                    state="raised", message=obs.message, raised_at=obs.at, value=obs.value,
                    unit=obs.unit, last_notified_at=obs.at, notify_count=1,
                    last_event_at=obs.at if obs.event else None, updated_at=obs.at,
                    event=obs.event, details=dict(obs.details))
                return new, [AlertTransition("raised", obs.at, _snap(new))], True
            # The row keeps the value that raised (or escalated) the alert; a stream that stays
            # out of range changes nothing, so a 1 Hz heart rate costs no write per second.
            # A reading from before the clear time began or before the newest event (a
            # backfilled copy, a reading re-delivered after a restart) neither restarts the
            # clear time nor counts as another event.
            changed = _restart_clear(alert, obs.at)
            if obs.event and (alert.last_event_at is None or obs.at > alert.last_event_at):
                alert.last_event_at = obs.at
                alert.details["events"] = int(alert.details.get("events", 1)) + 1
                changed = True
            if obs.level > alert.level:
                alert.value, alert.unit = obs.value, obs.unit
                # Worse than what was raised (level 1 -> level 2): escalate even when it was
                # acknowledged, because the caregiver acknowledged something milder.
                alert.level, alert.message = obs.level, obs.message
                alert.severity = _max_sev(_bump(alert.severity), obs.severity)
                alert.state, alert.escalated_at = "escalated", obs.at
                alert.last_notified_at, alert.updated_at = obs.at, obs.at
                alert.notify_count += 1
                return alert, [AlertTransition("escalated", obs.at, _snap(alert))], True
            return alert, [], changed
        if alert is None:
            return None, [], False
        if obs.active is None:
            return alert, [], _restart_clear(alert, obs.at)
        if alert.event:
            return alert, [], False  # events resolve by quiet time, not by a clear reading
        if obs.at < alert.raised_at:
            return alert, [], False  # from before the alert: it cannot clear it
        if alert.clear_since is None:
            alert.clear_since = obs.at
        if (obs.at - alert.clear_since).total_seconds() >= th["alert.clear_after"]:
            return Lifecycle._resolve(alert, obs.at)
        return alert, [], True

    @staticmethod
    def due(alert: OpenAlert, now: datetime,
            th: Thresholds) -> tuple[OpenAlert, list[AlertTransition], bool]:
        """Time-driven steps: event quiet -> resolved; escalation; re-notify."""
        if alert.event and alert.last_event_at is not None and \
                (now - alert.last_event_at).total_seconds() >= th["alert.event_quiet"]:
            return Lifecycle._resolve(alert, now)
        if alert.severity == "info":
            return alert, [], False  # informative (a battery): shown, never pushed again
        if alert.state == "raised" and alert.clear_since is None and \
                (now - alert.raised_at).total_seconds() >= th["alert.escalate"]:
            alert.state, alert.escalated_at = "escalated", now
            alert.severity = _bump(alert.severity)
            alert.last_notified_at, alert.updated_at = now, now
            alert.notify_count += 1
            return alert, [AlertTransition("escalated", now, _snap(alert))], True
        if alert.state in ("raised", "escalated") and alert.clear_since is None:
            last = alert.last_notified_at or alert.raised_at
            if (now - last).total_seconds() >= th["alert.renotify"]:
                alert.last_notified_at = now
                alert.notify_count += 1
                return alert, [AlertTransition("renotified", now, _snap(alert))], True
        return alert, [], False

    @staticmethod
    def acknowledge(alert: OpenAlert, by: str,
                    at: datetime) -> tuple[OpenAlert, list[AlertTransition]]:
        if alert.state == "acknowledged":
            return alert, []
        alert.state, alert.acknowledged_at, alert.acknowledged_by = "acknowledged", at, by
        alert.updated_at = at
        return alert, [AlertTransition("acknowledged", at, _snap(alert))]

    @staticmethod
    def _resolve(alert: OpenAlert,
                 at: datetime) -> tuple[OpenAlert, list[AlertTransition], bool]:
        alert.state, alert.resolved_at, alert.updated_at = "resolved", at, at
        return alert, [AlertTransition("resolved", at, _snap(alert))], True


def _restart_clear(alert: OpenAlert, at: datetime) -> bool:
    """Out of range (or in the band) again at ``at``: the clear time starts over, unless
    ``at`` is older than the clear time's start (a late copy).  True when that changed it."""
    if alert.clear_since is None or at < alert.clear_since:
        return False
    alert.clear_since = None
    return True


def _snap(a: OpenAlert) -> OpenAlert:
    return dataclasses.replace(a, details=dict(a.details))


# --------------------------------------------------------------------------- the store edge
_COLS = alert_rows.COLUMNS
_TIMES = {"raised_at", "last_notified_at", "escalated_at", "acknowledged_at", "resolved_at",
          "clear_since", "last_event_at", "updated_at"}


def _from_row(row: Sequence[Any]) -> OpenAlert:
    d = dict(zip(_COLS, row, strict=True))
    for k in _TIMES:
        d[k] = parse_iso(d[k])
    details = json.loads(d.pop("details") or "{}")
    event = bool(details.pop("_event", False))
    return OpenAlert(**d, event=event, details=details)


def load_open(store: Store, keys: Iterable[str] | None = None) -> dict[str, OpenAlert]:
    return {a.key: a for a in map(_from_row, alert_rows.open_rows(store))
            if keys is None or a.key in keys}


def load_alert(store: Store, alert_id: int) -> OpenAlert:
    row = alert_rows.row(store, alert_id)
    if row is None:
        raise NotFound("alert", str(alert_id), hint="`edge-gateway alerts list` shows them")
    return _from_row(row)


def _save(store: Store, a: OpenAlert, transitions: Sequence[AlertTransition]) -> None:
    """Write the alert row and one event row (and outbox item) per transition, inside the
    caller's transaction."""
    details = json.dumps(dict(a.details, _event=a.event) if a.event else a.details,
                         separators=(",", ":"), default=str)
    values = {c: getattr(a, c) for c in _COLS if c not in ("id", "details")}
    for k in _TIMES:
        values[k] = iso(values[k])
    values["updated_at"] = values["updated_at"] or values["raised_at"]
    values["details"] = details
    if a.id is None:
        a.id = alert_rows.insert(store, values)
        for t in transitions:
            t.alert.id = a.id
    else:
        alert_rows.update(store, a.id, values)
    for t in transitions:
        alert_rows.add_event(store, a.id, t.event, iso(t.at), json.dumps(
            {"severity": t.alert.severity, "level": t.alert.level,
             "by": t.alert.acknowledged_by if t.event == "acknowledged" else None},
            separators=(",", ":")))
        if t.event != "renotified":
            enqueue_alert(store, a.id, t.to_alert(), t.at)


#: Record identities remembered for de-duplication (~130 bytes each): two weeks of a CGM's
#: records and every spot device's.  Stream readings keyed by receive time (``rx:``) cannot
#: come twice under one identity and are not remembered.
JUDGED_MAX = 50_000
#: Resolved alerts remembered per de-duplication key (newest first) for the same purpose.
SPANS_KEPT = 64


class AlertEngine:
    """The daemon's entry point: feed it readings, summaries and ticks; deliver what it returns.

    ``thresholds`` is a callable ``patient_id -> Thresholds`` (a
    :class:`edge_gateway.alerts.thresholds.ThresholdLoader`), which re-reads when a caregiver
    changes a setting.  Every call is one SQLite transaction; transitions come back in time
    order for the caller to hand to :class:`edge_gateway.alerts.hooks.HookRunner`.
    """

    def __init__(self, store: Store, thresholds: ThresholdsFor) -> None:
        self.store = store
        self.thresholds = thresholds
        self.rules = Rules()
        # Newest arrival per device, kept from the readings we see so the minute tick does not
        # scan a year of readings per device; filled from the store once, on the first tick.
        self._last_seen: dict[str, datetime] | None = None
        # Identities of the readings already evaluated (bounded, oldest forgotten first): a
        # re-delivered or backfilled copy of one is stored once and judged once.
        self._judged: OrderedDict[int, None] = OrderedDict()
        # Alert key -> (raised, resolved) of its newest resolved alerts, read from the alerts
        # table the first time the key is needed (so it holds across restarts) and kept up to
        # date after: a reading from inside such a span (late, re-delivered, backfilled) does
        # not raise the same alert again.
        self._spans: dict[str, list[tuple[datetime, datetime]]] = {}

    def _fresh(self, readings: Iterable[Reading]) -> list[Reading]:
        out = []
        judged = self._judged
        for r in readings:
            if r.record_key.startswith("rx:"):
                out.append(r)
                continue
            ident = hash((r.device_id, r.characteristic, r.kind, r.reset_epoch, r.record_key))
            if ident in judged:
                judged.move_to_end(ident)
                continue
            judged[ident] = None
            out.append(r)
        while len(judged) > JUDGED_MAX:
            judged.popitem(last=False)
        return out

    def _resolved_at(self, key: str, at: datetime) -> bool:
        """Whether an alert of ``key`` that covered ``at`` was raised and resolved already."""
        spans = self._spans.get(key)
        if spans is None:
            spans = self._spans[key] = [
                (lo, hi) for a, b in alert_rows.resolved_spans(self.store, key, SPANS_KEPT)
                if (lo := parse_iso(a)) is not None and (hi := parse_iso(b)) is not None]
        return any(lo <= at <= hi for lo, hi in spans)

    def _resolved(self, alert: OpenAlert) -> None:
        spans = self._spans.get(alert.key)
        if spans is not None and alert.resolved_at is not None:
            # Not loaded yet: the load will find it in the table (it is written right after).
            spans.insert(0, (alert.raised_at, alert.resolved_at))
            del spans[SPANS_KEPT:]

    def on_readings(self, readings: Iterable[Reading]) -> list[AlertTransition]:
        ordered = sorted(self._fresh(readings), key=lambda r: r.time)
        if self._last_seen is not None:
            for r in ordered:
                seen = self._last_seen.get(r.device_id)
                if seen is None or r.received_at > seen:
                    self._last_seen[r.device_id] = r.received_at
        th = _memo(self.thresholds)
        obs: list[Observation] = []
        for r in ordered:
            obs.extend(self.rules.evaluate_reading(r, th(r.patient_id)))
        return self._apply(obs)

    def on_summary(self, summary: Summary) -> list[AlertTransition]:
        return self._apply(self.rules.evaluate_summary(
            summary, self.thresholds(summary.patient_id)))

    def tick(self, now: datetime) -> list[AlertTransition]:
        """Gateway-clock checks (silent devices, batteries, the outbox), then re-notify,
        escalation and event quiet-time for every open alert.  Call it every minute or so."""
        if self._last_seen is None:
            self._last_seen = {
                # The writer keeps last_reading_at per device: never scan readings here.
                dev: t for dev, text in device_rows.last_reading_times(self.store)
                if (t := parse_iso(text)) is not None}
        devices = []
        for dev, patient, seen, battery, enabled, added in device_rows.activity(self.store):
            times = [t for t in (parse_iso(seen), self._last_seen.get(dev)) if t is not None]
            last = max(times) if times else parse_iso(added)
            devices.append(DeviceFacts(dev, patient, last, battery, bool(enabled)))
        oldest = oldest_pending_at(self.store)
        obs = self.rules.evaluate_tick(now, devices, parse_iso(oldest), self.thresholds)
        return self._apply(obs, now=now)

    def acknowledge(self, alert_id: int, by: str, at: datetime) -> AlertTransition | None:
        """Mark an open alert acknowledged (stops re-notify and escalation)."""
        with self.store.transaction():
            return acknowledge(self.store, alert_id, by, at)

    def _apply(self, observations: Sequence[Observation],
               now: datetime | None = None) -> list[AlertTransition]:
        out: list[AlertTransition] = []
        thresholds = _memo(self.thresholds)
        with self.store.transaction():
            # Loaded inside the write transaction, so an acknowledgement the CLI committed a
            # moment ago is seen and cannot be overwritten.
            open_ = load_open(self.store)
            # Changed alerts are written once per call, not once per reading (a 1 Hz heart
            # rate stream would otherwise rewrite the row every second).
            dirty: dict[str, tuple[OpenAlert, list[AlertTransition]]] = {}

            def step(key: str, alert: OpenAlert, ts: list[AlertTransition],
                     changed: bool) -> None:
                if changed or ts:
                    held = dirty.get(key, (alert, []))[1]
                    dirty[key] = (alert, held + ts)
                out.extend(ts)
                if alert.state == "resolved":
                    # Written now: a new alert for the same key may follow in this batch, and
                    # only one open alert per key is allowed.
                    self._resolved(alert)
                    open_.pop(key, None)
                    a, held = dirty.pop(key)
                    _save(self.store, a, held)
                else:
                    open_[key] = alert

            for o in observations:
                th = thresholds(o.patient_id)
                if o.active is True and o.key not in open_ and self._resolved_at(o.key, o.at):
                    continue  # the alert this reading belongs to was raised and resolved
                alert, ts, changed = Lifecycle.observe(open_.get(o.key), o, th)
                if alert is None:
                    continue
                if alert.state != "resolved":
                    alert, more, ch = Lifecycle.due(alert, o.at, th)
                    ts, changed = ts + more, changed or ch
                step(o.key, alert, ts, changed)
            if now is not None:
                for key, alert in list(open_.items()):
                    alert, ts, changed = Lifecycle.due(
                        alert, now, thresholds(alert.patient_id))
                    step(key, alert, ts, changed)
            for alert, ts in dirty.values():
                _save(self.store, alert, ts)
        out.sort(key=lambda t: t.at)
        return out


def _memo(load: ThresholdsFor) -> ThresholdsFor:
    """Thresholds looked up once per patient per call (a batch holds thousands of beats)."""
    seen: dict[str | None, Thresholds] = {}

    def get(patient_id: str | None) -> Thresholds:
        th = seen.get(patient_id)
        if th is None:
            th = seen[patient_id] = load(patient_id)
        return th

    return get


def acknowledge(store: Store, alert_id: int, by: str,
                at: datetime) -> AlertTransition | None:
    """Acknowledge inside the caller's transaction; None when it already was."""
    a = load_alert(store, alert_id)
    if a.state == "resolved":
        raise UsageError(f"alert {alert_id} is already resolved")
    a, ts = Lifecycle.acknowledge(a, by, at)
    if not ts:
        return None
    _save(store, a, ts)
    return ts[0]


def alert_dict(a: OpenAlert) -> dict[str, Any]:
    """An alert as JSON-ready dict (``alerts list --json``)."""
    return {
        "id": a.id, "key": a.key, "rule": a.rule, "patient": a.patient_id,
        "device": a.device_id, "severity": a.severity, "level": a.level, "state": a.state,
        "message": a.message, "value": a.value, "unit": a.unit, "raised_at": iso(a.raised_at),
        "escalated_at": iso(a.escalated_at), "acknowledged_at": iso(a.acknowledged_at),
        "acknowledged_by": a.acknowledged_by, "resolved_at": iso(a.resolved_at),
        "notify_count": a.notify_count, "details": a.details,
    }


def list_alerts(store: Store, *, patient_id: str | None = None,
                include_resolved: bool = False, limit: int = 200) -> list[OpenAlert]:
    """Alerts (open ones only unless ``include_resolved``), newest raised first."""
    return [_from_row(r) for r in alert_rows.rows(
        store, patient_id=patient_id, include_resolved=include_resolved, limit=limit)]


def alert_events(store: Store, alert_id: int) -> list[Mapping[str, Any]]:
    return [{"state": s, "at": at, **json.loads(d or "{}")}
            for s, at, d in alert_rows.events(store, alert_id)]
