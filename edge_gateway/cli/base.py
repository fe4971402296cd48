"""The root click group and the options every command shares.

Each command group lives in its own module of this package and registers itself on ``main``;
``edge_gateway/cli/__init__.py`` imports them.  Commands are thin: a few lines over a library
call.  Errors from the library (``GatewayError``) become one line on stderr and the error's exit
status, never a traceback; so do click's usage errors and, at the top (:class:`GatewayGroup`),
every ``OSError``, ``sqlite3.Error``, ``OverflowError``, ``RecursionError``, ``ValueError`` and
missing optional module (exit 2).  ``EDGE_GATEWAY_TRACEBACK=1`` shows the traceback instead.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from edge_gateway.errors import GatewayError

DEFAULT_CONFIG = Path("/etc/edge-gateway/gateway.toml")
F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """What the root group knows: where the config and the database are."""

    def __init__(self, config_path: Path | None, config_explicit: bool, db: Path | None) -> None:
        self.config_path = config_path
        self.config_explicit = config_explicit
        self.db = db

    def load_config(self) -> Any:
        """Load the deployment config (built-in defaults when the default file is missing)."""
        from edge_gateway.config import load_config

        return load_config(self.config_path, required=self.config_explicit, db_override=self.db)


pass_ctx = click.make_pass_decorator(Context)


def fail(err: GatewayError) -> None:
    click.echo(f"error: {one_line(str(err))}", err=True)
    sys.exit(err.exit_code)


def handle_errors(func: F) -> F:
    """Turn a library ``GatewayError`` into one line on stderr and its exit status."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GatewayError as err:
            fail(err)

    return wrapper  # type: ignore[return-value]


def with_context(*, json: bool | str = False) -> Callable[[F], F]:
    """What every command over the library is wrapped in; the last decorator above its function.

    The :class:`Context` comes as the first argument, a ``GatewayError`` ends the command as
    one line on stderr (``handle_errors``), and with ``json`` (``True``, or the flag's help
    text) the command takes ``--json`` (``as_json``, see ``emit``), listed after its own options.
    """

    def decorate(func: F) -> F:
        command = pass_ctx(handle_errors(func))
        if json:
            command = (json_option() if json is True else json_option(json))(command)
        return cast(F, command)

    return decorate


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


def json_option(help: str = "Print JSON instead of text.") -> Callable[[F], F]:
    """The ``--json`` flag (``as_json``) of commands that print text by default; see ``emit``."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def emit(obj: Any, as_json: bool, text: str | Iterable[str] = (), *,
         empty: str | None = None) -> None:
    """Print ``obj`` as JSON with ``--json``, else ``text`` (one line, or lines).

    ``empty`` is printed instead of ``text`` when ``obj`` is empty (an empty list says why
    nothing is shown and what to do).  Pass ``text`` as a generator to format only when needed.
    """
    if as_json:
        echo_json(obj)
        return
    if empty is not None and not obj:
        click.echo(empty)
        return
    for line in [text] if isinstance(text, str) else text:
        click.echo(line)


#: Longest error line printed (a message quoting a huge input must not flood the terminal).
MAX_LINE = 400


def one_line(text: str) -> str:
    """``text`` on one line, at most :data:`MAX_LINE` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= MAX_LINE else flat[:MAX_LINE - 1] + "…"


def describe(exc: BaseException) -> tuple[str, int]:
    """One line naming what failed and why, and the exit status, for an error at the top."""
    if isinstance(exc, GatewayError):
        return str(exc), exc.exit_code
    if isinstance(exc, ModuleNotFoundError):
        name = (exc.name or "a module").split(".")[0]
        extra = {"matplotlib": "report", "zstandard": "zstd", "dbus_fast": "sim"}.get(name)
        hint = (f"install it: pip install 'edge-gateway[{extra}]'" if extra
                else f"install it: pip install {name}")
        return f"this command needs the Python module {name!r}, which is not installed ({hint})", 2
    if isinstance(exc, OSError):
        what = exc.filename if exc.filename is not None else "a file or device"
        why = exc.strerror or str(exc) or type(exc).__name__
        hint = ""
        if isinstance(exc, PermissionError):
            hint = " (run as a user allowed to use it, e.g. sudo -u edge-gateway edge-gateway …)"
        elif exc.errno == errno.ENOENT:
            hint = " (check the path; a folder is not created for you)"
        elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = " (free some space)"
        return f"{what}: {why}{hint}", 2
    if isinstance(exc, sqlite3.Error):
        return (f"database error: {exc} (`edge-gateway db check` inspects the database)", 2)
    if isinstance(exc, RecursionError):
        return "the input is nested too deeply to read", 2
    if isinstance(exc, OverflowError):
        return f"a number or date is out of range: {exc}", 2
    if isinstance(exc, ValueError):
        return f"bad value: {exc}", 2
    return (f"internal error ({type(exc).__name__}: {exc}); please report it"
            " (EDGE_GATEWAY_TRACEBACK=1 shows where)", 2)


def _fail_line(message: str, code: int) -> None:
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(code)


class GatewayGroup(click.Group):
    """The root group: every error ends as one line on stderr, never as a traceback.

    Click's own usage errors are printed as one line too (with where to find the help), and
    every exception a command lets through becomes :func:`describe`'s line.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit,
                KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as err:  # every other error is one line, never a traceback
            if os.environ.get("EDGE_GATEWAY_TRACEBACK") == "1":
                raise
            _fail_line(*describe(err))

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as err:
            where = err.ctx.command_path if err.ctx is not None else (prog_name or "edge-gateway")
            _fail_line(f"{err.format_message()} (see: {where} --help)", err.exit_code)
        except click.ClickException as err:
            _fail_line(err.format_message(), err.exit_code)
        except (click.Abort, EOFError, KeyboardInterrupt):
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _override_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    obj = ctx.find_object(Context)
    if value is not None and obj is not None:
        obj.config_path, obj.config_explicit = value, True


def _override_db(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    obj = ctx.find_object(Context)
    if value is not None and obj is not None:
        obj.db = value


def common_options() -> list[click.Option]:
    """``-c``/``--config`` and ``--db`` as options of a subcommand (they override the root
    group's), so that ``edge-gateway status --db X`` works as ``edge-gateway --db X status``."""
    return [
        click.Option(["-c", "--config", "_config_override"], expose_value=False,
                     type=click.Path(dir_okay=False, path_type=Path), default=None,
                     callback=_override_config,
                     help="Deployment config (TOML); the same as before the command."),
        click.Option(["--db", "_db_override"], expose_value=False,
                     type=click.Path(dir_okay=False, path_type=Path), default=None,
                     callback=_override_db,
                     help="Use this SQLite database; the same as before the command."),
    ]


def add_common_options(group: click.Group) -> None:
    """Give every command under ``group`` (groups too) ``-c`` and ``--db``; call once, after
    every command module has registered its commands."""
    for cmd in group.commands.values():
        if not any(getattr(p, "name", None) == "_db_override" for p in cmd.params):
            cmd.params.extend(common_options())
        if isinstance(cmd, click.Group):
            add_common_options(cmd)


@click.group(cls=GatewayGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Deployment config (TOML). Default: $EDGE_GATEWAY_CONFIG or "
    "/etc/edge-gateway/gateway.toml; built-in defaults when that file does not exist.",
)
@click.option(
    "--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Use this SQLite database instead of the one the config names.",
)
@click.version_option(package_name="edge-gateway")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, db: Path | None) -> None:
    """edge-gateway: health devices in, readings kept, summaries and alerts synced.

    Example:

        edge-gateway -c /etc/edge-gateway/gateway.toml status
    """
    explicit = config_path is not None
    if config_path is None:
        env = os.environ.get("EDGE_GATEWAY_CONFIG")
        if env:
            config_path, explicit = Path(env), True
        else:
            config_path = DEFAULT_CONFIG
    ctx.obj = Context(config_path, explicit, db)
