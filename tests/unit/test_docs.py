"""Every CLI command documents itself with an Example (sqlite-utils' habit)."""

from __future__ import annotations

import click

from edge_gateway.cli import main


def walk(cmd: click.Command, path: str = "edge-gateway") -> list[tuple[str, click.Command]]:
    out = [(path, cmd)]
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            out.extend(walk(sub, f"{path} {name}"))
    return out


def test_every_command_help_has_an_example() -> None:
    missing = [path for path, cmd in walk(main) if "Example:" not in (cmd.help or "")]
    assert not missing, f"commands without an Example: in their help: {missing}"


def test_every_option_is_described() -> None:
    undocumented = []
    for path, cmd in walk(main):
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.help and p.name not in ("help",):
                undocumented.append(f"{path} {p.opts[0]}")
    assert not undocumented, f"options without help text: {undocumented}"
