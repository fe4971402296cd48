"""The root click group and the options every command shares.

Each command group lives in its own module of this package and registers itself on ``main``;
``edge_gateway/cli/__init__.py`` imports them.  Commands are thin: a few lines over a library
call.  Errors from the library (``GatewayError``) become one line on stderr and the error's exit
status, never a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
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
    click.echo(f"error: {err}", err=True)
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
