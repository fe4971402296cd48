"""Issue 12: no traceback reachable from the command line.

Walks click's command tree and runs EVERY command with a set of bad arguments: an unknown
option, a config that is a folder / missing / nested 1000 deep, hostile values in every
argument and every option (a number too big for SQLite, 5000 characters, an empty string,
text where a number belongs), against a missing database and against a real one.  A failure
must be one line on stderr (``error: ...``) and exit 1 or 2; against a real database a
hostile-but-valid value may also succeed (exit 0).  Never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edge_gateway.cli import main
from edge_gateway.store import Store

HOSTILE = ("99999999999999999999999", "x" * 5000, "", "-1", "\u202eevil\u00ff")
#: Commands that act on the world beyond their arguments (a daemon, the demo, the radio, the
#: network): they get only the bad options that must stop them before they start.
LIVE = {"run", "demo", "devices scan", "devices pair", "sync now"}
COMMON = {"_config_override", "_db_override", "help"}


def leaves(cmd: click.Command = main, path: str = "") -> Iterator[tuple[str, click.Command]]:
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from leaves(sub, f"{path} {name}".strip())
    else:
        yield path, cmd


COMMANDS = dict(leaves())


def required_args(cmd: click.Command, value: str) -> list[str]:
    return [value for p in cmd.params if isinstance(p, click.Argument) and p.required]


def value_options(cmd: click.Command) -> list[click.Option]:
    return [p for p in cmd.params if isinstance(p, click.Option) and not p.is_flag
            and p.name not in COMMON]


def wrong_type(opt: click.Option) -> str | None:
    """A value of the wrong kind for a typed option (None for free text)."""
    t = opt.type
    if isinstance(t, click.Choice):
        return "no-such-choice"
    if isinstance(t, click.types.IntParamType | click.types.FloatParamType):
        return "not-a-number"
    if isinstance(t, click.IntRange | click.FloatRange):
        return "99999999999999999999999"
    return None


def cases(path: str, cmd: click.Command, tmp: Path) -> Iterator[tuple[list[str], bool]]:
    """(argv after the command, whether exit 0 is acceptable)."""
    words = path.split()
    yield [*words, "--no-such-option"], False
    yield [*words, "-c", str(tmp)], False  # a folder
    yield [*words, "-c", str(tmp / "missing.toml"), *required_args(cmd, "a")], False
    yield [*words, "-c", str(tmp / "deep.toml"), *required_args(cmd, "a")], False
    for opt in value_options(cmd):
        bad = wrong_type(opt)
        if bad is not None:
            yield [*words, opt.opts[-1], bad, *required_args(cmd, "a")], False
    if path in LIVE:
        return
    for value in HOSTILE:
        args = required_args(cmd, value)
        if args:
            yield [*words, "--db", str(tmp / "missing.db"), *args], False
            yield [*words, "--db", str(tmp / "real.db"), *args], True
        for opt in value_options(cmd):
            if wrong_type(opt) is None:
                yield [*words, opt.opts[-1], value, *required_args(cmd, value)], True


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder to run in (relative file names land here) with a real database, a config
    nested too deeply, and built-in defaults for the config."""
    Store.open(tmp_path / "real.db").close()
    (tmp_path / "deep.toml").write_text("a = " + "[" * 1000 + "]" * 1000 + "\n")
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    monkeypatch.setenv("EDGE_GATEWAY_CONFIG", str(empty))
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_tree_is_walked() -> None:
    # Every group's commands are reached (a new group is covered without editing this test).
    assert {"status", "decode", "report", "export", "devices remove", "alerts ack",
            "analyze hrv", "sync now", "db check"} <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_bad_arguments_give_one_line(path: str, place: Path) -> None:
    cmd = COMMANDS[path]
    runner = CliRunner()
    seen = 0
    for argv, may_succeed in cases(path, cmd, place):
        res = runner.invoke(main, argv, catch_exceptions=False)  # a traceback fails the test
        shown = " ".join(a if len(a) < 40 else a[:20] + "…" for a in argv)
        if res.exit_code == 0 and may_succeed:
            continue
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.exit_code in (1, 2), (shown, res.exit_code, res.output)
        assert len(lines) == 1 and lines[0].startswith("error: "), (shown, res.stderr)
        assert len(lines[0]) <= 420, (shown, lines[0][:200])
        seen += 1
    assert seen >= 4
