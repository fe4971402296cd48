"""Units, conversion factors and the table of kinds: the one place that knows them.

A :class:`Kind` names one measured or derived quantity — a reading kind a codec emits
(``heart_rate``, ``bp_systolic``), a summary the DSP scheduler stores (``hrv``, ``bp_weekly``)
or a metric inside a summary (``sdnn``, ``mean_systolic``) — with its LOINC code (``None``: no
code we are sure of, so FHIR codes it locally and nothing is ever mislabelled), its FHIR
observation category and the units it comes in.  :data:`KINDS` is the core table; a profile
module may declare kinds of its own (``PROFILE.kinds``), and
:func:`edge_gateway.drivers.registry.kinds` merges the two.

Units are what readings *store* (``Reading.unit``): UCUM codes, except ``mmHg``, which the
gateway has always stored for millimetres of mercury (UCUM spells it ``mm[Hg]``).
:data:`UNITS` maps every stored unit to its UCUM code and the text a person reads; FHIR and any
other UCUM field go through it.  Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Generic, Literal, TypeVar

#: 1 mmol/L of glucose in mg/dL (molar mass of glucose 180.16 g/mol).
MGDL_PER_MMOLL = 18.016
#: 1 kPa in mmHg.
MMHG_PER_KPA = 7.500_62

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"

#: Units a Reading may carry (``Reading`` refuses any other).  UCUM codes, except ``mmHg``
#: (see the module docstring; :data:`UNITS` gives its UCUM code).
UCUM_UNITS = frozenset(
    {
        "mg/dL", "mmol/L", "mmHg", "kPa", "/min", "ms", "%", "kJ", "Cel", "[degF]", "kg",
        "[lb_av]", "m", "[in_i]", "kg/m2", "1", "mg/dL/min", "mmol/L/min", "s",
    }
)


@dataclass(frozen=True, slots=True)
class Unit:
    """A stored unit as UCUM spells it (``code``) and as a person reads it (``display``)."""

    code: str
    display: str


#: Stored unit -> UCUM code and display text.  Covers :data:`UCUM_UNITS` and the units of
#: summary metrics (``ms2``, from metric names such as ``lf_ms2``).
UNITS: Mapping[str, Unit] = MappingProxyType({
    "mg/dL": Unit("mg/dL", "mg/dL"),
    "mmol/L": Unit("mmol/L", "mmol/L"),
    "mmHg": Unit("mm[Hg]", "mmHg"),
    "kPa": Unit("kPa", "kPa"),
    "/min": Unit("/min", "/min"),
    "ms": Unit("ms", "ms"),
    "ms2": Unit("ms2", "ms²"),
    "s": Unit("s", "s"),
    "%": Unit("%", "%"),
    "kJ": Unit("kJ", "kJ"),
    "Cel": Unit("Cel", "°C"),
    "[degF]": Unit("[degF]", "°F"),
    "kg": Unit("kg", "kg"),
    "[lb_av]": Unit("[lb_av]", "lb"),
    "m": Unit("m", "m"),
    "[in_i]": Unit("[in_i]", "in"),
    "kg/m2": Unit("kg/m2", "kg/m²"),
    "1": Unit("1", "1"),
    "mg/dL/min": Unit("mg/dL/min", "mg/dL/min"),
    "mmol/L/min": Unit("mmol/L/min", "mmol/L/min"),
})

#: (from, to) -> factor, for the conversions the gateway makes (glucose, pressure).
FACTORS: Mapping[tuple[str, str], float] = MappingProxyType({
    ("mmol/L", "mg/dL"): MGDL_PER_MMOLL,
    ("kPa", "mmHg"): MMHG_PER_KPA,
})


def ucum(unit: str) -> Unit:
    """The UCUM code and display of a stored unit (an unknown one is taken as its own code)."""
    return UNITS.get(unit) or Unit(unit, unit)


def convert(value: float, unit: str, to: str) -> float | None:
    """``value`` in ``unit`` expressed in ``to``; None when the gateway knows no factor."""
    if unit == to:
        return value
    factor = FACTORS.get((unit, to))
    return None if factor is None else value * factor


def mmhg(value: float, unit: str) -> float:
    """A pressure in mmHg (kPa converted; mmHg, or anything else, as it is)."""
    return value * MMHG_PER_KPA if unit == "kPa" else value


Role = Literal["reading", "panel", "summary", "metric"]


@dataclass(frozen=True, slots=True)
class Kind:
    """One quantity: its LOINC code and display (``None`` when no code fits), its FHIR
    observation category (``vital-signs``, ``laboratory``; None: not a clinical observation,
    e.g. a battery level) and the units it comes in.

    ``units[0]`` is the unit FHIR carries: a value in another of ``units`` is converted to it
    when :data:`FACTORS` knows how (the LOINC glucose codes are mass/volume, so mmol/L becomes
    mg/dL), else carried as it is (°F, lb).  ``role`` says what the name is: a reading kind, the
    blood-pressure panel, a summary kind, or a metric of a summary (named without its unit
    suffix: ``sdnn`` for ``sdnn_ms``).
    """

    name: str
    loinc: str | None
    display: str
    category: str | None
    units: tuple[str, ...]
    role: Role = "reading"


def _k(name: str, loinc: str | None, display: str, category: str | None,
       units: tuple[str, ...], role: Role = "reading") -> tuple[str, Kind]:
    return name, Kind(name, loinc, display, category, units, role)


_VS = "vital-signs"
_LAB = "laboratory"
_HR = "Heart rate"
_SDNN = "R-R interval.standard deviation (Heart rate variability)"
_PRESSURE = ("mmHg", "kPa")
_GLUCOSE = ("mg/dL", "mmol/L")

#: Every built-in kind by name: the readings the codecs emit, the BP panel they make, the
#: summaries the DSP scheduler stores and the summary metrics with a code or a unit that their
#: name does not carry.  LOINC codes only where we are sure of them.
KINDS: Mapping[str, Kind] = MappingProxyType(dict([
    # readings (drivers/profiles/*.py ``to_readings``)
    _k("heart_rate", "8867-4", _HR, _VS, ("/min",)),
    _k("pulse_rate", "8867-4", _HR, _VS, ("/min",)),
    _k("rr_interval", None, "RR interval", _VS, ("ms",)),
    _k("bp_systolic", "8480-6", "Systolic blood pressure", _VS, _PRESSURE),
    _k("bp_diastolic", "8462-4", "Diastolic blood pressure", _VS, _PRESSURE),
    _k("bp_map", "8478-0", "Mean blood pressure", _VS, _PRESSURE),
    _k("spo2", "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", _VS,
       ("%",)),
    _k("perfusion_index", None, "Perfusion index", _VS, ("%",)),
    _k("glucose", "41653-7", "Glucose [Mass/volume] in Capillary blood by Glucometer", _LAB,
       _GLUCOSE),
    _k("cgm_glucose", "99504-3", "Glucose [Mass/volume] in Interstitial fluid", _LAB,
       _GLUCOSE),
    _k("temperature", "8310-5", "Body temperature", _VS, ("Cel", "[degF]")),
    _k("weight", "29463-7", "Body weight", _VS, ("kg", "[lb_av]")),
    _k("battery", None, "Battery level", None, ("%",)),
    # a systolic/diastolic pair sharing a record key (see ``bp_records``)
    _k("blood_pressure", "85354-9", "Blood pressure panel with all children optional", _VS,
       _PRESSURE, "panel"),
    # summaries (runtime/dsp_scheduler.py ``default_jobs``)
    _k("hrv", None, "Heart rate variability, short window", _VS, (), "summary"),
    _k("hrv_daily", None, "Heart rate variability, daily", _VS, (), "summary"),
    _k("rhythm", None, "Heart rhythm, short window", _VS, (), "summary"),
    _k("rhythm_daily", None, "Heart rhythm, daily", _VS, (), "summary"),
    _k("glucose_daily", None, "CGM glucose metrics, daily", _LAB, (), "summary"),
    _k("glucose_14d", None, "CGM glucose metrics, 14 days", _LAB, (), "summary"),
    _k("glucose_meter_daily", None, "Meter glucose metrics, daily", _LAB, (), "summary"),
    _k("bp_weekly", None, "Home blood pressure, weekly", _VS, (), "summary"),
    # summary metrics (dsp/hrv.py, dsp/rhythm.py, dsp/bp.py): those with a LOINC code, and
    # the pressures whose names carry no unit suffix
    _k("sdnn", "80404-7", _SDNN, _VS, ("ms",), "metric"),
    _k("mean_hr", "8867-4", _HR, _VS, ("/min",), "metric"),
    _k("mean_systolic", None, "Mean systolic blood pressure", _VS, ("mmHg",), "metric"),
    _k("mean_diastolic", None, "Mean diastolic blood pressure", _VS, ("mmHg",), "metric"),
    _k("mean_pulse_pressure", None, "Mean pulse pressure", _VS, ("mmHg",), "metric"),
    _k("morning_mean_systolic", None, "Morning mean systolic blood pressure", _VS,
       ("mmHg",), "metric"),
    _k("morning_mean_diastolic", None, "Morning mean diastolic blood pressure", _VS,
       ("mmHg",), "metric"),
    _k("evening_mean_systolic", None, "Evening mean systolic blood pressure", _VS,
       ("mmHg",), "metric"),
    _k("evening_mean_diastolic", None, "Evening mean diastolic blood pressure", _VS,
       ("mmHg",), "metric"),
]))

#: Metric-name suffix -> stored unit: summary metrics carry their unit in their name
#: (``sdnn_ms``, ``mean_mg_dl``).  Longer suffixes first (``_mg_dl_min`` before ``_mg_dl``).
METRIC_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_mg_dl_min", "mg/dL/min"), ("_mgdl", "mg/dL"), ("_mg_dl", "mg/dL"),
    ("_mmol_l", "mmol/L"), ("_mmol", "mmol/L"), ("_mmhg", "mmHg"), ("_kpa", "kPa"),
    ("_bpm", "/min"), ("_per_min", "/min"), ("_ms2", "ms2"), ("_ms", "ms"), ("_pct", "%"),
    ("_s", "s"),
)


def metric_unit(metric: str, kinds: Mapping[str, Kind] = KINDS) -> tuple[str, str]:
    """``sdnn_ms`` -> (``sdnn``, ``ms``).  A name without a unit suffix takes its kind's unit
    (``mean_systolic`` -> ``mmHg``) or, unknown, is unitless ``1``."""
    for suffix, unit in METRIC_SUFFIXES:
        if metric.endswith(suffix):
            return metric[: -len(suffix)], unit
    kind = kinds.get(metric)
    return metric, kind.units[0] if kind is not None and kind.units else "1"


# ------------------------------------------------------------------ blood-pressure records
#: Reading kind -> its part of a blood-pressure measurement.  ``systolic``, ``diastolic`` and
#: ``mean_arterial_pressure`` are older spellings the alert rules and reports still accept.
BP_PARTS: Mapping[str, str] = MappingProxyType({
    "bp_systolic": "sys", "systolic": "sys",
    "bp_diastolic": "dia", "diastolic": "dia",
    "bp_map": "map", "mean_arterial_pressure": "map",
    "pulse_rate": "pulse",
})
#: BP part -> the kind whose code a FHIR panel component carries.
BP_PART_KINDS: Mapping[str, str] = MappingProxyType(
    {"sys": "bp_systolic", "dia": "bp_diastolic", "map": "bp_map", "pulse": "pulse_rate"})

R = TypeVar("R")


@dataclass(slots=True)
class BpRecord(Generic[R]):
    """The readings of one blood-pressure measurement: ``first`` (in input order) and the
    last row seen of each part (``sys``, ``dia``, ``map``, ``pulse``)."""

    first: R
    parts: dict[str, R] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Both systolic and diastolic are there (what a BP reading needs to mean anything)."""
        return "sys" in self.parts and "dia" in self.parts


def bp_records(rows: Iterable[R], key: Callable[[R], Hashable],
               kind: Callable[[R], str]) -> dict[Hashable, BpRecord[R]]:
    """Group blood-pressure readings into measurements: the readings of one measurement share
    a record key (``key`` says what the caller groups by, e.g. device and record key).

    Rows of other kinds are skipped; records keep the order of their first row.  The one
    place the systolic/diastolic pairing is written (export, report, DSP and FHIR use it).
    """
    out: dict[Hashable, BpRecord[R]] = {}
    for row in rows:
        part = BP_PARTS.get(kind(row))
        if part is None:
            continue
        k = key(row)
        rec = out.get(k)
        if rec is None:
            rec = out[k] = BpRecord(row)
        rec.parts[part] = row
    return out
