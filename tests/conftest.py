"""Shared test helpers (every fixture here uses real parts: files, sockets, processes)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
BIN = Path(sys.executable).parent


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running the CLI as a subprocess, isolated from /etc."""
    env = dict(os.environ)
    empty = tmp_path / "empty-config.toml"
    empty.write_text("## built-in defaults\n")
    env["EDGE_GATEWAY_CONFIG"] = str(empty)
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    return env
