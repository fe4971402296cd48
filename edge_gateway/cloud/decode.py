"""What one received MQTT message is: data items, a gateway status, or a dead letter.

Pure: no I/O, no clock.  The receive time comes in as an argument.  Reads exactly what the hub
publishes (``edge_gateway/sync/payload.py``, ``docs/mqtt.md``): single messages, batches, the
``json`` and ``fhir`` formats, gzip and zstd recognised by their magic bytes (a mosquitto bridge
on MQTT 3.1.1 drops the ``content-encoding`` user property).  Anything else becomes a
:class:`DeadLetter` with its raw bytes, topic and reason; nothing here raises on bad input.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

try:  # the [cloud] extra brings it; without it the standard library does the same, slower
    import orjson
except ImportError:  # pragma: no cover - exercised by installs without the extra
    orjson = None  # type: ignore[assignment]

SCHEMA = "edge-gateway/1"  # the envelope schema this consumer understands (sync/payload.py)
KINDS = frozenset({"alert", "summary", "reading", "command"})
#: A ``command`` item is a hub's result of a console command (docs/fleet.md).
COMMANDS = frozenset({"alert.ack", "threshold.set", "threshold.reset"})
COMMAND_STATUSES = frozenset({"applied", "rejected", "expired"})
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

#: Dead-letter reasons (the ``reason`` column starts with one of these, then ``: detail``).
REASONS = ("oversized", "topic", "bomb", "compression", "not-json", "schema", "envelope")


@dataclass(frozen=True, slots=True)
class Limits:
    #: A message larger than this on the wire is not decoded (set the broker's
    #: ``message_size_limit`` to the same figure to refuse it earlier).
    max_message_bytes: int = 1 << 20
    #: Inflated size cap: a decompression bomb stops here.
    max_inflated_bytes: int = 16 << 20
    max_id_chars: int = 200


@dataclass(frozen=True, slots=True)
class ItemRow:
    id: str
    gateway: str
    site: str
    patient: str | None
    kind: str
    created_at: datetime  # the item's own time (the partition key)
    format: str
    data: str  # compact JSON text (jsonb)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One life-cycle event of an alert, folded into the ``alerts`` table."""

    gateway: str
    key: str  # the hub's alert id (json) or rule:patient:raised_at (fhir)
    site: str
    patient: str | None
    rule: str | None
    severity: str | None
    state: str | None
    message: str | None
    raised_at: datetime | None
    at: datetime  # the event item's created_at
    item_id: str


@dataclass(frozen=True, slots=True)
class DataMessage:
    topic: str
    message_id: str
    site: str
    gateway: str
    patient: str | None
    kind: str
    items: tuple[ItemRow, ...]
    alerts: tuple[AlertEvent, ...]
    sent_at: datetime | None = None  # when the hub built the message (its clock)


@dataclass(frozen=True, slots=True)
class StatusMessage:
    topic: str
    site: str
    gateway: str
    status: str  # online | offline
    at: datetime | None  # the gateway's own time, when it said
    version: str | None = None  # the hub's software version, when it said


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    reason: str  # "<kind>: detail", kind one of REASONS
    payload: bytes


@dataclass(frozen=True, slots=True)
class CommandEcho:
    """A console command to a hub (``<site>/<gateway>/cmd/<id>``, docs/mqtt.md) or the empty
    retained message that clears it: seen because the ingest subscribes to the whole prefix,
    not data; acknowledged and not stored (its result arrives as a ``command`` item)."""

    topic: str


Decoded = DataMessage | StatusMessage | DeadLetter | CommandEcho


class _Bad(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


# ---------------------------------------------------------------------- topics
def parse_topic(topic: str, prefix: str) -> tuple[str, list[str]]:
    """``("data", [site, gateway, patient, kind])``, ``("status", [site, gateway])`` or
    ``("command", [site, gateway, "cmd", id])``."""
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head):
        raise _Bad("topic", f"not under the prefix {prefix!r}")
    levels = topic[len(head):].split("/")
    if any("\x00" in unquote(v) for v in levels):
        raise _Bad("topic", "NUL character in a level")
    if len(levels) == 3 and levels[2] == "status":
        return "status", [unquote(v) for v in levels[:2]]
    if len(levels) == 4 and levels[2] == "cmd" and unquote(levels[3]) not in KINDS:
        # A patient named "cmd" is percent-encoded by no one, but its data topics end in a
        # kind; a command's last level is its id (hex), never a kind.
        return "command", [unquote(v) for v in levels]
    if len(levels) == 4:
        site, gw, patient, kind = (unquote(v) for v in levels)
        if kind not in KINDS:
            raise _Bad("topic", f"unknown kind level {kind!r}")
        return "data", [site, gw, patient, kind]
    raise _Bad("topic", f"{len(levels)} levels after the prefix (data has 4, status 3)")


# ---------------------------------------------------------------------- bytes
def inflate(payload: bytes, limits: Limits) -> bytes:
    """The JSON bytes: gzip/zstd by magic, inflated at most to ``max_inflated_bytes``."""
    cap = limits.max_inflated_bytes
    if payload.startswith(GZIP_MAGIC):
        try:
            d = zlib.decompressobj(wbits=31)
            out = d.decompress(payload, cap + 1)
        except zlib.error as err:
            raise _Bad("compression", f"gzip: {err}") from err
        if len(out) > cap or d.unconsumed_tail:
            raise _Bad("bomb", f"gzip inflates past {cap} bytes")
        if not d.eof:
            raise _Bad("compression", "gzip: truncated stream")
        return out
    if payload.startswith(ZSTD_MAGIC):
        try:
            import zstandard
        except ImportError as err:  # the [cloud] extra brings it
            raise _Bad("compression", "zstd payload but zstandard is not installed") from err
        try:
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(payload))
            out = reader.read(cap + 1)
            while len(out) <= cap:
                more = reader.read(cap + 1 - len(out))
                if not more:
                    break
                out += more
        except zstandard.ZstdError as err:
            raise _Bad("compression", f"zstd: {err}") from err
        if len(out) > cap:
            raise _Bad("bomb", f"zstd inflates past {cap} bytes")
        return bytes(out)
    return payload


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise _Bad("envelope", f"{what} is not a time")
    try:
        t = datetime.fromisoformat(value)
    except ValueError as err:
        raise _Bad("envelope", f"{what} {value[:40]!r} is not ISO 8601") from err
    if t.tzinfo is None:
        raise _Bad("envelope", f"{what} {value[:40]!r} has no time zone")
    return t


def _opt_time(value: Any) -> datetime | None:
    try:
        return _time(value, "time") if value else None
    except _Bad:
        return None


def _str(obj: dict[str, Any], key: str, limits: Limits) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v or len(v) > limits.max_id_chars or "\x00" in v:
        raise _Bad("envelope", f"{key} missing or not a short string")
    return v


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN/Infinity: jsonb refuses them


# Digits -> "9", anything else -> ".": a run of 19 nines is a number orjson would not keep
# exactly (it reads integers beyond 64 bits as floats; the standard library keeps them).
_DIGIT_RUNS = bytes(0x39 if 0x30 <= b <= 0x39 else 0x2E for b in range(256))
_LONG_NUMBER = b"9" * 19


def _loads(raw: bytes) -> tuple[Any, bool]:
    """The JSON value, and whether orjson read it (then :func:`_dumps` may use orjson too).

    orjson is about 10 times faster at writing each item back; it is used only where it
    reads exactly what the standard library reads: anything it refuses (non-UTF-8 encodings,
    lone surrogates, numbers that overflow a double) or might round (an integer of 19 or more
    digits) goes through ``json`` as before, so what is stored or dead-lettered is the same."""
    if orjson is not None and _LONG_NUMBER not in raw.translate(_DIGIT_RUNS):
        try:
            return orjson.loads(raw), True
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw, parse_constant=_no_constant), False


def _dumps(obj: Any, fast: bool = False) -> str:
    text = None
    if fast and orjson is not None:
        try:
            text = orjson.dumps(obj).decode()
        except TypeError:  # nested deeper than orjson writes (254 levels): json does
            text = None
    if text is None:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    if "\\u0000" in text:  # jsonb refuses NUL in text: one such item must not block a batch
        raise _Bad("envelope", "a string holds a NUL character")
    return text


# ---------------------------------------------------------------------- messages
def classify(topic: str, payload: bytes, prefix: str = "edge-gateway",
             limits: Limits = Limits()) -> Decoded:
    """Decode one message; never raises on bad input (it becomes a :class:`DeadLetter`)."""
    try:
        if len(payload) > limits.max_message_bytes:
            raise _Bad("oversized", f"{len(payload)} bytes > {limits.max_message_bytes}")
        if "\x00" in topic:
            raise _Bad("topic", "NUL character in the topic")
        what, levels = parse_topic(topic, prefix)
        if what == "command":
            return CommandEcho(topic)
        raw = inflate(payload, limits)
        try:
            obj, fast = _loads(raw)
        except (ValueError, RecursionError) as err:
            raise _Bad("not-json", str(err)[:200]) from err
        if not isinstance(obj, dict):
            raise _Bad("not-json", "not a JSON object")
        if what == "status":
            return _status(topic, levels, obj)
        return _data(topic, levels, obj, limits, fast)
    except _Bad as bad:
        keep = payload[:limits.max_message_bytes]
        return DeadLetter(topic.replace("\x00", "\\0"), str(bad).replace("\x00", ""), keep)


def _status(topic: str, levels: list[str], obj: dict[str, Any]) -> StatusMessage:
    status = obj.get("status")
    if status not in ("online", "offline"):
        raise _Bad("schema", f"status {str(status)[:20]!r} is not online/offline")
    if obj.get("schema", SCHEMA) != SCHEMA:
        raise _Bad("schema", f"unknown schema {str(obj.get('schema'))[:40]!r}")
    version = obj.get("version")
    if version is not None and (not isinstance(version, str) or len(version) > 64):
        raise _Bad("envelope", "version is not a string of at most 64 characters")
    return StatusMessage(topic, levels[0], levels[1], str(status), _opt_time(obj.get("at")),
                         version)


def _data(topic: str, levels: list[str], obj: dict[str, Any], limits: Limits,
          fast: bool = False) -> DataMessage:
    if obj.get("schema") != SCHEMA:
        raise _Bad("schema", f"unknown schema {str(obj.get('schema'))[:40]!r}")
    site, gateway, patient_level, kind = levels
    for key, want in (("site", site), ("gateway", gateway), ("kind", kind)):
        if obj.get(key) != want:
            raise _Bad("topic", f"{key} {str(obj.get(key))[:40]!r} in the message,"
                                f" {want!r} in the topic")
    patient = obj.get("patient")
    if patient is not None and not isinstance(patient, str):
        raise _Bad("envelope", "patient is not a string")
    if (patient or "_") != patient_level:
        raise _Bad("topic", f"patient {str(patient)[:40]!r} in the message,"
                            f" {patient_level!r} in the topic")
    fmt = obj.get("format", "json")
    if fmt not in ("json", "fhir"):
        raise _Bad("schema", f"unknown format {str(fmt)[:20]!r}")
    message_id = _str(obj, "id", limits)
    if "items" in obj:
        raw_items = obj["items"]
        if not isinstance(raw_items, list) or not raw_items:
            raise _Bad("envelope", "items is not a non-empty list")
    else:
        if "data" not in obj:
            raise _Bad("envelope", "neither items nor data")
        raw_items = [{"id": message_id, "created_at": obj.get("created_at"), "data": obj["data"]}]
    items: list[ItemRow] = []
    alerts: list[AlertEvent] = []
    for it in raw_items:
        if not isinstance(it, dict) or "data" not in it:
            raise _Bad("envelope", "an item is not an object with data")
        if kind == "command" and fmt == "json":
            _check_command(it["data"], limits)
        row = ItemRow(_str(it, "id", limits), gateway, site, patient, kind,
                      _time(it.get("created_at"), "created_at"), fmt, _dumps(it["data"], fast))
        items.append(row)
        if kind == "alert" and isinstance(it["data"], dict):
            alerts.append(alert_event(row, it["data"]))
    return DataMessage(topic, message_id, site, gateway, patient, kind, tuple(items),
                       tuple(alerts), _opt_time(obj.get("sent_at")))


def _check_command(data: Any, limits: Limits) -> None:
    """A command result as the hub reports it: ``command_id``, ``command`` (null only when
    rejected unread), ``status``,
    ``reason`` and ``actor`` (string or null), ``applied_at`` (ISO 8601 with a zone)."""
    if not isinstance(data, dict):
        raise _Bad("envelope", "command data is not an object")
    _str(data, "command_id", limits)
    if data.get("status") not in COMMAND_STATUSES:
        raise _Bad("schema", f"unknown command status {str(data.get('status'))[:20]!r}")
    # A hub that could not read a command (bad signature, malformed) rejects it without
    # knowing what it was: "command" is null then.
    unread = data.get("command") is None and data["status"] == "rejected"
    if not unread and data.get("command") not in COMMANDS:
        raise _Bad("schema", f"unknown command {str(data.get('command'))[:40]!r}")
    for key in ("reason", "actor"):
        if data.get(key) is not None and not isinstance(data.get(key), str):
            raise _Bad("envelope", f"command {key} is not a string or null")
    _time(data.get("applied_at"), "applied_at")


def alert_event(row: ItemRow, data: dict[str, Any]) -> AlertEvent:
    """The alert life-cycle event an alert item carries (json: the hub's alert; fhir: a Flag)."""
    def s(v: Any) -> str | None:
        return None if v is None else str(v)

    if row.format == "fhir":
        ext = {e.get("url"): e.get("valueCode") for e in data.get("extension") or []
               if isinstance(e, dict)}
        coding = ((data.get("code") or {}).get("coding") or [{}])[0]
        code = str(coding.get("code") or "")
        rule = code.removeprefix("alert/") or None
        start = (data.get("period") or {}).get("start")
        return AlertEvent(row.gateway, f"{rule}:{row.patient or '_'}:{start}", row.site,
                          row.patient, rule, s(ext.get("urn:edge-gateway:severity")),
                          s(ext.get("urn:edge-gateway:state")),
                          s((data.get("code") or {}).get("text")), _opt_time(start),
                          row.created_at, row.id)
    key = data.get("alert_id")
    return AlertEvent(row.gateway, s(key) or f"{data.get('key')}:{data.get('raised_at')}",
                      row.site, s(data.get("patient")) or row.patient, s(data.get("rule")),
                      s(data.get("severity")), s(data.get("state")), s(data.get("message")),
                      _opt_time(data.get("raised_at")), row.created_at, row.id)
