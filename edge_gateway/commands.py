"""Signed commands from the clinic console to one hub: the contract both sides code against.

The console acknowledges an alert or changes a patient's threshold by publishing one retained
message per command on ``<prefix>/<site>/<gateway>/cmd/<command id>`` (QoS 1, MQTT 5 message
expiry).  The payload is the command as JSON plus ``"sig"``: a base64 Ed25519 signature over
:func:`canonical_bytes` (the command without ``sig``, keys sorted, no spaces, UTF-8).  The hub
pins the console's public key in its config (``[commands] console_public_key``, the base64 of the
raw 32-byte key) and accepts a command only when the signature holds, the gateway and site are
its own, the id equals the topic's last level and ``expires_at`` has not passed.  Replays (an id
already seen) are the applier's business: they need the database.

Pure: no I/O.  ``cryptography`` is imported inside the functions that need it, so a hub without
``[commands]`` configured never loads it.  See docs/mqtt.md ("Commands from the console").
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from edge_gateway.errors import GatewayError

VERSION = 1
COMMANDS = frozenset({"alert.ack", "threshold.set", "threshold.reset"})
#: Fields of a command (without ``sig``), each with its JSON type.
FIELDS: dict[str, type] = {
    "v": int, "id": str, "command": str, "gateway": str, "site": str, "patient": str,
    "args": dict, "actor": str, "issued_at": str, "expires_at": str,
}
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
#: The longest payload a hub reads; a command is a few hundred bytes.
MAX_PAYLOAD = 16 * 1024
_MAX_TEXT = 200


class CommandRefused(GatewayError, ValueError):
    """A command the hub will not apply; ``reason`` is one line ("bad signature", "expired",
    "wrong gateway", "replayed", "malformed: ...").

    ``command`` holds the fields read before the refusal (possibly empty), so that the refusal
    can still be reported under the command's id and patient when those were readable;
    ``signed`` is True when the signature held (the fields are the console's, not a forger's).
    """

    def __init__(self, reason: str, *, command: dict[str, Any] | None = None,
                 signed: bool = False) -> None:
        self.reason = reason
        self.command: dict[str, Any] = dict(command or {})
        self.signed = signed
        super().__init__(f"command refused: {reason}")


def command_topic(prefix: str, site: str, gateway: str, command_id: str) -> str:
    return f"{prefix}/{site}/{gateway}/cmd/{command_id}"


def format_time(t: datetime) -> str:
    """A UTC timestamp as the contract writes it (``YYYY-MM-DDTHH:MM:SS.ffffffZ``)."""
    if t.tzinfo is None:
        raise CommandRefused("malformed: a naive datetime (give a UTC time)")
    return t.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: str, field: str) -> datetime:
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise CommandRefused(f"malformed: {field} {text!r} is not YYYY-MM-DDTHH:MM:SS.ffffffZ"
                             ) from None


def _text(value: object, what: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty) or len(value) > _MAX_TEXT:
        raise CommandRefused(f"malformed: {what} must be a non-empty string of at most "
                             f"{_MAX_TEXT} characters")
    return value


def check_args(command: str, args: object) -> dict[str, Any]:
    """The arguments of ``command``, checked (types and names only; the hub checks meaning)."""
    if command not in COMMANDS:
        raise CommandRefused(f"malformed: unknown command {command!r} "
                             f"(known: {', '.join(sorted(COMMANDS))})")
    if not isinstance(args, dict):
        raise CommandRefused("malformed: args must be an object")
    expected = {"alert.ack": {"alert_id", "key"}, "threshold.set": {"key", "value"},
                "threshold.reset": {"key"}}[command]
    if set(args) != expected:
        raise CommandRefused(f"malformed: {command} takes args {sorted(expected)}, "
                             f"got {sorted(args)}")
    if command == "alert.ack":
        alert_id = args["alert_id"]
        if not isinstance(alert_id, int) or isinstance(alert_id, bool) or alert_id < 1:
            raise CommandRefused("malformed: alert.ack alert_id must be a positive integer")
        _text(args["key"], "alert.ack key")
    elif command == "threshold.set":
        _text(args["key"], "threshold.set key")
        _text(args["value"], "threshold.set value")
    elif args["key"] is not None:
        _text(args["key"], "threshold.reset key")
    return dict(args)


def new_command(
    *, command: str, gateway: str, site: str, patient: str, args: dict[str, Any], actor: str,
    issued_at: datetime, ttl_s: float, command_id: str | None = None,
) -> dict[str, Any]:
    """An unsigned command; raises :class:`CommandRefused` ("malformed: ...") on bad input."""
    if not ttl_s > 0:
        raise CommandRefused(f"malformed: ttl_s must be positive, got {ttl_s}")
    cmd: dict[str, Any] = {
        "v": VERSION, "id": command_id if command_id is not None else uuid.uuid4().hex,
        "command": command, "gateway": gateway, "site": site, "patient": patient,
        "args": check_args(command, args), "actor": actor,
        "issued_at": format_time(issued_at),
        "expires_at": format_time(issued_at + timedelta(seconds=ttl_s)),
    }
    _check_fields(cmd)
    return cmd


def canonical_bytes(cmd: dict[str, Any]) -> bytes:
    """The bytes the signature covers: every field but ``sig``, sorted, compact, UTF-8."""
    return json.dumps({k: v for k, v in cmd.items() if k != "sig"}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode()


def sign(cmd: dict[str, Any], private_key_pem: bytes) -> bytes:
    """The message payload: ``cmd`` as JSON plus ``sig`` (base64 Ed25519 over the canonical
    bytes)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the signing key is not an Ed25519 private key "
                         "(make one with `edge_gateway.commands.generate_keypair`)")
    body = {k: v for k, v in cmd.items() if k != "sig"}
    _check_fields(body)
    sig = base64.b64encode(key.sign(canonical_bytes(body))).decode("ascii")
    return json.dumps({**body, "sig": sig}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def decode_public_key(public_key: str) -> bytes:
    """The raw 32 bytes of a base64 Ed25519 public key; ValueError with the reason."""
    try:
        raw = base64.b64decode(public_key.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return raw


def verify(
    payload: bytes, public_key: str, *, gateway: str, site: str, topic_command_id: str,
    now: datetime,
) -> dict[str, Any]:
    """The command (without ``sig``) when it may be applied; raises :class:`CommandRefused`.

    Checked in this order: well-formed, signature, gateway and site, id against the topic,
    expiry.  A refusal carries what could be read (``err.command``) for the report.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if len(payload) > MAX_PAYLOAD:
        raise CommandRefused(f"malformed: {len(payload)} bytes (at most {MAX_PAYLOAD})")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CommandRefused(f"malformed: not JSON ({e.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise CommandRefused("malformed: not a JSON object")
    readable = {k: doc[k] for k in ("id", "command", "patient", "actor")
                if isinstance(doc.get(k), str) and len(doc[k]) <= _MAX_TEXT}
    sig_text = doc.pop("sig", None)
    signed = False
    try:
        _check_fields(doc)
        if not isinstance(sig_text, str):
            raise CommandRefused("malformed: no sig")
        try:
            sig = base64.b64decode(sig_text, validate=True)
        except (binascii.Error, ValueError):
            raise CommandRefused("malformed: sig is not base64") from None
        try:
            key = Ed25519PublicKey.from_public_bytes(decode_public_key(public_key))
        except ValueError as e:
            raise CommandRefused(f"the console key in [commands] is unusable: {e}") from None
        try:
            key.verify(sig, canonical_bytes(doc))
        except InvalidSignature:
            raise CommandRefused("bad signature") from None
        signed = True
        if doc["gateway"] != gateway:
            raise CommandRefused("wrong gateway")
        if doc["site"] != site:
            raise CommandRefused("wrong site")
        if doc["id"] != topic_command_id:
            raise CommandRefused("id does not match the topic")
        if parse_time(doc["expires_at"], "expires_at") <= now:
            raise CommandRefused("expired")
    except CommandRefused as e:
        e.command, e.signed = readable, signed
        raise
    return doc


def _check_fields(cmd: dict[str, Any]) -> None:
    missing = [k for k in FIELDS if k not in cmd]
    if missing:
        raise CommandRefused(f"malformed: missing {', '.join(missing)}")
    extra = sorted(set(cmd) - set(FIELDS))
    if extra:
        raise CommandRefused(f"malformed: unknown field {', '.join(extra)}")
    for name, kind in FIELDS.items():
        value = cmd[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CommandRefused(f"malformed: {name} must be {kind.__name__}")
    if cmd["v"] != VERSION:
        raise CommandRefused(f"malformed: version {cmd['v']} (this hub reads {VERSION})")
    for name in ("id", "gateway", "site", "patient", "actor"):
        _text(cmd[name], name)
    if any(c in cmd["id"] for c in "/+#") or not cmd["id"].isprintable():
        raise CommandRefused("malformed: id must be usable as one MQTT topic level")
    check_args(cmd["command"], cmd["args"])
    issued = parse_time(cmd["issued_at"], "issued_at")
    if parse_time(cmd["expires_at"], "expires_at") <= issued:
        raise CommandRefused("malformed: expires_at is not after issued_at")


def generate_keypair() -> tuple[bytes, str]:
    """(private key PEM, PKCS8, unencrypted; public key, base64 of the raw 32 bytes)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return pem, public_key_of(pem)


def public_key_of(private_key_pem: bytes) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_private_key,
    )

    key = load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")
