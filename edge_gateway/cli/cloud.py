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
from edge_gateway.errors import ConfigError, GatewayError, UsageError

_KEYS = {"broker": str, "dsn": str, "group": str, "client_id": str, "prefix": str,
         "batch_messages": int, "batch_delay_s": float, "batch_idle_s": float,
         "receive_maximum": int,
         "session_expiry_s": int, "ca_file": str, "username": str, "password": str,
         "max_message_bytes": int, "max_inflated_bytes": int,
         # the clinic console (cloud console)
         "listen": str, "signing_key": str, "stale_hours": float, "silent_hours": float}


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


# ---------------------------------------------------------------------- the clinic console
def _dsn(ctx: Context, dsn: str | None) -> str:
    dsn = dsn or _section(ctx).get("dsn")
    if not dsn:
        raise UsageError("--dsn is required", hint="or set cloud.dsn in the config")
    return str(dsn)


def _console_db(dsn: str) -> Any:
    """A migrated connection wrapped for the console's store (one line on failure)."""
    import psycopg

    from edge_gateway.cloud.store import console as cstore
    from edge_gateway.cloud.store import pg

    try:
        conn = pg.connect(dsn)
        pg.migrate(conn)
    except psycopg.Error as err:
        raise GatewayError(f"cannot open the database: {str(err).splitlines()[0]}",
                           hint="check --dsn and that PostgreSQL runs") from err
    return cstore.Db(conn)


def _read_password(path: str) -> str:
    """The password file's first line, without its newline."""
    try:
        with open(path, encoding="utf-8") as f:
            line = f.readline()
    except OSError as err:
        raise UsageError(f"cannot read the password file {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise UsageError(f"the password file {path} is not UTF-8 text") from err
    password = line[:-1] if line.endswith("\n") else line
    password = password[:-1] if password.endswith("\r") else password
    if len(password) < 8:
        raise UsageError(f"the password in {path} is shorter than 8 characters",
                           hint="its first line is the password")
    return password


_NAME = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"


@cloud.group("users")
def cloud_users() -> None:
    """Accounts of the clinic console (argon2id passwords, roles, granted sites).

    Example:

        edge-gateway cloud users add dr-okafor --role clinician --site clinic-3 \\
            --password-file /run/secrets/okafor --dsn postgresql:///fleet
    """


@cloud_users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "clinician"]), required=True,
              help="admin sees every site; a clinician only the granted ones.")
@click.option("--site", "sites", multiple=True,
              help="A site the user may see (repeat; may be granted before it sends data).")
@click.option("--password-file", required=True, type=click.Path(dir_okay=False),
              help="A file whose first line is the password.")
@click.option("--dsn", help="libpq connection string (or cloud.dsn).")
@with_context()
def cloud_users_add(ctx: Context, name: str, role: str, sites: tuple[str, ...],
                    password_file: str, dsn: str | None) -> None:
    """Create a console account (the schema is created or migrated first).

    Example:

        edge-gateway cloud users add dr-okafor --role clinician --site clinic-3 \\
            --password-file okafor.pw --dsn postgresql:///fleet
    """
    import re

    _need_cloud()
    if not re.match(_NAME, name):
        raise UsageError(f"user name {name!r} is not allowed",
                           hint="letters, digits and . _ @ - (at most 64)")
    if role == "clinician" and not sites:
        raise UsageError("a clinician needs at least one --site")
    for s in sites:
        if not s or len(s) > 200:
            raise UsageError(f"site {s!r} is not a site id")
    from edge_gateway.cloud.console.auth import hash_password
    from edge_gateway.cloud.store import console as cstore

    password = _read_password(password_file)
    db = _console_db(_dsn(ctx, dsn))
    with db.conn:
        if not cstore.add_user(db, name, role, sites, hash_password(password)):
            raise UsageError(f"user {name!r} already exists",
                               hint="`edge-gateway cloud users disable` it or choose "
                               "another name")
        cstore.audit(db, "cli", "user.add", detail={"user": name, "role": role,
                                                    "sites": sorted(sites)})
    click.echo(f"added {name} ({role}{': ' + ', '.join(sorted(sites)) if sites else ''})")


@cloud_users.command("list")
@click.option("--dsn", help="libpq connection string (or cloud.dsn).")
@with_context(json="Print a JSON list.")
def cloud_users_list(ctx: Context, dsn: str | None, as_json: bool) -> None:
    """Every account with its role, sites and state.

    Example:

        edge-gateway cloud users list --dsn postgresql:///fleet
    """
    _need_cloud()
    from edge_gateway.cloud.store import console as cstore

    db = _console_db(_dsn(ctx, dsn))
    with db.conn:
        users = cstore.list_users(db)
    rows = [{"name": u.name, "role": u.role, "sites": list(u.sites),
             "disabled": u.disabled,
             "created_at": u.created_at.isoformat() if u.created_at else None} for u in users]

    def line(u: Any) -> str:
        state = "disabled" if u.disabled else "enabled"
        where = ", ".join(u.sites) or ("(all sites)" if u.role == "admin" else "-")
        return f"{u.name:<24} {u.role:<10} {state:<9} {where}"

    emit(rows, as_json, [line(u) for u in users] or ["no users"])


@cloud_users.command("disable")
@click.argument("name")
@click.option("--dsn", help="libpq connection string (or cloud.dsn).")
@with_context()
def cloud_users_disable(ctx: Context, name: str, dsn: str | None) -> None:
    """Disable an account and end its sessions at once (its audit trail stays).

    Example:

        edge-gateway cloud users disable dr-okafor --dsn postgresql:///fleet
    """
    _need_cloud()
    from edge_gateway.cloud.store import console as cstore

    db = _console_db(_dsn(ctx, dsn))
    with db.conn:
        if not cstore.disable_user(db, name):
            raise UsageError(f"no user {name!r}", hint="`edge-gateway cloud users list`")
        cstore.audit(db, "cli", "user.disable", detail={"user": name})
    click.echo(f"disabled {name}")


@cloud.group("keys")
def cloud_keys() -> None:
    """The console's Ed25519 signing key for commands to hubs.

    Example:

        edge-gateway cloud keys generate --out /etc/edge-gateway/console.key
    """


@cloud_keys.command("generate")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the private key (a new file, mode 0600).")
@click.option("--force", is_flag=True, help="Replace an existing file.")
def cloud_keys_generate(out: str, force: bool) -> None:
    """Write a new private key and print the line for each hub's config.

    Example:

        edge-gateway cloud keys generate --out console.key
    """
    from pathlib import Path

    from edge_gateway import commands
    from edge_gateway.care.files import private_output

    pem, public = commands.generate_keypair()
    try:
        with private_output(Path(out), force=force) as f:  # 0600, O_EXCL unless --force
            f.write(pem)
    except OSError as err:
        raise GatewayError(f"cannot write {out}: {err.strerror}") from err
    click.echo(f"# [commands] in each hub's gateway.toml:\nconsole_public_key = \"{public}\"")


@cloud.command("console")
@click.option("--dsn", help="libpq connection string (or cloud.dsn).")
@click.option("--listen", help="HOST:PORT to serve on (or cloud.listen; default 127.0.0.1:8080)."
              " Plain HTTP: keep it on loopback behind a TLS proxy.")
@click.option("--signing-key", type=click.Path(dir_okay=False),
              help="Ed25519 private key (cloud keys generate): enables commands to hubs.")
@click.option("--broker", help="mqtt(s)://HOST:PORT the commands are published to (or "
              "cloud.broker); needed with --signing-key.")
@click.option("--prefix", help="Topic prefix of the hubs (default edge-gateway).")
@click.option("--stale-hours", type=click.FloatRange(0.1, 24 * 365),
              help="Now lists patients without data this long (default 24).")
@click.option("--silent-hours", type=click.FloatRange(0.05, 24 * 365),
              help="Now lists hubs without a message this long (default 2).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True,
              help="debug also logs each command published (never a patient's data).")
@with_context()
def cloud_console(ctx: Context, dsn: str | None, listen: str | None, signing_key: str | None,
                  broker: str | None, prefix: str | None, stale_hours: float | None,
                  silent_hours: float | None, log_level: str) -> None:
    """Serve the clinic console (web pages over the ingest database) until SIGTERM.

    Creates or migrates the schema first.  Without --signing-key the pages work and the
    actions (acknowledge, thresholds) are shown disabled.

    Example:

        edge-gateway cloud console --dsn postgresql:///fleet --listen 127.0.0.1:8080 \\
            --signing-key console.key --broker mqtt://127.0.0.1:1883
    """
    _need_cloud()
    from datetime import timedelta

    from edge_gateway import logfmt
    from edge_gateway.cloud.console import serve

    sec = _section(ctx)
    dsn = _dsn(ctx, dsn)
    _console_db(dsn).conn.close()  # reachable and migrated, or one line now
    listen = listen or sec.get("listen") or "127.0.0.1:8080"
    signing_key = signing_key or sec.get("signing_key")
    broker = broker or sec.get("broker")
    host, port = serve.parse_listen(str(listen))
    commander = None
    if signing_key:
        if not broker:
            raise UsageError("--signing-key needs --broker (where commands are published)",
                               hint="or set cloud.broker in the config")
        commander = serve.make_commander(
            str(signing_key), broker=str(broker),
            prefix=str(prefix or sec.get("prefix") or "edge-gateway"),
            username=sec.get("username"), password=sec.get("password"),
            ca_file=sec.get("ca_file"))
    logfmt.setup(log_level)
    settings = serve.settings(
        dsn, host=host, commander=commander,
        stale_after=timedelta(hours=stale_hours or float(sec.get("stale_hours", 24))),
        silent_after=timedelta(hours=silent_hours or float(sec.get("silent_hours", 2))))
    serve.run(settings, host, port, log_level)
