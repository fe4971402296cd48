"""Golden byte vectors: tests/golden/<characteristic>/<case>/ holds ``input.hex`` and either
``expected.json`` (the decoded object: every key listed must be present with that value) or
``expected.err`` (``offset <n>: <reason>`` of the MalformedPayload).  A new case is a new
folder; the expected values were worked out by hand from the specifications.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_gateway.cli.decode import parse_hex
from edge_gateway.drivers.registry import CODECS
from edge_gateway.errors import MalformedPayload

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = sorted(p for p in GOLDEN.glob("*/*") if (p / "input.hex").is_file())
_MISSING = "<missing>"


def test_golden_tree_is_not_empty() -> None:
    assert len(CASES) > 100
    assert {p.parent.name for p in CASES} >= {"2a37", "2aa7", "2a18", "2a52", "2a35", "2a5e"}


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden(case: Path) -> None:
    char = case.parent.name
    raw = parse_hex([(case / "input.hex").read_text()])
    codec = CODECS[char]
    err_file = case / "expected.err"
    if err_file.exists():
        with pytest.raises(MalformedPayload) as info:
            codec.from_bytes(raw)
        err = info.value
        assert f"offset {err.offset}: {err.reason}" == err_file.read_text().strip()
        assert err.characteristic == char
        assert err.raw == raw
        return
    expected = json.loads((case / "expected.json").read_text())
    decoded = codec.from_bytes(raw)
    got = decoded.to_json()
    assert {k: got.get(k, _MISSING) for k in expected} == expected
    # Re-encoding the decoded object gives back the exact bytes (flags, precision, CRC).
    assert decoded.to_bytes() == raw
