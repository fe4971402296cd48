"""sync status|now: the outbox and the broker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from edge_gateway.cli.base import Context, emit, main, with_context
from edge_gateway.errors import ConfigError, SyncError


@main.group()
def sync() -> None:
    """The outbox of summaries and alerts, and its delivery to the MQTT broker.

    Example:

        edge-gateway sync status
    """


def _store(ctx: Context, *, readonly: bool) -> Any:
    from edge_gateway.store import Store

    cfg = ctx.load_config()
    return cfg, Store.open(cfg.storage.db_path, cap_bytes=cfg.storage.max_bytes, create=False,
                           readonly=readonly)


@sync.command("status")
@with_context(json="Print one JSON object.")
def sync_status(ctx: Context, as_json: bool) -> None:
    """Show the outbox: pending (by priority), sent, failed, oldest pending, last success.

    Counts are outbox items since the database was created: `pending` not yet acknowledged
    by the broker, `sent` acknowledged, `failed` pending items whose last attempt failed.
    The top-level counts are the MQTT broker's; `mqtt` repeats them and `nightscout` gives
    the same counts for the Nightscout uploads (all sites, and per site under `sites`).
    `commands` counts the clinic console's commands: applied, rejected, expired, replayed.

    Example:

        edge-gateway sync status --json
    """
    from edge_gateway.store.commands import stats as command_stats
    from edge_gateway.store.outbox import status
    from edge_gateway.sync import nightscout

    cfg, store = _store(ctx, readonly=True)
    try:
        st = status(store)
        st["mqtt"] = dict(st)
        st["nightscout"] = nightscout.status(store, cfg.nightscout)
        st["commands"] = command_stats(store)
    finally:
        store.close()
    by = st["pending_by_priority"]
    ns = st["nightscout"]
    cmd = st["commands"]
    emit(st, as_json, [
        f"pending       {st['pending']} (alerts {by['alert']}, summaries {by['summary']},"
        f" bulk {by['bulk']}); oldest {st['oldest_pending_at'] or '-'}",
        f"sent          {st['sent']}",
        f"failed        {st['failed']} pending items whose last attempt failed"
        f" ({st['failed_attempts']} failed attempts in all)",
        f"last success  {st['last_success_at'] or 'never'}",
        *([f"last error    {st['last_error']} (at {st['last_error_at'] or '-'})"]
          if st["last_error"] else []),
        *([f"nightscout    {ns['pending']} pending, {ns['sent']} uploaded, {ns['failed']}"
           f" failed; last success {ns['last_success_at'] or 'never'}"
           + (f"; last error {ns['last_error']}" if ns["last_error"] else "")]
          if ns["sites"] else []),
        *([f"commands      {cmd['applied']} applied, {cmd['rejected']} rejected,"
           f" {cmd['expired']} expired, {cmd['replayed']} replayed (from the console)"]
          if cfg.commands.enabled or any(cmd[k] for k in ("applied", "rejected", "expired"))
          else [])])


@sync.command("now")
@click.option("--broker", default=None,
              help="Use this broker (mqtt://HOST:PORT or mqtts://HOST:PORT) instead of the "
              "config's.")
@click.option("--timeout", "timeout_s", type=float, default=30.0, show_default=True,
              help="Give up after this many seconds.")
@with_context()
def sync_now(ctx: Context, broker: str | None, timeout_s: float) -> None:
    """Publish what is pending now, then exit (status 1 when some is left).

    Beside a running daemon that is syncing, it does nothing and says so (one publisher per
    database: a lock file beside it); a daemon started meanwhile waits for it.

    Example:

        edge-gateway sync now --timeout 60
    """
    from edge_gateway.cli.core import require_write_access
    from edge_gateway.config import resolve_mqtt, with_broker
    from edge_gateway.sync.service import SyncBusy, SyncService

    require_write_access(Path(ctx.load_config().storage.db_path))
    cfg, store = _store(ctx, readonly=False)
    try:
        if broker is not None:
            try:
                cfg = with_broker(cfg, broker)
            except ValueError as err:
                raise ConfigError("--broker", "", str(err)) from err
        mqtt = resolve_mqtt(cfg)
        if mqtt is None:
            raise ConfigError(cfg.source, "mqtt.host", "no broker configured",
                              hint="set mqtt.host in the config or pass --broker")
        svc = SyncService(store, mqtt, cfg.sync, cfg.gateway_id, cfg.gateway.site)
        before = svc.outbox.status()["sent"]
        try:
            left = asyncio.run(svc.drain(timeout_s))
        except SyncBusy:
            click.echo("the daemon is running and syncing; nothing to do")
            return
        st = svc.status()
    finally:
        store.close()
    click.echo(f"published {st['sent'] - before} items; {left} pending")
    if left:
        if st["last_error"]:
            click.echo(f"last error: {st['last_error']}", err=True)
        raise SyncError(f"{left} items still pending after {timeout_s:g} s",
                        hint="`edge-gateway sync status` shows the last error")
