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

FHIR (built by :mod:`edge_gateway.fhir`, codes from the registry's kinds table, as the MQTT
``fhir`` format): a ``Bundle`` of type ``collection``; readings with a LOINC code become
``Observation``s
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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge_gateway import fhir
from edge_gateway.drivers import registry
from edge_gateway.errors import UsageError
from edge_gateway.reading import iso, parse_iso
from edge_gateway.store import Store
from edge_gateway.store import alerts as alert_rows
from edge_gateway.store import readings as reading_rows
from edge_gateway.store import summaries as summary_rows
from edge_gateway.units import BP_PARTS, Kind, bp_records

CSV_HEADER = ("record", "time_utc", "time_local", "patient", "device", "kind", "value", "unit",
              "special", "details")
FORMATS = ("csv", "json", "fhir")
#: One encoder for every row: json.dumps with arguments builds a new encoder per call, which
#: was a third of the CSV export's time.
_compact = json.JSONEncoder(separators=(",", ":")).encode
#: A namespace for deterministic resource ids: exporting twice gives the same ids.
_NS = uuid.UUID("6f1b7c52-6a0e-4d0b-9a65-0f3c4f1e2a10")

#: The summary metric the export carries as an Observation of its own (SDNN 80404-7).
EXPORTED_METRIC = "sdnn_ms"
#: BP parts that go into the panel (pulse rate stays an Observation of its own).
_PANEL_PARTS = frozenset({"sys", "dia", "map"})
#: Values in the FHIR export are rounded to this many decimals (mmol/L -> mg/dL gives noise).
_DIGITS = 3


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
    # Far dates overflow datetime arithmetic (a report steps back from --until by days).
    if not 1900 <= dt.year <= 9000:
        raise UsageError(f"{what}: {text!r} is out of range (years 1900 to 9000)")
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


def records(store: Store, patient: str, w: Window) -> Iterator[Row]:
    """Readings, summaries and alerts of ``patient`` in ``w``, merged in time order."""
    # Each source streams on its own cursor: three queries stay open at once during the merge.
    since, until = iso(w.since), iso(w.until) if w.until else None
    readings = (
        (t, "reading", 0, {"id": i, "device": d, "kind": k, "value": v, "unit": u,
                           "special": sp, "received_at": ra, "device_time": dt,
                           "record_key": rk})
        for i, d, k, v, u, sp, t, ra, dt, rk in reading_rows.export_rows(
            store, patient, since, until))
    summaries = (
        (ws, "summary", 1, {"id": i, "device": d, "kind": k, "window_end": we,
                            "metrics": json.loads(m), "coverage": c, "algorithm": alg})
        for i, d, k, ws, we, m, c, alg in summary_rows.export_rows(store, patient, since, until))
    alerts = (
        (ra, "alert", 2, {"id": i, "device": d, "kind": rule, "value": v, "unit": u,
                          "state": st, "severity": sev, "message": msg, "resolved_at": res,
                          "acknowledged_by": by})
        for i, d, rule, v, u, st, sev, msg, ra, res, by in alert_rows.export_rows(
            store, patient, since, until))
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


def _reading_resources(group: list[Row], patient: str, tz: ZoneInfo,
                       kinds: Mapping[str, Kind]) -> Iterator[dict[str, Any]]:
    """Observations from readings that share one record (a BP measurement becomes one panel
    with systolic, diastolic and mean components)."""
    parts = [row for row in group if row[3]["value"] is not None
             and BP_PARTS.get(row[3]["kind"]) in _PANEL_PARTS]
    for bp in bp_records(parts, key=lambda _: 0, kind=lambda row: row[3]["kind"]).values():
        if "sys" in bp.parts or "dia" in bp.parts:
            first = bp.first[3]
            yield fhir.bp_panel(
                kinds, {part: (row[3]["value"], row[3]["unit"]) for part, row in
                        bp.parts.items()},
                when=_local(group[0][0], tz), patient=patient, device=first["device"],
                rid=_rid("bp", first["id"]), digits=_DIGITS)
    for t, _, _, f in group:
        if BP_PARTS.get(f["kind"]) in _PANEL_PARTS:
            continue  # in the panel above
        # strict: only kinds with a LOINC code, in a unit that code takes (the CSV/JSON
        # export still has the rest)
        o = fhir.reading_observation(kinds, f["kind"], f["value"], f["unit"],
                                     when=_local(t, tz), patient=patient, device=f["device"],
                                     rid=_rid("reading", f["id"]), strict=True,
                                     digits=_DIGITS)
        if o is not None:
            yield o


def _fhir(store: Store, out: TextIO, patient: str, w: Window) -> int:
    out.write('{"resourceType": "Bundle", "type": "collection", "id": '
              + json.dumps(_rid("bundle", f"{patient}:{iso(w.since)}:{iso(w.until)}")))
    n = skipped = 0

    def emit(res: dict[str, Any]) -> None:
        nonlocal n
        # FHIR JSON forbids empty arrays: "entry" opens with the first entry.
        out.write((', "entry": [\n' if n == 0 else ",\n")
                  + _compact(fhir.entry(res)))
        n += 1

    group: list[Row] = []
    kinds = registry.kinds()

    def flush() -> None:
        nonlocal skipped
        made = 0
        for res in _reading_resources(group, patient, w.tz, kinds):
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
            o = fhir.metric_observation(
                kinds, EXPORTED_METRIC, f["metrics"].get(EXPORTED_METRIC),
                start=_local(t, w.tz), end=_local(f["window_end"], w.tz), patient=patient,
                device=f["device"], rid=_rid("summary", f["id"]), digits=_DIGITS)
            if o is not None:
                emit(o)
            else:
                skipped += 1
        else:
            emit(fhir.flag(
                rule=f["kind"], message=f["message"], state=f["state"],
                severity=f["severity"], start=_local(t, w.tz),
                end=_local(f["resolved_at"], w.tz) if f["resolved_at"] else None,
                patient=patient, rid=_rid("alert", f["id"])))
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
