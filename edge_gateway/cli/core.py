"""run, status, config validate|show, db check|backup."""

from __future__ import annotations

import asyncio
import os
import pwd
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from edge_gateway.cli.base import Context, echo_json, emit, main, with_context
from edge_gateway.errors import ConfigError, NotFound, StoreError
from edge_gateway.store.audit import os_actor


def open_store(ctx: Context, *, readonly: bool = False) -> Any:
    """Open the database named by --db or the config (never creates one).

    Read commands open it read-only, which a member of the service group may do.  A command
    that changes something, run by an account that may not write the database, ends with one
    line saying to run it as the service user (it would fail half-way otherwise).
    """
    from edge_gateway.store import Store

    cfg = ctx.load_config()
    if not readonly:
        require_write_access(Path(cfg.storage.db_path))
    return Store.open(cfg.storage.db_path, cap_bytes=cfg.storage.max_bytes, create=False,
                      readonly=readonly)


def can_write(db: Path) -> bool:
    """Whether this account may change the database (the file, and its folder for the WAL)."""
    return os.access(db, os.W_OK) and os.access(db.parent, os.W_OK | os.X_OK)


class ReadOnlyAccount(StoreError):
    """This account may read the database (the service group) but not change it."""

    exit_code = 2


def require_write_access(db: Path) -> None:
    if not db.exists() or can_write(db):
        return  # a missing database is Store.open's to report
    owner = _owner(db)
    raise ReadOnlyAccount(
        f"{db}: this account ({os_actor()}) may read the database but not change it",
        hint=f"run the command as the service user: sudo -u {owner} edge-gateway …")


def _owner(path: Path) -> str:
    try:
        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (KeyError, OSError):
        return "edge-gateway"


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
           f" cap {st['storage']['cap_bytes'] or 0:,}, evicted {st['storage']['evicted']},"
           f" refused stream frames {st['storage'].get('refused_stream_frames', 0)})")
    yield (f"outbox    {st['outbox']['pending']} pending"
           f" (oldest {st['outbox']['oldest_pending_at'] or '-'});"
           f" last sync {st['last_sync_at'] or 'never'}")
    yield f"alerts    {st['alerts_open']} open"
    cmd = st.get("commands") or {}
    if any(cmd.get(k) for k in ("applied", "rejected", "expired", "replayed")):
        yield (f"commands  {cmd['applied']} applied, {cmd['rejected']} rejected,"
               f" {cmd['expired']} expired, {cmd['replayed']} replayed (from the console)")
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
    """Check the file's header and schema, run SQLite's integrity check, print row counts.

    Exits 1 (and says what is wrong) for a damaged, truncated, empty or non-database file.

    Example:

        edge-gateway --db var/gateway.db db check
    """
    from edge_gateway.store.check import check_file

    path = Path(ctx.load_config().storage.db_path)
    if not path.exists():
        raise NotFound("database", str(path), hint="pass --db with the database to check")
    report = check_file(path)
    out: dict[str, Any] = {"path": report.path, "integrity": "ok" if report.ok
                           else report.problems, "file_bytes": report.file_bytes}
    size = f"  size {report.file_bytes:,} bytes"
    if report.ok:
        store = open_store(ctx, readonly=True)
        out.update(db_id=store.db_id, used_bytes=store.used_bytes(),
                   cap_bytes=store.cap_bytes, evicted=store.evicted())
        size += f" (used {out['used_bytes']:,}), evicted rows {out['evicted']}"
    out["tables"] = report.tables
    emit(out, as_json, [
        f"{out['path']}: integrity {'ok' if report.ok else 'FAILED'}", size,
        *(f"  {name:<20} {n:>10,}" for name, n in report.tables.items())])
    if not report.ok and not as_json:
        for p in report.problems:
            click.echo(f"  problem: {p}", err=True)
        click.echo("  stop the daemon, then: edge-gateway db recover --out NEW.db (or restore"
                   " the latest backup)", err=True)
    if not report.ok:
        raise SystemExit(1)


@db.command("recover")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="New file to write what can be saved into (never overwritten).")
@with_context()
def db_recover(ctx: Context, out: Path) -> None:
    """Save what can be read from a damaged database into a new file; rows per table.

    Copies table by table in row order, stepping over the pages it cannot read.  Stop the
    daemon first; then point storage.db_path at the new file (or move it into place).

    Example:

        edge-gateway --db var/gateway.db db recover --out var/saved.db
    """
    from edge_gateway.store.check import recover

    saved = recover(Path(ctx.load_config().storage.db_path), out)
    click.echo(f"saved into {out}:")
    for name, n in saved.items():
        click.echo(f"  {name:<20} {n:>10,} rows")


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
