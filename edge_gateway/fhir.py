"""The one FHIR R4 builder: Observations for readings, summary metrics and blood-pressure
panels, Flags for alerts, Bundle entries.  Used by the MQTT ``fhir`` format
(:mod:`edge_gateway.sync.payload`) and the caregiver's export (:mod:`edge_gateway.care.export`),
so a kind gets the same LOINC code, category and UCUM unit wherever it goes.

Every look-up goes through a ``kinds`` table (:data:`edge_gateway.units.KINDS`, or the
registry's merged one, :func:`edge_gateway.drivers.registry.kinds`, which adds the kinds a
profile module declares).  A kind with a LOINC code is coded in LOINC; anything else in the
gateway's own code system (``urn:edge-gateway:code``, ``reading/<kind>``, ``metric/<name>``,
``summary/<kind>``), so nothing is ever mislabelled.  Quantities carry UCUM codes
(``mm[Hg]``, not the ``mmHg`` readings store) and a display unit a person reads (``°F``).

Pure: no I/O, no clock.  Times come in as the text the resource should carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_gateway.units import (
    BP_PART_KINDS,
    LOINC_SYSTEM,
    UCUM_SYSTEM,
    Kind,
    convert,
    metric_unit,
    mmhg,
    ucum,
)

LOCAL_SYSTEM = "urn:edge-gateway:code"
#: Identifier system of a sync message item (``<gateway>:<db id>:<seq>``).
MSG_ID_SYSTEM = "urn:edge-gateway:msg"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
BP_PANEL = "blood_pressure"

Json = dict[str, Any]


# ------------------------------------------------------------------------------ pieces
def fit(kind: Kind | None, value: float, unit: str) -> tuple[float, str] | None:
    """``value`` in the unit the kind's code takes: converted to ``kind.units[0]`` when the
    gateway knows a factor (mmol/L -> mg/dL: the LOINC glucose codes are mass/volume; kPa ->
    mmHg), as it is when ``unit`` is another of the kind's units (°F, lb).  None: the kind is
    unknown or does not come in ``unit``."""
    if kind is None or not kind.units:
        return None
    v = convert(value, unit, kind.units[0])
    if v is not None:
        return v, kind.units[0]
    return (value, unit) if unit in kind.units else None


def concept(kind: Kind | None, name: str, local_prefix: str) -> Json:
    """A CodeableConcept: LOINC when the kind has a code, else ``<local_prefix><name>``."""
    if kind is not None and kind.loinc is not None:
        return {"coding": [{"system": LOINC_SYSTEM, "code": kind.loinc,
                            "display": kind.display}], "text": kind.display}
    return {"coding": [{"system": LOCAL_SYSTEM, "code": f"{local_prefix}{name}"}],
            "text": kind.display if kind is not None else name}


def category(kind: Kind | None) -> Json:
    """``{"category": [...]}`` for the kind's observation category; empty when it has none."""
    if kind is None or kind.category is None:
        return {}
    return {"category": [{"coding": [{"system": OBS_CATEGORY, "code": kind.category}]}]}


def quantity(value: float, unit: str, digits: int | None = None) -> Json:
    """A Quantity in UCUM from a stored unit (``mmHg`` -> code ``mm[Hg]``, unit ``mmHg``)."""
    u = ucum(unit)
    return {"value": value if digits is None else round(value, digits), "unit": u.display,
            "system": UCUM_SYSTEM, "code": u.code}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def value_of(value: Any, unit: str, digits: int | None = None) -> Json:
    """``valueQuantity`` for a number, ``dataAbsentReason`` for None, else ``valueString``."""
    if value is None:
        return {"dataAbsentReason": {"coding": [{"system": DATA_ABSENT, "code": "unknown"}]}}
    if not _number(value):
        return {"valueString": str(value)}
    return {"valueQuantity": quantity(value, unit, digits)}


def coded(kinds: Mapping[str, Kind], name: str, value: Any, unit: str, local_prefix: str,
          digits: int | None = None) -> tuple[Json, Json, bool]:
    """(code, value[x], coded in the kind's terms) for one quantity.

    A number the kind takes (after :func:`fit`) carries the kind's code; one it does not take
    (a unit the code does not fit) is coded locally with its own unit, so a code never claims
    a unit it cannot have.
    """
    kind = kinds.get(name)
    if not _number(value):
        return concept(kind, name, local_prefix), value_of(value, unit), kind is not None
    hit = fit(kind, value, unit)
    if hit is None:
        return concept(None, name, local_prefix), value_of(value, unit, digits), False
    return concept(kind, name, local_prefix), value_of(hit[0], hit[1], digits), True


def _head(resource: str, rid: str | None, msg_id: str | None) -> Json:
    out: Json = {"resourceType": resource}
    if rid is not None:
        out["id"] = rid
    if msg_id is not None:
        out["identifier"] = [{"system": MSG_ID_SYSTEM, "value": msg_id}]
    return out


def _observation(kind: Kind | None, code: Json, *, patient: str | None, device: str | None,
                 rid: str | None, msg_id: str | None) -> Json:
    o = _head("Observation", rid, msg_id)
    o["status"] = "final"
    o.update(category(kind))
    o["code"] = code
    if patient:
        o["subject"] = {"reference": f"Patient/{patient}"}
    if device:
        o["device"] = {"display": str(device)}
    return o


# ------------------------------------------------------------------------------ resources
def reading_observation(kinds: Mapping[str, Kind], kind: str, value: Any, unit: str, *,
                        when: str | None, patient: str | None = None,
                        device: str | None = None, rid: str | None = None,
                        msg_id: str | None = None, strict: bool = False,
                        digits: int | None = None) -> Json | None:
    """An Observation for one reading.

    ``strict`` (the export): None for a reading the kinds table cannot code — an unknown kind,
    a kind without a LOINC code, a unit its code does not take, no value.  Otherwise (sync)
    every reading gives a resource, coded locally where LOINC does not fit.
    """
    k = kinds.get(kind)
    code, val, ok = coded(kinds, kind, value, unit, "reading/", digits)
    if strict and (not ok or k is None or k.loinc is None or not _number(value)):
        return None
    o = _observation(k, code, patient=patient, device=device, rid=rid, msg_id=msg_id)
    o["effectiveDateTime"] = when
    o.update(val)
    return o


def bp_panel(kinds: Mapping[str, Kind], parts: Mapping[str, tuple[float, str]], *,
             when: str | None, patient: str | None = None, device: str | None = None,
             rid: str | None = None, msg_id: str | None = None,
             digits: int | None = None) -> Json:
    """The blood-pressure panel (LOINC 85354-9) of one measurement: a component per part
    (``sys``, ``dia``, ``map``: value and stored unit), in mmHg.  Group readings into parts
    with :func:`edge_gateway.units.bp_records`."""
    panel = kinds.get(BP_PANEL)
    o = _observation(panel, concept(panel, BP_PANEL, "reading/"), patient=patient,
                     device=device, rid=rid, msg_id=msg_id)
    o["effectiveDateTime"] = when
    components = []
    for part in ("sys", "dia", "map"):
        if part in parts:
            value, unit = parts[part]
            name = BP_PART_KINDS[part]
            components.append({"code": concept(kinds.get(name), name, "reading/"),
                               "valueQuantity": quantity(mmhg(value, unit), "mmHg", digits)})
    o["component"] = components
    return o


def metric_observation(kinds: Mapping[str, Kind], metric: str, value: Any, *,
                       start: str | None, end: str | None, patient: str | None = None,
                       device: str | None = None, rid: str | None = None,
                       msg_id: str | None = None, digits: int | None = None) -> Json | None:
    """An Observation of one summary metric over its window (``sdnn_ms`` -> SDNN 80404-7);
    None unless the metric has a LOINC code and a number in a unit that code takes."""
    name, unit = metric_unit(metric, kinds)
    k = kinds.get(name)
    if k is None or k.loinc is None or not _number(value):
        return None
    code, val, ok = coded(kinds, name, value, unit, "metric/", digits)
    if not ok:
        return None
    o = _observation(k, code, patient=patient, device=device, rid=rid, msg_id=msg_id)
    o["effectivePeriod"] = {"start": start, "end": end}
    o.update(val)
    return o


def summary_observation(kinds: Mapping[str, Kind], kind: str, metrics: Mapping[str, Any], *,
                        start: str | None, end: str | None, issued: str | None = None,
                        algorithm: str | None = None, coverage: float | None = None,
                        patient: str | None = None, device: str | None = None,
                        rid: str | None = None, msg_id: str | None = None) -> Json:
    """A whole summary: its kind as the code, one component per metric (each coded and
    united as :func:`metric_observation` would), method and coverage."""
    k = kinds.get(kind)
    o = _observation(k, concept(k, kind, "summary/"), patient=patient, device=device,
                     rid=rid, msg_id=msg_id)
    o["effectivePeriod"] = {"start": start, "end": end}
    o["issued"] = issued
    components = []
    for metric, value in metrics.items():
        name, unit = metric_unit(metric, kinds)
        code, val, _ = coded(kinds, name, value, unit, "metric/")
        components.append({"code": code, **val})
    o["component"] = components
    o["method"] = {"text": str(algorithm)}
    o["extension"] = [{"url": "urn:edge-gateway:coverage", "valueDecimal": coverage}]
    return o


def flag(*, rule: str | None, message: str | None, state: str | None, severity: str | None,
         start: str | None, end: str | None = None, patient: str | None = None,
         rid: str | None = None, msg_id: str | None = None) -> Json:
    """A Flag for an alert: ``active``, or ``inactive`` once resolved; the rule as a local
    code, the message as its text, severity and state as extensions."""
    f = _head("Flag", rid, msg_id)
    f["status"] = "inactive" if state == "resolved" else "active"
    f["category"] = [{"coding": [{"system": FLAG_CATEGORY, "code": "clinical"}]}]
    f["code"] = {"coding": [{"system": LOCAL_SYSTEM, "code": f"alert/{rule}"}],
                 "text": message}
    if patient:
        f["subject"] = {"reference": f"Patient/{patient}"}
    f["period"] = {"start": start} if end is None else {"start": start, "end": end}
    f["extension"] = [{"url": "urn:edge-gateway:severity", "valueCode": str(severity)},
                      {"url": "urn:edge-gateway:state", "valueCode": str(state)}]
    return f


# ------------------------------------------------------------------------------ bundles
def entry(resource: Mapping[str, Any]) -> Json:
    """A Bundle entry for a resource with an ``id`` (a UUID): ``fullUrl`` ``urn:uuid:<id>``."""
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}


def bundle(rid: str, resources: list[Json], tags: list[Json] | None = None) -> Json:
    """A ``collection`` Bundle (FHIR JSON forbids empty arrays: no ``entry`` when empty)."""
    out: Json = {"resourceType": "Bundle", "type": "collection", "id": rid}
    if resources:
        out["entry"] = [entry(r) for r in resources]
    if tags:
        out["meta"] = {"tag": tags}
    return out
