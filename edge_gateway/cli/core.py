"""run, status, config validate|show, db check|backup."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from edge_gateway.cli.base import Context, echo_json, emit, main, with_context
from edge_gateway.errors import ConfigError


def open_store(ctx: Context, *, readonly: bool = False) -> Any:
    """Open the database named by --db or the config (never creates one for read commands)."""
    from edge_gateway.store import Store

    cfg = ctx.load_config()
    return Store.open(cfg.storage.db_path, cap_bytes=cfg.storage.max_bytes, create=False,
                      readonly=readonly)


@main.command()
@with_context()
def run(ctx: Context) -> None:
    """Run the gateway daemon in the foreground (systemd runs it this way).

    Stops cleanly on SIGTERM or Ctrl-C with every received reading committed; SIGHUP
    re-reads the config file.

    Example:

        edge-gateway -c /etc/edge-gateway/gateway.toml run
    """
    from edge_gateway import logfmt
    from edge_gateway.runtime.daemon import Daemon

    cfg = ctx.load_config()
    logfmt.setup(cfg.daemon.log_level)
    path = ctx.config_path if ctx.config_path and ctx.config_path.exists() else None
    raise SystemExit(asyncio.run(Daemon(cfg, config_path=path).run()))


@main.command()
@with_context(json="Print one JSON object.")
def status(ctx: Context, as_json: bool) -> None:
    """Show devices, the outbox backlog, the last sync and storage use.

    `connected` is as last recorded by the daemon (with the time it was recorded).

    Example:

        edge-gateway status --json
    """
    from edge_gateway.runtime.status import gateway_status

    store = open_store(ctx, readonly=True)
    st = gateway_status(store)
    emit(st, as_json, _status_lines(st))


def _status_lines(st: dict[str, Any]) -> Iterator[str]:
    yield (f"database  {st['storage']['db_path']}  ({st['storage']['db_bytes']:,} bytes,"
           f" cap {st['storage']['cap_bytes'] or 0:,}, evicted {st['storage']['evicted']})")
    yield (f"outbox    {st['outbox']['pending']} pending"
           f" (oldest {st['outbox']['oldest_pending_at'] or '-'});"
           f" last sync {st['last_sync_at'] or 'never'}")
    yield f"alerts    {st['alerts_open']} open"
    if not st["devices"]:
        yield "devices   none yet (add one with: edge-gateway devices add)"
    for d in st["devices"]:
        state = "connected" if d["connected"] else "disconnected"
        yield (f"device    {d['id']:<20} {d['profile']:<15} patient={d['patient'] or '-':<10}"
               f" {state:<12} 24h={d['readings_24h']:<6} total={d['readings_total']:<8}"
               f" last={d['last_reading_at'] or '-'}")


@main.group()
def config() -> None:
    """Check and show the deployment config.

    Example:

        edge-gateway config validate /etc/edge-gateway/gateway.toml
    """


@config.command("validate")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@with_context()
def config_validate(ctx: Context, file: Path | None) -> None:
    """Check a config file; exit 2 with file, key and reason when it is wrong.

    Example:

        edge-gateway config validate config/gateway.example.toml
    """
    from edge_gateway.config import load_config

    path = file or ctx.config_path
    if path is None:
        raise ConfigError("<none>", "", "no config file given")
    cfg = load_config(path, required=True)
    click.echo(f"{cfg.source}: OK")


@config.command("show")
@with_context()
def config_show(ctx: Context) -> None:
    """Print the effective config as JSON (secrets redacted).

    Example:

        edge-gateway -c /etc/edge-gateway/gateway.toml config show
    """
    cfg = ctx.load_config()
    echo_json({"source": cfg.source, "gateway_id": cfg.gateway_id, **cfg.redacted()})


@main.group()
def db() -> None:
    """Inspect and back up the database.

    Example:

        edge-gateway db check
    """


@db.command("check")
@with_context(json="Print one JSON object.")
def db_check(ctx: Context, as_json: bool) -> None:
    """Run SQLite's integrity check and print sizes and row counts.

    Exits 1 when the integrity check finds a problem.

    Example:

        edge-gateway --db var/gateway.db db check
    """
    store = open_store(ctx, readonly=True)
    problems = store.integrity_check()
    ok = problems == ["ok"]
    out = {"path": str(store.path), "db_id": store.db_id, "integrity": "ok" if ok else problems,
           "file_bytes": store.file_bytes(), "used_bytes": store.used_bytes(),
           "cap_bytes": store.cap_bytes, "evicted": store.evicted(),
           "tables": store.table_counts()}
    emit(out, as_json, [
        f"{out['path']}: integrity {'ok' if ok else 'FAILED'}",
        f"  size {out['file_bytes']:,} bytes (used {out['used_bytes']:,}),"
        f" evicted rows {out['evicted']}",
        *(f"  {name:<20} {n:>10,}" for name, n in out["tables"].items())])
    if not ok and not as_json:
        for p in problems:
            click.echo(f"  problem: {p}", err=True)
        click.echo("  restore the latest backup (edge-gateway db backup) and report this",
                   err=True)
    if not ok:
        raise SystemExit(1)


@db.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@with_context()
def db_backup(ctx: Context, file: Path) -> None:
    """Copy the database with SQLite's online backup API (safe while the daemon runs).

    Example:

        edge-gateway db backup /media/usb/gateway-2026-11-25.db
    """
    store = open_store(ctx)
    dest = store.backup(file)
    click.echo(f"backup written to {dest} ({dest.stat().st_size:,} bytes)")
