"""patients, thresholds, alerts, export, report: the caregiver's commands.

Each command is a few lines over :mod:`edge_gateway.care.caregiver`,
:mod:`edge_gateway.care.export` or :mod:`edge_gateway.care.report`; changes are audited there
with the OS user as the actor.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from edge_gateway.care import caregiver as C
from edge_gateway.cli.base import Context, emit, main, with_context
from edge_gateway.cli.core import can_write, open_store
from edge_gateway.errors import GatewayError


def _store(ctx: Context) -> Any:
    """For a command that changes something (the service user's; see open_store)."""
    return open_store(ctx)


def _reader(ctx: Context) -> Any:
    """For a command that only reads: read-only, so a member of the service group may run it."""
    return open_store(ctx, readonly=True)


def _exporter(ctx: Context) -> Any:
    """For export and report: read-write when this account may write (the access goes to the
    audit log), else read-only (``note_access`` then logs it to the system log)."""
    return open_store(ctx, readonly=not can_write(Path(ctx.load_config().storage.db_path)))


def _tz(ctx: Context, tz: str | None) -> str:
    return tz or str(ctx.load_config().gateway.timezone)


# ------------------------------------------------------------------------------ patients
@main.group()
def patients() -> None:
    """Add, list, show and remove patients.

    Example:

        edge-gateway patients add alice --name "Alice B."
    """


@patients.command("add")
@click.argument("patient")
@click.option("--name", default=None, help="Display name (kept on this gateway only).")
@click.option("--notes", default=None, help="Free text for caregivers.")
@with_context(json=True)
def patients_add(ctx: Context, patient: str, name: str | None, notes: str | None,
                 as_json: bool) -> None:
    """Add a patient.  PATIENT is an id of letters, digits, '-' or '_'.

    Example:

        edge-gateway patients add alice --name "Alice B."
    """
    p = C.add_patient(_store(ctx), patient, name=name, notes=notes)
    emit(p, as_json, f"added patient {p['id']}")


@patients.command("list")
@with_context(json=True)
def patients_list(ctx: Context, as_json: bool) -> None:
    """List patients with their devices, reading count and open alerts.

    Example:

        edge-gateway patients list --json
    """
    rows = C.list_patients(_reader(ctx))
    emit(rows, as_json, (f"{p['id']:<16} {p['name'] or '-':<20}"
                         f" devices={','.join(p['devices']) or '-'}"
                         f"  readings={p['readings']}  open_alerts={p['open_alerts']}"
                         f"  last={p['last_reading_at'] or '-'}" for p in rows),
         empty="no patients yet (add one with: edge-gateway patients add ID)")


@patients.command("show")
@click.argument("patient")
@with_context(json=True)
def patients_show(ctx: Context, patient: str, as_json: bool) -> None:
    """Show one patient: devices, counts, threshold overrides.

    Example:

        edge-gateway patients show alice
    """
    p = C.show_patient(_reader(ctx), patient)
    emit(p, as_json, (f"{k:<20} {_field_text(k, v)}" for k, v in p.items()))


def _field_text(key: str, v: Any) -> str:
    if key == "threshold_overrides":
        return ", ".join(f"{k}={val}" for k, val in v.items()) or "-"
    if isinstance(v, list):
        return ", ".join(v) or "-"
    return "-" if v is None else str(v)


@patients.command("remove")
@click.argument("patient")
@click.option("--purge", is_flag=True,
              help="Also delete every reading, summary and alert of the patient and their "
                   "unsent outbox items (privacy request).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_context(json=True)
def patients_remove(ctx: Context, patient: str, purge: bool, yes: bool, as_json: bool) -> None:
    """Remove a patient (devices stay, unassigned).  Data stay unless --purge.

    Example:

        edge-gateway patients remove alice --purge --yes
    """
    store = _store(ctx)
    C.require_patient(store, patient)
    if purge and not yes:
        click.confirm(f"Delete ALL data of patient {patient}? This cannot be undone",
                      abort=True)
    deleted = C.remove_patient(store, patient, purge=purge)
    counts = ", ".join(f"{k} {v}" for k, v in deleted.items() if v)
    emit({"patient": patient, "purged": purge, "deleted": deleted}, as_json,
         f"removed patient {patient}" + (f" (deleted {counts})" if counts else ""))


# ------------------------------------------------------------------------------ thresholds
@main.group()
def thresholds() -> None:
    """Show, set and reset a patient's alert thresholds (with units).

    PATIENT may be @gateway for gateway-wide values that apply to every patient without
    their own.

    Example:

        edge-gateway thresholds set alice glucose.low_l1 "3.9 mmol/L"
    """


@thresholds.command("show")
@click.argument("patient")
@with_context(json=True)
def thresholds_show(ctx: Context, patient: str, as_json: bool) -> None:
    """Show every threshold of PATIENT, where it comes from, and what it means.

    Example:

        edge-gateway thresholds show alice
    """
    rows = C.show_thresholds(_reader(ctx), patient)
    emit(rows, as_json,
         (f"{r['key']:<22} {r['value']:<12} {r['source']:<8} {r['help']}" for r in rows))


@thresholds.command("set")
@click.argument("patient")
@click.argument("key")
@click.argument("value")
@with_context(json=True)
def thresholds_set(ctx: Context, patient: str, key: str, value: str, as_json: bool) -> None:
    """Set KEY to VALUE for PATIENT.  VALUE is one argument with its unit.

    The running daemon uses it from its next reading on; no restart.

    Example:

        edge-gateway thresholds set alice glucose.low_l1 "70 mg/dL"
    """
    r = C.set_threshold(_store(ctx), patient, key, value)
    emit(r, as_json, f"{patient}: {key} = {r['value']} ({r['canonical']:g} {r['unit']})")


@thresholds.command("reset")
@click.argument("patient")
@click.argument("key", required=False)
@with_context(json=True)
def thresholds_reset(ctx: Context, patient: str, key: str | None, as_json: bool) -> None:
    """Reset KEY (or every key) of PATIENT to the gateway-wide value or the default.

    Example:

        edge-gateway thresholds reset alice glucose.low_l1
    """
    r = C.reset_threshold(_store(ctx), patient, key)
    emit(r, as_json, f"{patient}: {r['reset']} override(s) removed" if key is None
         else f"{patient}: {key} = {r['value']} ({r['source']})")


# ------------------------------------------------------------------------------ alerts
@main.group()
def alerts() -> None:
    """List, acknowledge and review alerts.

    Example:

        edge-gateway alerts list --patient alice
    """


def _alert_line(a: dict[str, Any]) -> str:
    return (f"#{a['id']:<5} {a['state']:<12} {a['severity']:<8} {a['patient'] or '-':<12}"
            f" {a['raised_at']}  {a['message']}")


@alerts.command("list")
@click.option("--patient", default=None, help="Only this patient's alerts.")
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved alerts.")
@with_context(json=True)
def alerts_list(ctx: Context, patient: str | None, include_resolved: bool,
                as_json: bool) -> None:
    """List open alerts (newest first).

    Example:

        edge-gateway alerts list --patient alice --json
    """
    rows = C.list_alerts(_reader(ctx), patient=patient, include_resolved=include_resolved)
    emit(rows, as_json, (_alert_line(a) for a in rows), empty="no open alerts")


@alerts.command("ack")
@click.argument("alert_id", type=click.IntRange(1, 2**63 - 1))
@with_context(json=True)
def alerts_ack(ctx: Context, alert_id: int, as_json: bool) -> None:
    """Acknowledge alert ALERT_ID: no more re-notify or escalation (it still resolves).

    The alert hook (alerts.hook) is told too, once, so a buzzer or LED can be silenced.

    Example:

        edge-gateway alerts ack 17
    """
    a, t = C.acknowledge(_store(ctx), alert_id)
    cfg = ctx.load_config()
    if t is not None and cfg.alerts.hook:
        import asyncio

        from edge_gateway.alerts.hooks import HookRunner

        # One attempt: the acknowledgement is stored and synced whatever the hook does, and
        # the caregiver should not wait through retries.
        runner = HookRunner(cfg.alerts.hook, cfg.alerts.hook_timeout_s, retries=0)
        res = asyncio.run(runner.deliver(t.to_json()))
        if not res.ok:
            click.echo(f"warning: alert hook failed: {res.error}", err=True)
    emit(a, as_json, _alert_line(a))


@alerts.command("history")
@click.option("--patient", default=None, help="Only this patient's alerts.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000),
              help="At most this many alerts, newest first.")
@with_context(json=True)
def alerts_history(ctx: Context, patient: str | None, limit: int, as_json: bool) -> None:
    """Alerts with every transition (raised, escalated, renotified, acknowledged, resolved).

    Example:

        edge-gateway alerts history --patient alice --limit 20
    """
    rows = C.alert_history(_reader(ctx), patient=patient, limit=limit)
    emit(rows, as_json, _history_lines(rows))


def _history_lines(rows: list[dict[str, Any]]) -> Iterator[str]:
    for a in rows:
        yield _alert_line(a)
        for e in a["events"]:
            by = f" by {e['by']}" if e.get("by") else ""
            yield f"        {e['at']}  {e['state']}{by}"


# ------------------------------------------------------------------------------ export, report
_FORCE = click.option("--force", is_flag=True,
                      help="Replace --out if it exists (else the command refuses).")


@main.command("export")
@click.option("--patient", required=True, help="Patient id.")
@click.option("--since", required=True, help="First day (site time zone), e.g. 2026-11-01.")
@click.option("--until", default=None, help="End, exclusive (site time zone).")
@click.option("--format", "fmt", type=click.Choice(["csv", "fhir", "json"]), default="csv",
              show_default=True, help="csv (documented header), json, or fhir (R4 Bundle).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here (a new file, mode 0600) instead of stdout.")
@_FORCE
@click.option("--tz", default=None, help="Time zone for the dates (default: gateway.timezone).")
@with_context()
def export_cmd(ctx: Context, patient: str, since: str, until: str | None, fmt: str,
               out: Path | None, force: bool, tz: str | None) -> None:
    """Export readings, summaries and alerts (CSV, JSON, or a FHIR R4 Bundle).

    Streams: a year of data needs no more memory than a day.  docs/caregiver.md documents
    the CSV columns.  --out creates a new file only the caller may read (0600); an existing
    one is kept unless --force is given.

    Example:

    \b
        edge-gateway export --patient alice --since 2026-11-01 --until 2026-12-01 \\
            --format fhir --out alice.json
    """
    from edge_gateway.care.export import export, window
    from edge_gateway.care.files import private_output

    store = _exporter(ctx)
    C.require_patient(store, patient)
    w = window(since, until, _tz(ctx, tz))
    with ExitStack() as stack:
        if out is None:
            n = export(store, sys.stdout, patient=patient, w=w, fmt=fmt)
        else:
            fh = stack.enter_context(private_output(out, force=force))
            text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
            n = export(store, text, patient=patient, w=w, fmt=fmt)
            text.flush()
            text.detach()
    # Data leaving the gateway is audited like a change: who took what window, never values.
    C.note_access(store, "data.export", patient, {
        "format": fmt, "since": since, "until": until, "records": n,
        "to": "stdout" if out is None else "file"})
    if out is not None:
        click.echo(f"wrote {n} records to {out}", err=True)


@main.command("report")
@click.option("--patient", required=True, help="Patient id.")
@click.option("--days", default=14, show_default=True, type=click.IntRange(1, 90),
              help="How many local days, ending before --until.")
@click.option("--until", default=None,
              help="End day, exclusive (site time zone); default: tomorrow, so today is in.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="report.html, or report.pdf for a PDF (a new file, mode 0600).")
@_FORCE
@click.option("--tz", default=None, help="Time zone (default: gateway.timezone).")
@with_context()
def report_cmd(ctx: Context, patient: str, days: int, until: str | None, out: Path,
               force: bool, tz: str | None) -> None:
    """A printable report: glucose profile (AGP) and time in ranges, HR/HRV trend, AF
    episodes, blood-pressure classes, device coverage.

    Needs matplotlib (pip install 'edge-gateway[report]').  --out creates a new file only the
    caller may read (0600); an existing one is kept unless --force is given.

    Example:

        edge-gateway report --patient alice --days 14 --out report.html
    """
    from edge_gateway.care.export import parse_local, zone
    from edge_gateway.care.files import private_output

    if importlib.util.find_spec("matplotlib") is None:
        raise GatewayError("report needs matplotlib, which is not installed",
                           hint="pip install 'edge-gateway[report]'")
    from edge_gateway.care.report import write_report

    store = _exporter(ctx)
    C.require_patient(store, patient)
    zi = zone(_tz(ctx, tz))
    if until:
        end = parse_local(until, zi, "--until")
    else:
        today = datetime.now(UTC).astimezone(zi).date() + timedelta(days=1)
        end = parse_local(today.isoformat(), zi, "--until")
    with private_output(out, force=force) as fh:
        write_report(store, patient, end=end, days=days, tz=zi, out=out, fh=fh)
    C.note_access(store, "data.report", patient, {"days": days, "until": until,
                                                  "format": out.suffix.lstrip(".")})
    click.echo(f"wrote {out}", err=True)
