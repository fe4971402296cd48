"""What goes on the wire: topics, the JSON envelope, FHIR R4 resources, batching, compression.

Pure: no I/O, no clock, no logging.  Times come in as arguments; the same outbox rows and the
same ``now`` always give the same bytes.  ``docs/mqtt.md`` is the consumer-facing description
of everything built here; keep the two in step (``SCHEMA`` changes when a consumer would have to
change).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from edge_gateway import fhir
from edge_gateway.config import SyncSection
from edge_gateway.drivers import registry
from edge_gateway.errors import SyncError
from edge_gateway.reading import iso
from edge_gateway.store.outbox import Item
from edge_gateway.units import Kind

#: Envelope schema.  Bump the number only for changes a consumer must know about.
SCHEMA = "edge-gateway/1"

FORMATS = ("json", "fhir")
COMPRESSIONS = ("none", "gzip", "zstd")

@dataclass(frozen=True, slots=True)
class Options:
    """Where messages go (gateway, site, topic prefix) and how they are shaped: the config's
    ``[sync]`` section (format, compression, batch size)."""

    gateway: str
    site: str = "home"
    prefix: str = "edge-gateway"
    sync: SyncSection = field(default_factory=SyncSection)

    def __post_init__(self) -> None:
        # The config checks these at load; a section built in code (tests, tools) is not.
        s = self.sync
        if s.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {s.format!r}")
        if s.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {s.compression!r}")
        if s.batch_size < 1:
            raise ValueError("batch_size must be at least 1")


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT PUBLISH: where, what, and which outbox rows it settles."""

    topic: str
    payload: bytes
    id: str  # the message id: the item's id, or the batch id
    seqs: tuple[int, ...]  # outbox sequence numbers carried
    content_type: str
    encoding: str  # "identity", "gzip" or "zstd"
    user_properties: tuple[tuple[str, str], ...]


# ---------------------------------------------------------------------- ids & topics
def batch_id(item_ids: Sequence[str]) -> str:
    """A batch's id: derived from its items, so the same batch re-sent keeps its id."""
    if len(item_ids) == 1:
        return item_ids[0]
    first = item_ids[0].rsplit(":", 1)[0]
    digest = hashlib.sha256("\n".join(item_ids).encode()).hexdigest()[:16]
    return f"{first}:b{digest}"


_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def topic_segment(value: str | None) -> str:
    """A topic level from a free-form id: MQTT wildcards and '/' percent-encoded; None -> '_'."""
    if value is None or value == "":
        return "_"
    if _PLAIN.issuperset(value):  # the common case, and the hot path of a backlog drain
        return value
    return quote(value, safe="-_.~@=,;:!$&'()*")


def data_topic(opts: Options, patient_id: str | None, kind: str) -> str:
    """``<prefix>/<site>/<gateway>/<patient>/<kind>`` (five levels)."""
    return "/".join((opts.prefix, topic_segment(opts.site), topic_segment(opts.gateway),
                     topic_segment(patient_id), topic_segment(kind)))


def status_topic(prefix: str, site: str, gateway: str) -> str:
    """``<prefix>/<site>/<gateway>/status`` (four levels, so no data topic can match it)."""
    return "/".join((prefix, topic_segment(site), topic_segment(gateway), "status"))


def status_payload(status: str, gateway: str, site: str, at: datetime | None,
                   **extra: Any) -> bytes:
    """The retained status message; ``status`` is a key no other message carries."""
    if status not in ("online", "offline"):
        raise ValueError(f"status must be online or offline, got {status!r}")
    obj: dict[str, Any] = {"status": status, "schema": SCHEMA, "gateway": gateway, "site": site}
    if at is not None:
        obj["at"] = iso(at)
    obj.update(extra)
    return _dumps(obj)


# ---------------------------------------------------------------------- batching
def group(items: Iterable[Item], batch_size: int) -> list[list[Item]]:
    """Split items (already in send order) into batches sharing priority, kind and patient.

    Groups keep the order of their first item, so alerts still go before summaries.
    """
    groups: list[list[Item]] = []
    open_: dict[tuple[int, str, str | None], list[Item]] = {}
    for it in items:
        key = (it.priority, it.kind, it.patient_id)
        g = open_.get(key)
        if g is None or len(g) >= batch_size:
            g = []
            groups.append(g)
            open_[key] = g
        g.append(it)
    return groups


def build(items: Sequence[Item], opts: Options, now: datetime | str) -> Message:
    """One message from one group (see ``group``): envelope, optional FHIR, compression.

    ``now`` (a datetime or its ``iso`` text) becomes ``sent_at``: when the message was made.
    """
    if not items:
        raise ValueError("a message needs at least one item")
    first = items[0]
    env: dict[str, Any] = {
        "schema": SCHEMA,
        "id": batch_id([it.msg_id for it in items]),
        "gateway": opts.gateway,
        "site": opts.site,
        "kind": first.kind,
        "patient": first.patient_id,
        "created_at": max(it.created_at for it in items),
        "sent_at": now if isinstance(now, str) else iso(now),
        "format": opts.sync.format,
    }
    # The stored item text is spliced in as it is: decoding and re-encoding every item would
    # be most of a backlog drain's CPU time (the outbox only ever holds compact JSON objects).
    if len(items) == 1:
        env["seq"] = first.seq
        raw = _splice(_dumps(env), b"data", _data(first, opts))
    else:
        parts = [_splice(_dumps({"id": it.msg_id, "seq": it.seq, "created_at": it.created_at}),
                         b"data", _data(it, opts)) for it in items]
        raw = _splice(_dumps(env), b"items", b"[" + b",".join(parts) + b"]")
    # A batch names its id in a user property (MQTT 5) so a consumer can log or route it
    # without decoding; a single item's id is in the payload only (properties cost bytes).
    props: list[tuple[str, str]] = []
    if len(items) > 1:
        props += [("batch_id", env["id"]), ("count", str(len(items)))]
    encoding = "identity"
    if opts.sync.compression != "none":
        raw = compress(raw, opts.sync.compression)
        encoding = opts.sync.compression
        props.append(("content-encoding", encoding))
    return Message(
        topic=data_topic(opts, first.patient_id, first.kind), payload=raw, id=env["id"],
        seqs=tuple(it.seq for it in items),
        content_type="application/json", encoding=encoding, user_properties=tuple(props),
    )


def packet_size(msg: Message) -> int:
    """Bytes of the MQTT 5 QoS 1 PUBLISH packet carrying ``msg`` (with the properties the
    gateway sends: user properties, content type, payload format indicator)."""
    props = sum(1 + 2 + len(k.encode()) + 2 + len(v.encode()) for k, v in msg.user_properties)
    props += 1 + 2 + len(msg.content_type.encode()) + 2
    remaining = 2 + len(msg.topic.encode()) + 2 + _varint_len(props) + props + len(msg.payload)
    return 1 + _varint_len(remaining) + remaining


def _varint_len(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4


def fit(items: Sequence[Item], opts: Options, now: datetime,
        limit: int | None) -> tuple[list[Message], list[Message]]:
    """``build_all``, then split any batch over ``limit`` bytes into single-item messages.

    Returns (messages to send, single items too large to send at all).  A broker that
    announces a Maximum Packet Size drops the connection on a larger packet; sending it
    again and again would block the outbox behind one message for ever.
    """
    messages = build_all(items, opts, now)
    if limit is None:
        return messages, []
    by_seq = {it.seq: it for it in items}
    ok: list[Message] = []
    too_big: list[Message] = []
    for msg in messages:
        if packet_size(msg) <= limit:
            ok.append(msg)
            continue
        singles = [msg] if len(msg.seqs) == 1 else [build([by_seq[s]], opts, now)
                                                    for s in msg.seqs]
        for single in singles:
            (ok if packet_size(single) <= limit else too_big).append(single)
    return ok, too_big


def _data(it: Item, opts: Options) -> bytes:
    # A command result (docs/mqtt.md) is not clinical data: it keeps its JSON in both formats.
    if opts.sync.format == "fhir" and it.kind != "command":
        return _dumps(fhir_resource(it))
    return it.raw.encode()


def _splice(obj: bytes, key: bytes, value: bytes) -> bytes:
    """Append ``"key":value`` to the JSON object text ``obj``."""
    return obj[:-1] + b',"' + key + b'":' + value + b"}"


def build_all(items: Sequence[Item], opts: Options, now: datetime) -> list[Message]:
    stamp = iso(now)
    assert stamp is not None
    return [build(g, opts, stamp) for g in group(items, opts.sync.batch_size)]


def _dumps(obj: Any) -> bytes:
    # Compact, one line, keys in insertion order (stable bytes for the same input).
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=str).encode()


# ---------------------------------------------------------------------- compression
def compress(data: bytes, method: str) -> bytes:
    if method == "none":
        return data
    if method == "gzip":
        # mtime=0: the same input gives the same bytes (gzip otherwise stamps the clock).
        return gzip.compress(data, compresslevel=9, mtime=0)
    if method == "zstd":
        return bytes(_zstd().ZstdCompressor(level=10).compress(data))
    raise ValueError(f"unknown compression {method!r}")


def decompress(data: bytes, method: str) -> bytes:
    if method in ("none", "identity"):
        return data
    if method == "gzip":
        return gzip.decompress(data)
    if method == "zstd":
        return bytes(_zstd().ZstdDecompressor().decompress(data))
    raise ValueError(f"unknown compression {method!r}")


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError as err:  # optional: only deployments that chose zstd need it
        raise SyncError("sync.compression = 'zstd' needs the zstandard package",
                        retryable=False,
                        hint="pip install 'edge-gateway[zstd]' or use compression = 'gzip'",
                        ) from err
    return zstandard


def decode(payload: bytes, encoding: str = "identity") -> dict[str, Any]:
    """Consumer side (tests, tools): bytes -> envelope dict."""
    obj = json.loads(decompress(payload, encoding))
    if not isinstance(obj, dict):
        raise ValueError("a message must be a JSON object")
    return obj


def items_of(envelope: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(item id, data) for every item of a message, single or batch."""
    if "items" in envelope:
        return [(it["id"], it["data"]) for it in envelope["items"]]
    return [(envelope["id"], envelope["data"])]


# ---------------------------------------------------------------------- FHIR R4
def fhir_resource(it: Item, kinds: Mapping[str, Kind] | None = None) -> dict[str, Any]:
    """The item as a FHIR R4 resource (built by :mod:`edge_gateway.fhir`): Observation
    (summary, reading) or Flag (alert).  ``kinds`` defaults to the registry's table."""
    table = registry.kinds() if kinds is None else kinds
    b = it.body
    patient = b.get("patient") or it.patient_id
    if it.kind == "alert":
        return fhir.flag(rule=b.get("rule"), message=b.get("message"), state=b.get("state"),
                         severity=b.get("severity"), start=b.get("raised_at"),
                         patient=patient, msg_id=it.msg_id)
    device = str(b["device"]) if b.get("device") else None
    if it.kind == "summary":
        return fhir.summary_observation(
            table, str(b.get("kind")), dict(b.get("metrics") or {}),
            start=b.get("window_start"), end=b.get("window_end"), issued=b.get("created_at"),
            algorithm=b.get("algorithm"), coverage=b.get("coverage"), patient=patient,
            device=device, msg_id=it.msg_id)
    obs = fhir.reading_observation(  # a raw reading (bulk)
        table, str(b.get("kind")), b.get("value"), str(b.get("unit") or "1"),
        when=b.get("time"), patient=patient, device=device, msg_id=it.msg_id)
    assert obs is not None  # not strict: every reading gives a resource
    return obs
