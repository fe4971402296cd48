"""Export a patient's readings, summaries and alerts: CSV, JSON or a FHIR R4 Bundle.

Streaming: rows come from three SQLite cursors merged by time (``heapq.merge``) and are written
as they come, so a year of 1 Hz heart rate needs a few kilobytes of memory, not gigabytes.

Dates: ``since`` and ``until`` are in the site's time zone (a zoneinfo name); a bare date means
its local midnight; ``since`` is inclusive and ``until`` exclusive, so
``--since 2026-11-01 --until 2026-12-01`` is exactly November, whatever the DST changes.

CSV header (one row per reading, summary or alert, in time order)::

    record,time_utc,time_local,patient,device,kind,value,unit,special,details

* ``record``: ``reading`` | ``summary`` | ``alert``
* ``time_utc``: ISO 8601 UTC (``Z``); ``time_local``: the same instant in the site time zone
  with its offset.  Readings: the measurement time; summaries: the window start; alerts: when
  raised.
* ``kind``: the reading kind (``cgm_glucose``, ``heart_rate``...), the summary kind, or the
  alert rule.
* ``value``/``unit``: the number and its UCUM unit (empty for summaries).
* ``special``: NaN/NRes/±INF when the device sent no number; for alerts, the final state.
* ``details``: JSON: readings ``{"received_at", "device_time", "record_key"}``; summaries
  ``{"window_end", "coverage", "algorithm", "metrics"}``; alerts ``{"severity", "message",
  "resolved_at", "acknowledged_by"}``.

FHIR: a ``Bundle`` of type ``collection``; readings with a LOINC code become ``Observation``s
(a systolic/diastolic pair becomes one BP panel 85354-9 with two components), values in UCUM;
HRV summaries become SDNN Observations (80404-7); alerts become ``Flag``s.  Kinds without a
LOINC code (RR intervals, battery) are left out of the FHIR export and counted in the bundle's
``meta.tag``.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge_gateway.alerts.rules import DIASTOLIC_KINDS, SYSTOLIC_KINDS
from edge_gateway.alerts.thresholds import MGDL_PER_MMOLL, MMHG_PER_KPA
from edge_gateway.errors import UsageError
from edge_gateway.reading import iso, parse_iso
from edge_gateway.store import Store

CSV_HEADER = ("record", "time_utc", "time_local", "patient", "device", "kind", "value", "unit",
              "special", "details")
FORMATS = ("csv", "json", "fhir")
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
#: One encoder for every row: json.dumps with arguments builds a new encoder per call, which
#: was a third of the CSV export's time.
_compact = json.JSONEncoder(separators=(",", ":")).encode
#: A namespace for deterministic resource ids: exporting twice gives the same ids.
_NS = uuid.UUID("6f1b7c52-6a0e-4d0b-9a65-0f3c4f1e2a10")

#: kind -> (LOINC code, display, UCUM units the code takes, category)
LOINC_CODES: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "heart_rate": ("8867-4", "Heart rate", ("/min",), "vital-signs"),
    "pulse_rate": ("8867-4", "Heart rate", ("/min",), "vital-signs"),
    "spo2": ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", ("%",),
             "vital-signs"),
    "glucose": ("41653-7", "Glucose [Mass/volume] in Capillary blood by Glucometer",
                ("mg/dL",), "laboratory"),
    "cgm_glucose": ("99504-3", "Glucose [Mass/volume] in Interstitial fluid", ("mg/dL",),
                    "laboratory"),
    "temperature": ("8310-5", "Body temperature", ("Cel", "[degF]"), "vital-signs"),
    "body_temperature": ("8310-5", "Body temperature", ("Cel", "[degF]"), "vital-signs"),
    "weight": ("29463-7", "Body weight", ("kg", "[lb_av]"), "vital-signs"),
}
#: Display units for UCUM codes whose code is not what a person reads.
_UNIT_TEXT = {"Cel": "°C", "[degF]": "°F", "[lb_av]": "lb"}
BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")
BP_SYS = ("8480-6", "Systolic blood pressure")
BP_DIA = ("8462-4", "Diastolic blood pressure")
BP_MEAN = ("8478-0", "Mean blood pressure")
MAP_KINDS = frozenset({"bp_map", "mean_arterial_pressure"})
SDNN = ("80404-7", "R-R interval.standard deviation (Heart rate variability)")


@dataclass(frozen=True, slots=True)
class Window:
    """An export window: UTC bounds and the site zone for local times."""

    since: datetime
    until: datetime | None
    tz: ZoneInfo


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise UsageError(f"unknown time zone {name!r}",
                         hint="use an IANA name such as Europe/Berlin") from err


def parse_local(text: str, tz: ZoneInfo, what: str) -> datetime:
    """``2026-11-20`` (local midnight) or ``2026-11-20T08:00`` in ``tz`` -> UTC."""
    try:
        if len(text) == 10:
            dt = datetime.combine(date.fromisoformat(text), time(0), tz)
        else:
            dt = datetime.fromisoformat(text)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=tz)
    except ValueError as err:
        raise UsageError(f"{what}: {text!r} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)")\
            from err
    return dt.astimezone(UTC)


def window(since: str, until: str | None, tz_name: str) -> Window:
    tz = zone(tz_name)
    s = parse_local(since, tz, "--since")
    u = parse_local(until, tz, "--until") if until else None
    if u is not None and u <= s:
        raise UsageError("--until must be after --since (it is exclusive)")
    return Window(s, u, tz)


# --------------------------------------------------------------------------- the merged stream
Row = tuple[str, str, int, dict[str, Any]]  # (utc iso, record, order, fields)


def _cursor(store: Store, sql: str, args: list[Any]) -> Iterator[Any]:
    # A dedicated cursor per source: three statements stay open at once during the merge.
    cur = store.conn.cursor()
    cur.arraysize = 500
    cur.execute(sql, args)
    while True:
        rows = cur.fetchmany()
        if not rows:
            return
        yield from rows


def records(store: Store, patient: str, w: Window) -> Iterator[Row]:
    """Readings, summaries and alerts of ``patient`` in ``w``, merged in time order."""
    bounds = " AND {col} >= ?" + (" AND {col} < ?" if w.until else "")
    args: list[Any] = [patient, iso(w.since)] + ([iso(w.until)] if w.until else [])
    readings = (
        (t, "reading", 0, {"id": i, "device": d, "kind": k, "value": v, "unit": u,
                           "special": sp, "received_at": ra, "device_time": dt,
                           "record_key": rk})
        for i, d, k, v, u, sp, t, ra, dt, rk in _cursor(
            store, "SELECT id, device_id, kind, value, unit, special, time, received_at,"
            " device_time, record_key FROM readings WHERE patient_id = ?"
            + bounds.format(col="time") + " ORDER BY time, device_id, record_key, kind", args))
    summaries = (
        (ws, "summary", 1, {"id": i, "device": d, "kind": k, "window_end": we,
                            "metrics": json.loads(m), "coverage": c, "algorithm": alg})
        for i, d, k, ws, we, m, c, alg in _cursor(
            store, "SELECT id, device_id, kind, window_start, window_end, metrics, coverage,"
            " algorithm FROM summaries WHERE patient_id = ?" + bounds.format(col="window_start")
            + " ORDER BY window_start, id", args))
    alerts = (
        (ra, "alert", 2, {"id": i, "device": d, "kind": rule, "value": v, "unit": u,
                          "state": st, "severity": sev, "message": msg, "resolved_at": res,
                          "acknowledged_by": by})
        for i, d, rule, v, u, st, sev, msg, ra, res, by in _cursor(
            store, "SELECT id, device_id, rule, value, unit, state, severity, message,"
            " raised_at, resolved_at, acknowledged_by FROM alerts WHERE patient_id = ?"
            + bounds.format(col="raised_at") + " ORDER BY raised_at, id", args))
    yield from heapq.merge(readings, summaries, alerts, key=lambda r: (r[0], r[2]))


def _local(t: str, tz: ZoneInfo) -> str:
    dt = parse_iso(t)
    assert dt is not None
    return dt.astimezone(tz).isoformat()


def _num(v: Any) -> str:
    return "" if v is None else f"{v:.10g}"


# --------------------------------------------------------------------------- writers
def export(store: Store, out: TextIO, *, patient: str, w: Window, fmt: str) -> int:
    """Write the export to ``out``; returns the number of records written."""
    if fmt == "csv":
        return _csv(store, out, patient, w)
    if fmt == "json":
        return _json(store, out, patient, w)
    if fmt == "fhir":
        return _fhir(store, out, patient, w)
    raise UsageError(f"unknown format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")


def _csv(store: Store, out: TextIO, patient: str, w: Window) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    n = 0
    for t, rec, _, f in records(store, patient, w):
        if rec == "reading":
            details = {"received_at": f["received_at"], "device_time": f["device_time"],
                       "record_key": f["record_key"]}
            row = (f["kind"], _num(f["value"]), f["unit"], f["special"] or "")
        elif rec == "summary":
            details = {"window_end": f["window_end"], "coverage": f["coverage"],
                       "algorithm": f["algorithm"], "metrics": f["metrics"]}
            row = (f["kind"], "", "", "")
        else:
            details = {"severity": f["severity"], "message": f["message"],
                       "resolved_at": f["resolved_at"], "acknowledged_by": f["acknowledged_by"]}
            row = (f["kind"], _num(f["value"]), f["unit"] or "", f["state"])
        writer.writerow((rec, t, _local(t, w.tz), patient, f["device"] or "", *row,
                         _compact(details)))
        n += 1
    return n


def _json(store: Store, out: TextIO, patient: str, w: Window) -> int:
    head = {"patient": patient, "since": iso(w.since), "until": iso(w.until),
            "timezone": w.tz.key, "until_exclusive": True}
    out.write(json.dumps(head)[:-1] + ', "records": [')
    n = 0
    for t, rec, _, f in records(store, patient, w):
        item = {"record": rec, "time": t, "time_local": _local(t, w.tz), **f}
        out.write(("\n" if n == 0 else ",\n") + _compact(item))
        n += 1
    out.write("\n]}\n")
    return n


def _rid(kind: str, ident: Any) -> str:
    return str(uuid.uuid5(_NS, f"{kind}:{ident}"))


def _quantity(value: float, unit: str, code: str | None = None) -> dict[str, Any]:
    return {"value": round(value, 3), "unit": unit, "system": UCUM, "code": code or unit}


def _coding(code: tuple[str, str]) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code[0], "display": code[1]}],
            "text": code[1]}


def _obs(rid: str, patient: str, when: str, code: tuple[str, str], category: str,
         device: str | None, tz: ZoneInfo) -> dict[str, Any]:
    o: dict[str, Any] = {
        "resourceType": "Observation", "id": rid, "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
        "code": _coding(code), "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": _local(when, tz),
    }
    if device:
        o["device"] = {"display": device}
    return o


def _reading_resources(group: list[Row], patient: str, tz: ZoneInfo) -> Iterator[dict[str, Any]]:
    """Observations from readings that share one record (a BP measurement becomes one panel
    with systolic, diastolic and mean components)."""
    bp: dict[str, dict[str, Any]] = {}
    for _, _, _, f in group:
        if f["value"] is None:
            continue
        if f["kind"] in SYSTOLIC_KINDS:
            bp["sys"] = f
        elif f["kind"] in DIASTOLIC_KINDS:
            bp["dia"] = f
        elif f["kind"] in MAP_KINDS:
            bp["map"] = f
    if "sys" in bp or "dia" in bp:
        first = next(iter(bp.values()))
        o = _obs(_rid("bp", first["id"]), patient, group[0][0], BP_PANEL, "vital-signs",
                 first["device"], tz)
        codes = {"sys": BP_SYS, "dia": BP_DIA, "map": BP_MEAN}
        o["component"] = [
            {"code": _coding(codes[part]),
             "valueQuantity": _quantity(_mmhg(bp[part]["value"], bp[part]["unit"]), "mmHg",
                                        "mm[Hg]")}
            for part in ("sys", "dia", "map") if part in bp]
        yield o
    for t, _, _, f in group:
        spec = LOINC_CODES.get(f["kind"])
        if spec is None or f["value"] is None:
            continue
        code, display, units, category = spec
        value, unit = f["value"], f["unit"]
        if f["kind"] in ("glucose", "cgm_glucose") and unit == "mmol/L":
            value, unit = value * MGDL_PER_MMOLL, "mg/dL"  # the LOINC code is mass/volume
        elif unit not in units:
            continue  # a unit this code does not take; the CSV/JSON export still has it
        o = _obs(_rid("reading", f["id"]), patient, t, (code, display), category,
                 f["device"], tz)
        o["valueQuantity"] = _quantity(value, _UNIT_TEXT.get(unit) or unit, unit)
        yield o


def _mmhg(v: float, unit: str) -> float:
    return v * MMHG_PER_KPA if unit == "kPa" else v


def _fhir(store: Store, out: TextIO, patient: str, w: Window) -> int:
    out.write('{"resourceType": "Bundle", "type": "collection", "id": '
              + json.dumps(_rid("bundle", f"{patient}:{iso(w.since)}:{iso(w.until)}")))
    n = skipped = 0

    def emit(res: dict[str, Any]) -> None:
        nonlocal n
        entry = {"fullUrl": f"urn:uuid:{res['id']}", "resource": res}
        # FHIR JSON forbids empty arrays: "entry" opens with the first entry.
        out.write((', "entry": [\n' if n == 0 else ",\n")
                  + _compact(entry))
        n += 1

    group: list[Row] = []

    def flush() -> None:
        nonlocal skipped
        made = 0
        for res in _reading_resources(group, patient, w.tz):
            emit(res)
            made += 1
        if not made:
            skipped += len(group)
        group.clear()

    for row in records(store, patient, w):
        t, rec, _, f = row
        if rec == "reading":
            if group and (group[0][0], group[0][3]["device"], group[0][3]["record_key"]) != \
                    (t, f["device"], f["record_key"]):
                flush()
            group.append(row)
            continue
        flush()
        if rec == "summary":
            sdnn = f["metrics"].get("sdnn_ms")
            if isinstance(sdnn, int | float) and not isinstance(sdnn, bool):
                o = _obs(_rid("summary", f["id"]), patient, t, SDNN, "vital-signs",
                         f["device"], w.tz)
                o["effectivePeriod"] = {"start": o.pop("effectiveDateTime"),
                                        "end": _local(f["window_end"], w.tz)}
                o["valueQuantity"] = _quantity(float(sdnn), "ms")
                emit(o)
            else:
                skipped += 1
        else:
            flag: dict[str, Any] = {
                "resourceType": "Flag", "id": _rid("alert", f["id"]),
                "status": "inactive" if f["state"] == "resolved" else "active",
                "code": {"text": f["message"]},
                "subject": {"reference": f"Patient/{patient}"},
                "period": {"start": _local(t, w.tz)},
            }
            if f["resolved_at"]:
                flag["period"]["end"] = _local(f["resolved_at"], w.tz)
            emit(flag)
    flush()
    tail = {"tag": [{"system": "urn:edge-gateway:export",
                     "code": f"records-without-fhir-mapping:{skipped}"}]}
    out.write(('\n]' if n else "") + ', "meta": ' + json.dumps(tail) + "}\n")
    return n


def export_text(store: Store, *, patient: str, w: Window, fmt: str) -> str:
    """The whole export as a string (tests, small windows)."""
    buf = io.StringIO()
    export(store, buf, patient=patient, w=w, fmt=fmt)
    return buf.getvalue()
