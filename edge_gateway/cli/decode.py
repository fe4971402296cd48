"""``edge-gateway decode``: decode one raw Bluetooth SIG payload, as a technician would.

Never reads the deployment config.  A payload that does not fit its specification exits with
status 2 and one line naming the characteristic, the offset and what was wrong.
"""

from __future__ import annotations

import string
import sys
from typing import Any

import click

from edge_gateway.cli.base import emit, fail, handle_errors, json_option, main
from edge_gateway.drivers import registry
from edge_gateway.errors import MalformedPayload, UsageError

_HEX = frozenset(string.hexdigits)


def parse_hex(parts: tuple[str, ...] | list[str]) -> bytes:
    """``"16 48:02"``-style text (spaces, colons, dashes, an optional 0x) -> bytes."""
    text = "".join(parts)
    for sep in (" ", ":", "-", "\t", "\n", ","):
        text = text.replace(sep, "")
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    bad = next((i for i, ch in enumerate(text) if ch not in _HEX), None)
    if bad is not None:
        raise UsageError(f"HEX: {text[bad]!r} at position {bad} is not a hex digit")
    if len(text) % 2:
        raise UsageError(f"HEX: odd number of hex digits ({len(text)}): a byte is two digits")
    return bytes.fromhex(text)


def _human(value: Any, indent: str) -> list[str]:
    """Readable lines: booleans objects list only what is set, lists are numbered."""
    lines: list[str] = []
    if isinstance(value, dict):
        if value and all(isinstance(v, bool) for v in value.values()):
            on = [k for k, v in value.items() if v]
            return [f"{indent}{', '.join(on) if on else '(none set)'}"]
        for k, v in value.items():
            if isinstance(v, dict | list) and v:
                lines.append(f"{indent}{k}:")
                lines.extend(_human(v, indent + "  "))
            else:
                lines.append(f"{indent}{k}: {_scalar(v)}")
        return lines
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return [f"{indent}{', '.join(_scalar(v) for v in value)}"]
        for i, v in enumerate(value, 1):
            lines.append(f"{indent}[{i}]")
            lines.extend(_human(v, indent + "  "))
        return lines
    return [f"{indent}{_scalar(value)}"]


def _scalar(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return ", ".join(_scalar(x) for x in v) if v else "(none)"
    if isinstance(v, dict):
        return "(none)"
    return str(v)


#: Most hex text read from standard input (a BLE payload is at most 512 bytes).
MAX_STDIN_CHARS = 64 * 1024
#: Bytes of a bad payload quoted in the error line.
QUOTED_BYTES = 16


def _read_stdin() -> list[str]:
    text = sys.stdin.read(MAX_STDIN_CHARS + 1)
    if len(text) > MAX_STDIN_CHARS:
        raise UsageError(f"HEX: standard input is longer than {MAX_STDIN_CHARS} characters",
                         hint="a Bluetooth payload is at most 512 bytes")
    if not text.strip():
        raise UsageError("HEX: standard input is empty", hint="pipe the payload in as hex")
    return [text]


def _prefix(raw: bytes) -> str:
    """``"1648020400"``, or ``"of 900 bytes, starting 1648…"`` for a long one."""
    if len(raw) <= QUOTED_BYTES:
        return raw.hex()
    return f"of {len(raw)} bytes, starting {raw[:QUOTED_BYTES].hex()}…"


@main.command()
@click.argument("characteristic", metavar="CHAR")
@click.argument("hex_parts", metavar="HEX", nargs=-1, required=True)
@json_option("Print one JSON object.")
@handle_errors
def decode(characteristic: str, hex_parts: tuple[str, ...], as_json: bool) -> None:
    """Decode a raw payload of characteristic CHAR (16-bit UUID in hex, e.g. 2a37, or a
    vendor's 128-bit UUID).

    HEX is the payload as hex digits; spaces and colons are allowed (quote it, or give it
    as several arguments); "-" reads it from standard input.  A payload that does not fit
    the specification exits with status 2 and one line: characteristic, offset, what was
    wrong.

    Example:

        edge-gateway decode 2a37 "16 48 02 04 00 04" --json

        echo 16480204 | edge-gateway decode 2a37 -
    """
    try:
        uuid = registry.char_key(characteristic)
    except ValueError as err:
        raise UsageError(f"CHAR: {err}") from None
    codecs = registry.current().codecs
    codec = codecs.get(uuid)
    if codec is None:
        known = ", ".join(sorted(codecs))
        raise UsageError(f"CHAR: no decoder for {uuid}", hint=f"known: {known}")
    raw = parse_hex(_read_stdin() if hex_parts == ("-",) else hex_parts)
    try:
        decoded = codec.from_bytes(raw)
    except MalformedPayload as err:
        # The payload is named by its length and first bytes only: a long one would flood
        # the line (and a log that keeps it).
        fail(UsageError(f"{uuid} ({codec.name}): offset {err.offset}: {err.reason}"
                        f" (payload {_prefix(err.raw)})"))
        return
    obj = decoded.to_json()
    label = f"0x{uuid.upper()}" if len(uuid) == 4 else uuid
    emit(obj, as_json, [f"{codec.name} ({label}), {len(raw)} bytes", *_human(obj, "  ")])
