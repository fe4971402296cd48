"""edge-gateway demo."""

from __future__ import annotations

from pathlib import Path

import click

from edge_gateway.cli.base import Context, main, with_context
from edge_gateway.errors import ConfigError


@main.command()
@click.option("--duration", type=float, default=None,
              help="Stop after this many seconds (default: run until Ctrl-C).")
@click.option("--scenario", default="demo", show_default=True,
              help="Simulator scenario (a name from hardware-sim's scenarios, or a file).")
@click.option("--broker", default=None,
              help="Publish to this broker (mqtt://HOST:PORT or mqtts://HOST:PORT) instead of "
              "a local mosquitto on a free port.")
@with_context()
def demo(ctx: Context, duration: float | None, scenario: str, broker: str | None) -> None:
    """Run the gateway against simulated devices on a virtual Bluetooth stack.

    Starts a private D-Bus with a virtual BlueZ serving one of each simulated device (with
    about 14 days of stored history, an AF episode and a night-time low scripted in), a
    serial pulse oximeter on a pty, a local mosquitto when installed, and the gateway against
    them, and shows a live status. Run again on the same database, it continues.

    Example:

        edge-gateway --db var/demo.db demo --duration 60
    """
    from edge_gateway import logfmt
    from edge_gateway.config import parse_broker_url
    from edge_gateway.runtime.demo import run_demo

    logfmt.setup("warning")
    if broker is not None:
        try:
            parse_broker_url(broker)
        except ValueError as err:
            raise ConfigError("--broker", "", str(err)) from err
    cfg = ctx.load_config()
    db = Path(ctx.db) if ctx.db else Path("var/demo.db")
    run_demo(db, duration=duration, scenario_name=scenario, broker_url=broker, base=cfg)
