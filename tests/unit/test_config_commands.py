"""``[commands]``: the console's public key is checked at load, named with file, key and reason."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from edge_gateway.commands import generate_keypair
from edge_gateway.config import console_key, load_config
from edge_gateway.errors import ConfigError

_, PUB = generate_keypair()


def _load(tmp_path: Path, text: str) -> object:
    p = tmp_path / "gateway.toml"
    p.write_text(text)
    return load_config(p, required=True)


def test_no_key_means_commands_off(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "absent.toml")
    assert not cfg.commands.enabled and console_key(cfg) is None


def test_a_key_inline_or_in_a_file(tmp_path: Path) -> None:
    p = tmp_path / "gateway.toml"
    p.write_text(f'[commands]\nconsole_public_key = "{PUB}"\n')
    cfg = load_config(p, required=True)
    assert cfg.commands.enabled and console_key(cfg) == PUB
    keyfile = tmp_path / "console.pub"
    keyfile.write_text(PUB + "\n")
    p.write_text(f'[commands]\nconsole_public_key_file = "{keyfile}"\n')
    assert console_key(load_config(p, required=True)) == PUB


@pytest.mark.parametrize("value,reason", [
    ("not base64!", "commands.console_public_key: not an Ed25519 public key: not valid base64"),
    (base64.b64encode(b"x" * 31).decode(),
     "commands.console_public_key: not an Ed25519 public key: an Ed25519 public key is 32 "
     "bytes, this one is 31"),
])
def test_a_bad_key_is_refused_with_file_key_and_reason(tmp_path: Path, value: str,
                                                       reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, f'[commands]\nconsole_public_key = "{value}"\n')
    assert str(err.value).startswith(f"{tmp_path / 'gateway.toml'}: {reason}")


def test_key_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"console_public_key_file: cannot read .*absent"):
        _load(tmp_path, f'[commands]\nconsole_public_key_file = "{tmp_path / "absent"}"\n')
    bad = tmp_path / "bad.pub"
    bad.write_text("AAAA\n")
    with pytest.raises(ConfigError, match=r"console_public_key_file: not an Ed25519 .* is 3"):
        _load(tmp_path, f'[commands]\nconsole_public_key_file = "{bad}"\n')
    with pytest.raises(ConfigError, match="give either"):
        _load(tmp_path, f'[commands]\nconsole_public_key = "{PUB}"\n'
              f'console_public_key_file = "{bad}"\n')
