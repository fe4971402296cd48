"""cloud ingest|status: the receiving end (fleet ingest from MQTT 5 into PostgreSQL).

Needs the ``[cloud]`` extra.  This module is the one place on the hub side allowed to import
``edge_gateway.cloud`` (``tests/unit/test_layout_imports.py``), and only inside the commands,
after ``_need_cloud`` checked that psycopg is installed: the base install works without it and
nothing else of the CLI depends on the cloud modules.  Settings come from options, else from
a ``[cloud]`` section of the file given with ``--config`` (only that section is read).
"""

from __future__ import annotations

import signal
import threading
import tomllib
from typing import Any

import click

from edge_gateway.cli.base import Context, emit, main, with_context
from edge_gateway.errors import ConfigError, GatewayError

_KEYS = {"broker": str, "dsn": str, "group": str, "client_id": str, "prefix": str,
         "batch_messages": int, "batch_delay_s": float, "batch_idle_s": float,
         "receive_maximum": int,
         "session_expiry_s": int, "ca_file": str, "username": str, "password": str,
         "max_message_bytes": int, "max_inflated_bytes": int}


def _need_cloud() -> None:
    """One line saying to install the extra when psycopg is missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError as err:
        raise GatewayError("the cloud commands need PostgreSQL support, which is not installed",
                           hint="pip install 'edge-gateway[cloud]'") from err


def _section(ctx: Context) -> dict[str, Any]:
    """The ``[cloud]`` section of the config file, checked ({} when there is none)."""
    path = ctx.config_path
    if path is None or not path.exists():
        if ctx.config_explicit:
            raise ConfigError(str(path), "", "no such file")
        return {}
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(path), "", f"not valid TOML: {err}") from err
    sec = doc.get("cloud", {})
    if not isinstance(sec, dict):
        raise ConfigError(str(path), "cloud", "must be a table")
    for key, value in sec.items():
        typ = _KEYS.get(key)
        if typ is None:
            raise ConfigError(str(path), f"cloud.{key}",
                              f"unknown key (known: {', '.join(sorted(_KEYS))})")
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise ConfigError(str(path), f"cloud.{key}", f"must be a {typ.__name__}")
        sec[key] = value
    return sec


@main.group()
def cloud() -> None:
    """The receiving end: MQTT 5 consumers that land every hub's items in PostgreSQL.

    Needs `pip install 'edge-gateway[cloud]'`.  See docs/fleet.md.

    Example:

        edge-gateway cloud ingest --broker mqtt://broker:1883 --dsn postgresql:///fleet
    """


@cloud.command("ingest")
@click.option("--broker", help="mqtt://HOST:PORT or mqtts://HOST:PORT (or cloud.broker).")
@click.option("--dsn", help="libpq connection string, e.g. postgresql:///fleet (or cloud.dsn).")
@click.option("--group", help="Shared-subscription group (default ingest).")
@click.option("--client-id", help="Stable MQTT client id of this instance"
              " (default edge-gateway-ingest-<host name>).")
@click.option("--prefix", help="Topic prefix the hubs publish under (default edge-gateway).")
@click.option("--batch-messages", type=click.IntRange(1, 100_000),
              help="Commit at this many messages (default 500).")
@click.option("--batch-delay", "batch_delay_s", type=click.FloatRange(0.0, 3600.0),
              help="…or when the oldest held message waited this long, s (default 0.05).")
@click.option("--batch-idle", "batch_idle_s", type=click.FloatRange(0.0, 3600.0),
              help="…or when nothing more arrived for this long, s (default 0.005).")
@click.option("--leave", is_flag=True,
              help="On stop, unsubscribe, drain and end the session (scaling a group down).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True,
              help="debug also logs each message received (never its payload).")
@with_context()
def cloud_ingest(ctx: Context, broker: str | None, dsn: str | None, group: str | None,
                 client_id: str | None, prefix: str | None, batch_messages: int | None,
                 batch_delay_s: float | None, batch_idle_s: float | None, leave: bool,
                 log_level: str) -> None:
    """Run one consumer in the foreground until SIGTERM/SIGINT.

    It creates or migrates the schema when it starts, acknowledges each message only after
    its items are committed, and on SIGTERM commits and acknowledges what it holds, then
    exits 0.  Run as many as you like (same --group, each its own --client-id).

    Example:

        edge-gateway cloud ingest --broker mqtt://127.0.0.1:1883 --dsn postgresql:///fleet
    """
    _need_cloud()
    from edge_gateway import logfmt
    from edge_gateway.cloud import decode as cloud_decode
    from edge_gateway.cloud import ingest as ing

    sec = _section(ctx)
    given = {"broker": broker, "dsn": dsn, "group": group, "client_id": client_id,
             "prefix": prefix, "batch_messages": batch_messages, "batch_delay_s": batch_delay_s,
             "batch_idle_s": batch_idle_s}
    merged = {**sec, **{k: v for k, v in given.items() if v is not None}}
    for need in ("broker", "dsn"):
        if not merged.get(need):
            raise GatewayError(f"--{need} is required", hint=f"or set cloud.{need} in the config")
    caps = ("max_message_bytes", "max_inflated_bytes")
    limits = cloud_decode.Limits(**{k: merged.pop(k) for k in caps if k in merged})
    try:
        opts = ing.IngestOptions(**merged, limits=limits)
        ingest = ing.Ingest(opts, leave=leave)
    except ValueError as err:
        raise GatewayError(str(err)) from err
    logfmt.setup(log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ingest.run(stop)


@cloud.command("status")
@click.option("--dsn", help="libpq connection string (or cloud.dsn).")
@with_context(json="Print one JSON object.")
def cloud_status(ctx: Context, dsn: str | None, as_json: bool) -> None:
    """Items, duplicates dropped, dead letters, gateways online/offline, newest item per
    gateway and the ingest lag (publish to commit of the last batch).

    Example:

        edge-gateway cloud status --dsn postgresql:///fleet --json
    """
    _need_cloud()
    import psycopg

    from edge_gateway.cloud.store import pg

    dsn = dsn or _section(ctx).get("dsn")
    if not dsn:
        raise GatewayError("--dsn is required", hint="or set cloud.dsn in the config")
    try:
        with pg.connect(dsn) as conn:
            st = pg.status(conn)
    except psycopg.errors.UndefinedTable as err:
        raise GatewayError("this database has no ingest schema yet",
                           hint="start `edge-gateway cloud ingest` on it once") from err
    except psycopg.Error as err:
        raise GatewayError(f"cannot read the database: {str(err).splitlines()[0]}",
                           hint="check --dsn and that PostgreSQL runs") from err

    def lines() -> Any:
        yield (f"items          {st['items']} (duplicates dropped {st['duplicates_dropped']},"
               f" messages {st['messages']})")
        reasons = ", ".join(f"{k} {v}" for k, v in st["dead_letters_by_reason"].items())
        yield f"dead letters   {st['dead_letters']}" + (f" ({reasons})" if reasons else "")
        yield (f"gateways       {len(st['gateways'])} (online {st['gateways_online']},"
               f" offline {st['gateways_offline']})")
        for g in st["gateways"]:
            yield (f"  {g['site']}/{g['gateway']}: {g['status']}, last seen {g['last_seen']},"
                   f" newest item {g['newest_item_at']}, items {g['items']}")
        yield f"lag            {st['lag_s']} s (last commit {st['last_commit_at']})"

    emit(st, as_json, lines())
