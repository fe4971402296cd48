"""Alert thresholds: parsing with units, clinical defaults, per-patient overrides in settings.

A threshold is typed by a caregiver as ONE string with its unit (``"70 mg/dL"``,
``"3.9 mmol/L"``, ``"40 /min"``, ``"180 mmHg"``, ``"90 %"``, ``"20 min"``) and kept in the
``settings`` table exactly as typed, so ``thresholds show`` gives back what was entered.  The
rules see canonical numbers only: mg/dL, /min, mmHg, % and seconds.

Resolution order: ``settings(scope='patient:<id>')`` → ``settings(scope='gateway')`` → the
built-in default.  Every change bumps ``meta.settings_version``; :class:`ThresholdLoader`
re-reads when it sees a new version, so the running daemon picks changes up without a restart.

Defaults follow clinical consensus where one exists:

* glucose level 1 < 70 mg/dL, level 2 < 54 mg/dL, high > 250 mg/dL (International Consensus on
  Time in Range, Battelino et al., Diabetes Care 2019);
* blood pressure in the hypertensive-crisis range ≥ 180 systolic or ≥ 120 mmHg diastolic
  (ACC/AHA 2017);
* SpO2 < 90 % (the conventional hypoxaemia cut-off);
* an AF episode lasts ≥ 30 s (ESC 2020 definition of a documented AF episode).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from edge_gateway.errors import UsageError
from edge_gateway.reading import iso
from edge_gateway.store import Store
from edge_gateway.store import patients as patient_rows
from edge_gateway.store import settings as setting_rows
from edge_gateway.units import MGDL_PER_MMOLL, MMHG_PER_KPA

GATEWAY_SCOPE = "gateway"
#: What a caregiver types instead of a patient id for a gateway-wide setting.  '@' cannot
#: appear in a patient id, so this never shadows a patient.
GATEWAY_TARGET = "@gateway"
#: Writes the audit row; called inside the change's transaction.
Audit = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Dimension:
    """A kind of quantity: its canonical unit, accepted units (factor to canonical), range."""

    name: str
    canonical: str
    units: Mapping[str, float]


GLUCOSE = Dimension("glucose", "mg/dL", {"mg/dL": 1.0, "mmol/L": MGDL_PER_MMOLL})
RATE = Dimension("rate", "/min", {"/min": 1.0, "bpm": 1.0})
PRESSURE = Dimension("pressure", "mmHg", {"mmHg": 1.0, "kPa": MMHG_PER_KPA})
PERCENT = Dimension("percent", "%", {"%": 1.0})
DURATION = Dimension("duration", "s", {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0})


@dataclass(frozen=True, slots=True)
class Spec:
    """One threshold key: what it means, its dimension, plausible range and default."""

    key: str
    dim: Dimension
    default: str
    lo: float  # canonical, inclusive
    hi: float  # canonical, inclusive
    help: str
    gateway_only: bool = False


def _specs(*items: Spec) -> Mapping[str, Spec]:
    return MappingProxyType({s.key: s for s in items})


SPECS: Mapping[str, Spec] = _specs(
    Spec("glucose.low_l1", GLUCOSE, "70 mg/dL", 40, 120, "level 1 hypoglycaemia below this"),
    Spec("glucose.low_l2", GLUCOSE, "54 mg/dL", 30, 100, "level 2 hypoglycaemia below this"),
    Spec("glucose.high", GLUCOSE, "250 mg/dL", 140, 600, "hyperglycaemia above this"),
    Spec("glucose.predicted_low", DURATION, "20 min", 5 * 60, 120 * 60,
         "alert when the CGM trend crosses level 1 within this time"),
    Spec("glucose.hysteresis", GLUCOSE, "5 mg/dL", 0, 40,
         "a glucose alert clears only this far back inside the range"),
    Spec("hr.low_rest", RATE, "40 /min", 20, 80, "resting heart rate below this"),
    Spec("hr.high_rest", RATE, "120 /min", 80, 220, "resting heart rate above this"),
    Spec("hr.sustain", DURATION, "10 min", 0, 3600,
         "the median heart rate over this long is what is compared (our proxy for 'at rest')"),
    Spec("hr.hysteresis", RATE, "5 /min", 0, 30, "a heart-rate alert clears this far inside"),
    Spec("hr.pause", DURATION, "3 s", 1.5, 30, "an RR interval this long is a pause"),
    Spec("af.episode", DURATION, "30 s", 0, 86400, "an AF episode at least this long"),
    Spec("af.burden", PERCENT, "10 %", 0.1, 100, "AF burden in a rhythm summary at least this"),
    Spec("bp.crisis_sys", PRESSURE, "180 mmHg", 140, 260,
         "systolic above this (ACC/AHA 2017 crisis, dsp.bp)"),
    Spec("bp.crisis_dia", PRESSURE, "120 mmHg", 90, 180,
         "diastolic above this (ACC/AHA 2017 crisis, dsp.bp)"),
    Spec("bp.hysteresis", PRESSURE, "10 mmHg", 0, 40, "a BP alert clears this far below"),
    Spec("spo2.low", PERCENT, "90 %", 70, 98, "SpO2 below this"),
    Spec("spo2.sustain", DURATION, "1 min", 0, 600,
         "a continuous oximeter's median over this long is compared (spot checks at once)"),
    Spec("spo2.hysteresis", PERCENT, "2 %", 0, 10, "an SpO2 alert clears this far above"),
    Spec("battery.low", PERCENT, "20 %", 1, 80, "device battery at or below this"),
    Spec("device.silent", DURATION, "2 h", 5 * 60, 7 * 86400,
         "a device with no reading for this long"),
    Spec("outbox.unsynced", DURATION, "6 h", 10 * 60, 7 * 86400,
         "the oldest unsent outbox item older than this", gateway_only=True),
    Spec("alert.clear_after", DURATION, "15 min", 0, 6 * 3600,
         "a condition must stay clear this long before its alert resolves"),
    Spec("alert.renotify", DURATION, "30 min", 60, 24 * 3600,
         "repeat an unacknowledged alert this often"),
    Spec("alert.escalate", DURATION, "15 min", 60, 24 * 3600,
         "escalate an alert nobody acknowledged within this time"),
    Spec("alert.event_quiet", DURATION, "1 h", 60, 24 * 3600,
         "an event alert (pause, AF) resolves after this long without a new event"),
)

# A unit never starts with a digit, so "70" cannot parse as 7 in the unit "0".
_QUANTITY = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*([^\d\s.,+-]\S*)\s*$")


@dataclass(frozen=True, slots=True)
class Quantity:
    """A parsed threshold: the text as typed, and the value in the dimension's canonical unit."""

    text: str
    value: float
    unit: str  # canonical


def spec(key: str) -> Spec:
    s = SPECS.get(key)
    if s is None:
        raise UsageError(f"unknown threshold {key!r}",
                         hint=f"known: {', '.join(SPECS)}")
    return s


def parse_quantity(key: str, text: str) -> Quantity:
    """Parse ``text`` (``"3.9 mmol/L"``) for threshold ``key``; :class:`UsageError` if bad."""
    s = spec(key)
    m = _QUANTITY.match(text)
    units = ", ".join(s.dim.units)
    if m is None:
        raise UsageError(f"{key}: {text!r} is not a number followed by a unit",
                         hint=f"e.g. \"{s.default}\"; units: {units}")
    number, unit = float(m.group(1)), m.group(2)
    factor = s.dim.units.get(unit)
    if factor is None:
        # Accept case slips (MG/DL) but still say which units are valid when nothing matches.
        folded = {u.lower(): f for u, f in s.dim.units.items()}
        factor = folded.get(unit.lower())
    if factor is None:
        raise UsageError(f"{key}: unit {unit!r} is not a {s.dim.name} unit",
                         hint=f"use one of: {units}")
    value = number * factor
    if not math.isfinite(value) or not s.lo <= value <= s.hi:
        raise UsageError(
            f"{key}: {text.strip()} is outside the plausible range "
            f"{_fmt(s.lo)}..{_fmt(s.hi)} {s.dim.canonical}")
    return Quantity(text.strip(), round(value, 6), s.dim.canonical)


def _fmt(v: float) -> str:
    return f"{v:g}"


def default_values() -> dict[str, float]:
    return {k: parse_quantity(k, s.default).value for k, s in SPECS.items()}


_DEFAULTS = default_values()


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The effective thresholds of one patient, in canonical units; ``sources`` says where
    each came from (``default``, ``gateway`` or ``patient``) and ``texts`` what was typed."""

    patient_id: str | None
    values: Mapping[str, float]
    texts: Mapping[str, str]
    sources: Mapping[str, str]

    def __getitem__(self, key: str) -> float:
        return self.values[key]

    @classmethod
    def defaults(cls, patient_id: str | None = None) -> Thresholds:
        return cls(patient_id, MappingProxyType(dict(_DEFAULTS)),
                   MappingProxyType({k: s.default for k, s in SPECS.items()}),
                   MappingProxyType(dict.fromkeys(SPECS, "default")))

    @classmethod
    def resolve(
        cls, patient_id: str | None, gateway: Mapping[str, str], patient: Mapping[str, str],
    ) -> Thresholds:
        """Layer gateway-wide then patient overrides (texts as stored) over the defaults."""
        values, texts, sources = dict(_DEFAULTS), {k: s.default for k, s in SPECS.items()}, \
            dict.fromkeys(SPECS, "default")
        for source, layer in (("gateway", gateway), ("patient", patient)):
            for key, text in layer.items():
                if key not in SPECS:
                    continue  # a key from a newer version: ignore rather than stop alerting
                try:
                    q = parse_quantity(key, text)
                except UsageError:
                    continue  # only the CLI writes here, and it validates; never stop alerting
                values[key], texts[key], sources[key] = q.value, q.text, source
        return cls(patient_id, MappingProxyType(values), MappingProxyType(texts),
                   MappingProxyType(sources))


def check_consistent(values: Mapping[str, float]) -> None:
    """Cross-key rules: level 2 below level 1 below high; diastolic crisis below systolic."""
    if not values["glucose.low_l2"] < values["glucose.low_l1"] < values["glucose.high"]:
        raise UsageError(
            "glucose thresholds must satisfy low_l2 < low_l1 < high "
            f"(would be {_fmt(values['glucose.low_l2'])} < {_fmt(values['glucose.low_l1'])}"
            f" < {_fmt(values['glucose.high'])} mg/dL)")
    if not values["hr.low_rest"] < values["hr.high_rest"]:
        raise UsageError("hr.low_rest must be below hr.high_rest")
    if not values["bp.crisis_dia"] < values["bp.crisis_sys"]:
        raise UsageError("bp.crisis_dia must be below bp.crisis_sys")


# --------------------------------------------------------------------------- store access
def scope_for(patient_id: str | None) -> str:
    return GATEWAY_SCOPE if patient_id is None else f"patient:{patient_id}"


def load(store: Store, patient_id: str | None) -> Thresholds:
    """The effective thresholds of ``patient_id`` (None: the gateway-wide ones)."""
    gateway = setting_rows.threshold_texts(store, GATEWAY_SCOPE)
    patient = {} if patient_id is None else \
        setting_rows.threshold_texts(store, scope_for(patient_id))
    return Thresholds.resolve(patient_id, gateway, patient)


def write(store: Store, patient_id: str | None, key: str, text: str | None,
          *, now: datetime | None = None, audit: Audit | None = None) -> Quantity | None:
    """Set (``text``) or reset (``None``) one threshold; validated before anything changes.

    Returns the parsed quantity (None on reset).  Bumps ``meta.settings_version`` in the same
    transaction so the daemon re-reads; ``audit()`` writes the audit row in it too.
    """
    s = spec(key)
    if s.gateway_only and patient_id is not None:
        raise UsageError(f"{key} is gateway-wide", hint=f"use {GATEWAY_TARGET} as the patient")
    q = parse_quantity(key, text) if text is not None else None
    stamp = iso(now or datetime.now(UTC))
    scope = scope_for(patient_id)
    # Read, check and write in one IMMEDIATE transaction: a rejected value leaves no trace,
    # and two caregivers cannot interleave into an inconsistent pair of thresholds.  (Joins
    # the caller's transaction when there is one: a console command's outcome goes with it.)
    with store.write():
        trial = setting_rows.threshold_texts(store, scope)
        if q is None:
            trial.pop(key, None)
        else:
            trial[key] = q.text
        _validate(store, patient_id, trial)
        if q is None:
            setting_rows.delete_threshold(store, scope, key)
        else:
            setting_rows.put_threshold(store, scope, key, q.text, stamp)
        setting_rows.bump_version(store)
        if audit is not None:
            audit()
    return q


def reset_all(store: Store, patient_id: str | None, *, audit: Audit | None = None) -> int:
    """Drop every threshold override of one scope; returns how many there were."""
    with store.write():
        _validate(store, patient_id, {})
        n = setting_rows.delete_thresholds(store, scope_for(patient_id))
        setting_rows.bump_version(store)
        if audit is not None:
            audit()
    return n


def _validate(store: Store, patient_id: str | None, trial: dict[str, str]) -> None:
    """Check the effective values that ``trial`` (the new layer of one scope) would give.

    A gateway-wide change is checked against every patient's own overrides too, since their
    effective thresholds mix both layers.
    """
    if patient_id is not None:
        check_consistent(Thresholds.resolve(
            patient_id, setting_rows.threshold_texts(store, GATEWAY_SCOPE), trial).values)
        return
    check_consistent(Thresholds.resolve(None, trial, {}).values)
    for pid in patient_rows.ids(store):
        try:
            check_consistent(Thresholds.resolve(
                pid, trial, setting_rows.threshold_texts(store, scope_for(pid))).values)
        except UsageError as err:
            raise UsageError(f"patient {pid}: {err.reason}",
                             hint=f"change {pid}'s own threshold first") from err


class ThresholdLoader:
    """Per-patient thresholds for the daemon, cached until ``settings_version`` changes.

    Calling it costs one indexed look-up in ``meta`` when nothing changed, so the alert engine
    can call it for every batch and still see a caregiver's change on the next batch.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._version: str | None = None
        self._cache: dict[str | None, Thresholds] = {}

    def __call__(self, patient_id: str | None) -> Thresholds:
        version = self._store.meta(setting_rows.SETTINGS_VERSION)
        if version != self._version:
            self._cache.clear()
            self._version = version
        th = self._cache.get(patient_id)
        if th is None:
            th = self._cache[patient_id] = load(self._store, patient_id)
        return th
