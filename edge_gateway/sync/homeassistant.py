"""Home Assistant MQTT discovery: the patients' latest values on the home's own broker.

One HA device per **patient** (``<name>``, via the hub), plus the hub as a device of its own
(a connectivity sensor on the gateway's status topic).  Per patient, one sensor per measurement
kind seen (heart rate, SpO2, CGM and meter glucose, blood pressure, temperature, weight), the
glucose trend arrow, HRV and AF-burden summaries, one binary sensor per alert rule ever raised
plus one for "any alert open", and each of the patient's devices' battery level.

Per-entity discovery (HA 2024.3 has no device-based discovery): each entity's config is
retained at ``<discovery_prefix>/<component>/<gateway>/<patient>_<key>/config``; its state is
retained at ``<prefix>/<site>/<gateway>/ha/<patient>/<key>`` as JSON (``value`` plus the
reading's own ``time``).  Every entity's availability is the gateway's status topic
(``{{ value_json.status }}``), so all of them go unavailable when the hub stops, and each has
an ``expire_after`` sized to how often its kind is measured (a cuff used twice a day does not
go unavailable between readings; a heart-rate strap that stops does, within minutes).

States are the coalesced latest values, kept in memory and published retained: no outbox row
and no disk write per reading.  New rows are followed by id from the database (a range scan on
the primary key every couple of seconds); a backfill of 14 days yields only its newest value
per kind, and only when it is newer than the state already shown.  A patient or device that
goes away (removed, or left out by ``[homeassistant] patients``) gets empty retained configs
and states, which removes its entities from HA; the configs published are remembered in
``meta`` (written only when that set changes) so this works across restarts too.

``entities`` and ``config_payload`` are pure; ``HomeAssistantBridge`` does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge_gateway.backoff import Backoff
from edge_gateway.config import Config, MqttSection, read_secret, resolve_mqtt
from edge_gateway.errors import SyncError
from edge_gateway.store import integrations as q
from edge_gateway.store.db import Store
from edge_gateway.sync import payload
from edge_gateway.sync.mqtt import Link, Retained
from edge_gateway.sync.nightscout import direction
from edge_gateway.units import convert

log = logging.getLogger(__name__)

MANUFACTURER = "edge-gateway"
_H = 3600
#: A trend arrow per Nightscout direction (the state of the glucose-trend sensor).
ARROWS = {"DoubleDown": "⇊", "SingleDown": "↓", "FortyFiveDown": "↘", "Flat": "→",
          "FortyFiveUp": "↗", "SingleUp": "↑", "DoubleUp": "⇈", "NOT COMPUTABLE": "?"}


@dataclass(frozen=True, slots=True)
class Measure:
    """How one reading kind (or summary metric) appears in HA."""

    key: str  # object id suffix and state topic level
    name: str
    unit: str | None  # HA's own unit string
    expire_after_s: int
    device_class: str | None = None  # only classes HA 2024.3 knows
    icon: str | None = None


#: Reading kinds -> sensors.  Units are HA's strings; the stored UCUM unit is converted where
#: it differs (kPa -> mmHg, °F -> °C, lb -> kg, mmol/L <-> mg/dL for glucose).
#: expire_after: streams (strap, oximeter) a few minutes; the CGM 20 min (a reading every 5);
#: spot measurements (meter, cuff, thermometer, scale) 36 h, so twice a day never expires.
READING_MEASURES: Mapping[str, Measure] = {
    "heart_rate": Measure("heart_rate", "Heart rate", "bpm", 300, icon="mdi:heart-pulse"),
    "pulse_rate": Measure("pulse_rate", "Pulse rate", "bpm", 36 * _H, icon="mdi:heart-pulse"),
    "spo2": Measure("spo2", "SpO2", "%", 600, icon="mdi:water-percent"),
    "perfusion_index": Measure("perfusion_index", "Perfusion index", "%", 600),
    "cgm_glucose": Measure("cgm_glucose", "CGM glucose", "mg/dL", 20 * 60, icon="mdi:diabetes"),
    "glucose": Measure("meter_glucose", "Meter glucose", "mg/dL", 36 * _H, icon="mdi:diabetes"),
    "bp_systolic": Measure("bp_systolic", "Systolic pressure", "mmHg", 36 * _H,
                           icon="mdi:heart"),
    "bp_diastolic": Measure("bp_diastolic", "Diastolic pressure", "mmHg", 36 * _H,
                            icon="mdi:heart"),
    "temperature": Measure("temperature", "Body temperature", "°C", 36 * _H, "temperature"),
    "weight": Measure("weight", "Weight", "kg", 7 * 24 * _H, "weight"),
}
_UNIT_FROM = {"mmHg": "mmHg", "bpm": "/min", "%": "%", "°C": "Cel", "kg": "kg",
              "mg/dL": "mg/dL", "mmol/L": "mmol/L", "ms": "ms"}
_EXTRA_FACTORS = {("[degF]", "Cel"): lambda v: (v - 32.0) * 5.0 / 9.0,
                  ("[lb_av]", "kg"): lambda v: v * 0.45359237,
                  ("mg/dL", "mmol/L"): lambda v: v / 18.016}

#: Summary kind -> (metric, Measure).
SUMMARY_MEASURES: Mapping[str, Sequence[tuple[str, Measure]]] = {
    "hrv": (("sdnn_ms", Measure("hrv_sdnn", "HRV SDNN", "ms", 2 * _H, icon="mdi:chart-bell-curve")),
            ("rmssd_ms", Measure("hrv_rmssd", "HRV RMSSD", "ms", 2 * _H,
                                 icon="mdi:chart-bell-curve"))),
    "hrv_daily": (("sdnn_ms", Measure("hrv_sdnn_day", "HRV SDNN (day)", "ms", 48 * _H,
                                      icon="mdi:chart-bell-curve")),),
    "rhythm": (("af_burden_pct", Measure("af_burden", "AF burden", "%", 2 * _H,
                                         icon="mdi:heart-flash")),),
    "rhythm_daily": (("af_burden_pct", Measure("af_burden_day", "AF burden (day)", "%",
                                               48 * _H, icon="mdi:heart-flash")),),
}
TREND = Measure("glucose_trend", "Glucose trend", None, 20 * 60, icon="mdi:trending-up")
BATTERY_EXPIRE_S = 48 * _H


@dataclass(frozen=True, slots=True)
class Entity:
    """One HA entity: where its config and state go, and the config itself."""

    component: str  # "sensor" | "binary_sensor"
    object_id: str
    config: dict[str, Any]

    def config_topic(self, discovery_prefix: str, node: str) -> str:
        return f"{discovery_prefix}/{self.component}/{node}/{self.object_id}/config"


@dataclass(frozen=True, slots=True)
class Names:
    """Topics and ids shared by every entity of one gateway."""

    gateway: str
    site: str
    prefix: str
    discovery_prefix: str
    glucose_unit: str = "mg/dL"

    @property
    def node(self) -> str:
        return _slug(self.gateway)

    @property
    def hub_id(self) -> str:
        return f"edge_gateway_{_slug(self.gateway)}"

    @property
    def status_topic(self) -> str:
        return payload.status_topic(self.prefix, self.site, self.gateway)

    def state_topic(self, patient: str, key: str) -> str:
        return "/".join((self.prefix, payload.topic_segment(self.site),
                         payload.topic_segment(self.gateway), "ha",
                         payload.topic_segment(patient), key))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower())


# ---------------------------------------------------------------------- pure: configs
def hub_entity(n: Names, version: str) -> Entity:
    return Entity("binary_sensor", "hub_status", {
        "name": "Status", "unique_id": f"{n.hub_id}_status", "object_id": f"{n.node}_status",
        "state_topic": n.status_topic, "value_template": "{{ value_json.status }}",
        "payload_on": "online", "payload_off": "offline", "device_class": "connectivity",
        "device": {"identifiers": [n.hub_id], "name": f"edge-gateway {n.gateway}",
                   "model": "edge-gateway hub", "manufacturer": MANUFACTURER,
                   "sw_version": version},
    })


def _device(n: Names, patient: str, name: str) -> dict[str, Any]:
    return {"identifiers": [f"{n.hub_id}_{_slug(patient)}"], "name": name,
            "model": "edge-gateway patient", "manufacturer": MANUFACTURER,
            "via_device": n.hub_id}


def sensor(n: Names, patient: str, patient_name: str, m: Measure, *,
           numeric: bool = True) -> Entity:
    uid = f"{n.hub_id}_{_slug(patient)}_{m.key}"
    cfg: dict[str, Any] = {
        "name": m.name, "unique_id": uid, "object_id": f"{_slug(patient)}_{m.key}",
        "state_topic": n.state_topic(patient, m.key), "value_template": "{{ value_json.value }}",
        "json_attributes_topic": n.state_topic(patient, m.key),
        "availability_topic": n.status_topic,
        "availability_template": "{{ value_json.status }}",
        "expire_after": m.expire_after_s, "device": _device(n, patient, patient_name),
    }
    unit = n.glucose_unit if m.unit == "mg/dL" else m.unit
    if numeric:
        cfg["state_class"] = "measurement"
        cfg["unit_of_measurement"] = unit
        if unit == "mmol/L":
            cfg["suggested_display_precision"] = 1
    if m.device_class:
        cfg["device_class"] = m.device_class
    if m.icon:
        cfg["icon"] = m.icon
    return Entity("sensor", f"{_slug(patient)}_{m.key}", cfg)


def battery(n: Names, patient: str, patient_name: str, device_id: str,
            device_name: str) -> Entity:
    m = Measure(f"battery_{_slug(device_id)}", f"{device_name} battery", "%",
                BATTERY_EXPIRE_S, "battery")
    return sensor(n, patient, patient_name, m)


def alert_sensor(n: Names, patient: str, patient_name: str, rule: str | None) -> Entity:
    key = "alert" if rule is None else f"alert_{_slug(rule)}"
    name = "Alert" if rule is None else f"Alert {rule.replace('_', ' ')}"
    cfg: dict[str, Any] = {
        "name": name, "unique_id": f"{n.hub_id}_{_slug(patient)}_{key}",
        "object_id": f"{_slug(patient)}_{key}", "state_topic": n.state_topic(patient, key),
        "value_template": "{{ value_json.value }}", "payload_on": "ON", "payload_off": "OFF",
        "json_attributes_topic": n.state_topic(patient, key),
        "availability_topic": n.status_topic, "availability_template": "{{ value_json.status }}",
        "device_class": "problem", "device": _device(n, patient, patient_name),
    }
    return Entity("binary_sensor", f"{_slug(patient)}_{key}", cfg)


def config_payload(e: Entity) -> bytes:
    return json.dumps(e.config, separators=(",", ":"), ensure_ascii=False).encode()


def ha_value(value: float, stored_unit: str, ha_unit: str | None) -> float:
    """A stored value in HA's unit (rounded for display)."""
    if ha_unit is None:
        return value
    target = _UNIT_FROM.get(ha_unit, ha_unit)
    out = convert(value, stored_unit, target)
    if out is None:
        fn = _EXTRA_FACTORS.get((stored_unit, target))
        out = fn(value) if fn else value
    return round(out, 2 if ha_unit == "mmol/L" else 1)


# ---------------------------------------------------------------------- I/O: the bridge
@dataclass
class _State:
    time: str  # the value's own time (ISO text): only a newer one replaces it
    body: dict[str, Any]
    dirty: bool = True


def broker_settings(cfg: Config) -> MqttSection | None:
    """``[homeassistant] broker`` (default: the ``[mqtt]`` broker) as a link connects."""
    ha = cfg.homeassistant
    base = resolve_mqtt(cfg)
    if ha.broker:
        base = dataclasses.replace(
            base or MqttSection(), username=ha.username,
            password=read_secret(ha.password_file) if ha.password_file else "",
            password_file="", ca_file="", cert_file="", key_file="").at(ha.broker)
    if base is None:
        return None
    client = base.client_id or f"edge-gateway-{cfg.gateway_id}"
    # A session of its own: no expiry, since states are republished on every connect.
    return dataclasses.replace(base, client_id=f"{client}-ha", session_expiry_s=0)


class HomeAssistantBridge:
    """Follows the database and keeps HA's retained configs and states up to date."""

    META_KEY = "homeassistant.configs"
    POLL_S = 2.0

    def __init__(self, store: Store, cfg: Config, mqtt: MqttSection, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 rng: random.Random | None = None, poll_s: float | None = None) -> None:
        ha = cfg.homeassistant
        self.store = store
        self.mqtt = mqtt
        self.names = Names(cfg.gateway_id, cfg.gateway.site, cfg.mqtt.topic_prefix,
                           ha.discovery_prefix, ha.glucose_unit)
        self.only = set(ha.patients)
        self.clock = clock
        self.poll_s = poll_s or self.POLL_S
        self.backoff = Backoff(1.0, 60.0, rng=rng or random.Random())
        self.states: dict[tuple[str, str], _State] = {}
        self.entities: dict[str, Entity] = {}  # config topic -> entity
        #: Config topics HA holds retained (kept in meta across restarts, for removals).
        self._published: set[str] = set(json.loads(store.meta(self.META_KEY) or "[]"))
        #: Config topics announced on the current connection.
        self._announced: set[str] = set()
        #: Config topic -> its state topic (None: unknown or shared) of entities to remove.
        self._removed: dict[str, str | None] = {}
        self._last_reading = 0
        self._last_summary = 0
        self._started = False
        self.connected = False

    # ------------------------------------------------------------------ collect (pure-ish)
    def _patients(self) -> dict[str, str]:
        return {pid: name for pid, name in q.patients(self.store)
                if not self.only or pid in self.only}

    def _set(self, patient: str, key: str, time: str, body: dict[str, Any]) -> None:
        old = self.states.get((patient, key))
        if old is not None and old.time > time:
            return  # a backfilled older value never replaces what HA shows
        if old is not None and old.body == body:
            return
        self.states[(patient, key)] = _State(time, body)

    def _reading(self, names: Mapping[str, str], r: q.ReadingRow) -> str | None:
        m = READING_MEASURES.get(r.kind)
        if m is None or r.patient_id is None or r.patient_id not in names or r.value is None:
            return None
        unit = self.names.glucose_unit if m.unit == "mg/dL" else m.unit
        body: dict[str, Any] = {"value": ha_value(r.value, r.unit, unit), "time": r.time,
                                "device": r.device_id}
        self._set(r.patient_id, m.key, r.time, body)
        if r.kind == "cgm_glucose":
            rate = r.extra.get("trend_mg_dl_per_min")
            rate_f = float(rate) if isinstance(rate, int | float) else None
            d = direction(rate_f)
            self._set(r.patient_id, TREND.key, r.time, {
                "value": ARROWS[d], "direction": d, "rate_mg_dl_per_min": rate_f,
                "time": r.time})
        return m.key

    def _summary(self, names: Mapping[str, str], s: q.SummaryRow) -> None:
        if s.patient_id is None or s.patient_id not in names:
            return
        for metric, m in SUMMARY_MEASURES.get(s.kind, ()):
            v = s.metrics.get(metric)
            if isinstance(v, int | float):
                self._set(s.patient_id, m.key, s.window_end,
                          {"value": round(float(v), 1), "time": s.window_end})

    def collect(self) -> None:
        """Read what is new since the last call into the in-memory states and entities."""
        names = self._patients()
        kinds = list(READING_MEASURES)
        if not self._started:
            # Start from the newest value of each kind: history is never replayed into HA.
            self._last_reading = q.max_reading_id(self.store)
            self._last_summary = q.max_summary_id(self.store)
            for pid in names:
                for r in q.latest_readings(self.store, pid, kinds):
                    self._reading(names, r)
                for s in q.latest_summaries(self.store, pid, list(SUMMARY_MEASURES)):
                    self._summary(names, s)
            self._started = True
        while True:
            rows = q.readings_after(self.store, self._last_reading, kinds, limit=5000)
            for r in rows:
                self._reading(names, r)
            if rows:
                self._last_reading = rows[-1].id
            if len(rows) < 5000:
                self._last_reading = max(self._last_reading, q.max_reading_id(self.store))
                break
        for s in q.summaries_after(self.store, self._last_summary, list(SUMMARY_MEASURES)):
            self._summary(names, s)
            self._last_summary = s.id
        self._batteries_and_alerts(names)
        self._entities(names)

    def _batteries_and_alerts(self, names: Mapping[str, str]) -> None:
        now = self.clock().isoformat()
        for d in q.devices(self.store):
            if d.battery_pct is None or not d.enabled:
                continue
            for pid in d.patient_ids:
                if pid in names:
                    self._set(pid, f"battery_{_slug(d.id)}", now,
                              {"value": round(d.battery_pct), "device": d.id})
        rules = q.alert_rules(self.store)
        for pid in names:
            mine = [(rule, n_open) for p, rule, n_open in rules if p == pid]
            for rule, n_open in mine:
                self._set(pid, f"alert_{_slug(rule)}", now,
                          {"value": "ON" if n_open else "OFF", "open": n_open})
            total = sum(n for _r, n in mine)
            self._set(pid, "alert", now, {"value": "ON" if total else "OFF", "open": total})

    def _entities(self, names: Mapping[str, str]) -> None:
        n = self.names
        from edge_gateway import __version__

        wanted: list[Entity] = [hub_entity(n, __version__)]
        by_key = {m.key: m for m in READING_MEASURES.values()}
        by_key.update({m.key: m for ms in SUMMARY_MEASURES.values() for _x, m in ms})
        devices = {d.id: d for d in q.devices(self.store)}
        for (pid, key) in sorted(self.states):
            if pid not in names:
                continue
            pname = names[pid]
            if key in by_key:
                wanted.append(sensor(n, pid, pname, by_key[key]))
            elif key == TREND.key:
                wanted.append(sensor(n, pid, pname, TREND, numeric=False))
            elif key == "alert":
                wanted.append(alert_sensor(n, pid, pname, None))
            elif key.startswith("alert_"):
                wanted.append(alert_sensor(n, pid, pname, key[len("alert_"):]))
            elif key.startswith("battery_"):
                dev = next((d for d in devices.values() if f"battery_{_slug(d.id)}" == key),
                           None)
                if dev is not None and pid in dev.patient_ids and dev.enabled:
                    wanted.append(battery(n, pid, pname, dev.id, dev.name))
        new = {e.config_topic(n.discovery_prefix, n.node): e for e in wanted}
        # States of entities that went away (a patient removed or filtered out, a device
        # removed) are dropped from memory; their retained topics are cleared on publish.
        live_states = {e.config["state_topic"] for e in new.values()}
        for gone in [k for k in self.states
                     if k[0] not in names or n.state_topic(*k) not in live_states]:
            del self.states[gone]
        for topic in (self._published | set(self.entities)) - set(new):
            old = self.entities.get(topic)
            state = old.config["state_topic"] if old is not None else None
            self._removed[topic] = None if state == n.status_topic else state
        for topic in new:
            self._removed.pop(topic, None)
        self.entities = new

    # ------------------------------------------------------------------ publish
    async def publish(self, link: Link) -> int:
        """Publish changed configs and states (retained QoS 1); returns how many."""
        n = self.names
        futs: list[asyncio.Future[None]] = []
        # An empty retained config removes the entity from HA; an empty retained state clears
        # the value (after a restart only the config topic is known: the config suffices).
        for topic, state in sorted(self._removed.items()):
            futs.append(link.publish(topic, b"", retain=True))
            if state:
                futs.append(link.publish(state, b"", retain=True))
        for topic, e in self.entities.items():
            if topic not in self._announced:
                futs.append(link.publish(topic, config_payload(e), retain=True))
        # Configs first: HA must know an entity before its first state arrives.
        if futs:
            await asyncio.gather(*futs)
        configs = len(futs)
        futs = []
        for (pid, key), st in self.states.items():
            if st.dirty:
                body = json.dumps(st.body, separators=(",", ":"), ensure_ascii=False)
                futs.append(link.publish(n.state_topic(pid, key), body.encode(), retain=True))
        if futs:
            await asyncio.gather(*futs)
        for st in self.states.values():
            st.dirty = False
        self._announced = set(self.entities)
        self._removed = {}
        if self._announced != self._published:  # a disk write only when the set changes
            self._published = set(self._announced)
            self.store.set_meta(self.META_KEY, json.dumps(sorted(self._published)))
        return configs + len(futs)

    def _mark_all_dirty(self) -> None:
        """A new connection: announce every config and state again (HA may have restarted
        or the broker lost its retained messages)."""
        for st in self.states.values():
            st.dirty = True
        self._announced = set()

    def _retained(self, status: str) -> Retained:
        n = self.names
        return Retained(n.status_topic, payload.status_payload(
            status, n.gateway, n.site, self.clock() if status == "online" else None))

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, publish, follow; reconnect with backoff; until ``stop``."""
        log.info("homeassistant: discovery to %s under %s/", self.mqtt.url,
                 self.names.discovery_prefix)
        while not stop.is_set():
            try:
                async with Link.connect(self.mqtt, will=self._retained("offline"),
                                        online=self._retained("online"),
                                        offline=self._retained("offline")) as link:
                    self.connected = True
                    self.backoff.reset()
                    self._mark_all_dirty()
                    async with asyncio.TaskGroup() as tg:
                        keep = tg.create_task(link.run_keepalive(), name="ha-keepalive")
                        try:
                            await self._follow(link, stop)
                        finally:
                            keep.cancel()
            except SyncError as err:
                log.warning("homeassistant: %s", err)
            except BaseExceptionGroup as group:
                log.warning("homeassistant: %s", group.exceptions[0])
            finally:
                self.connected = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.backoff.next())

    async def _follow(self, link: Link, stop: asyncio.Event) -> None:
        while not stop.is_set() and not link.closed.is_set():
            self.collect()
            await self.publish(link)
            waits = [asyncio.ensure_future(stop.wait()),
                     asyncio.ensure_future(link.closed.wait())]
            try:
                await asyncio.wait(waits, timeout=self.poll_s,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        if link.closed.is_set():
            raise SyncError(f"link to {self.mqtt.url} lost: {link.close_reason}")
