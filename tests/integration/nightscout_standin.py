"""A stand-in Nightscout on 127.0.0.1 for the uploader's tests.

The real server (cgm-remote-monitor) needs MongoDB, which Debian 12 does not package.  This
one follows its code where the uploader depends on it:

* auth, ``lib/authorization/index.js``: the ``api-secret`` header (or ``?secret=``) must equal
  ``env.api_secret``, the SHA-1 hex of API_SECRET (``lib/server/env.js``), and only when
  API_SECRET is longer than 12 characters; otherwise 401 ``Unauthorized``.
* entries upsert, ``lib/server/entries.js`` ``create``: ``sysTime`` is ``dateString`` parsed
  with its zone (``moment.parseZone``), else ``date``, else now, as ISO 8601 UTC with ms; the
  document is upserted on ``{sysTime, type}``, so the same reading posted twice is one entry.
* ``GET /api/v1/entries?count=N`` (newest first, by ``date``), ``POST /api/v1/devicestatus``.

Faults for the tests: ``fail_next(n, status)`` answers the next n requests with ``status``;
``store_then_fail_next(n)`` stores the upload and then answers 500 (a reply lost on the way:
the client must retry, the upsert must absorb it); ``down`` refuses every request with 503.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def sys_time(doc: dict[str, Any]) -> str:
    """``sysTime`` as entries.js derives it: dateString (with its zone), else date, else now."""
    when: datetime | None = None
    if doc.get("dateString"):
        when = datetime.fromisoformat(str(doc["dateString"]).replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    if when is None and doc.get("date"):
        when = datetime.fromtimestamp(int(doc["date"]) / 1000, UTC)
    if when is None:
        when = datetime.now(UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Nightscout:
    api_secret: str
    entries: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    devicestatus: list[dict[str, Any]] = field(default_factory=list)
    #: (path, number of documents, HTTP status answered) per request.
    requests: list[tuple[str, int, int]] = field(default_factory=list)
    down: bool = False
    _fail: list[int] = field(default_factory=list)
    _store_then_fail: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    @property
    def hashed(self) -> str:
        return hashlib.sha1(self.api_secret.encode()).hexdigest()

    def fail_next(self, n: int, status: int) -> None:
        with self.lock:
            self._fail.extend([status] * n)

    def store_then_fail_next(self, n: int) -> None:
        with self.lock:
            self._store_then_fail += n

    def authorized(self, secret: str | None) -> bool:
        # authorizeAdminSecret: only with an API_SECRET longer than 12 characters.
        return len(self.api_secret) > 12 and secret == self.hashed

    def sgv(self) -> list[dict[str, Any]]:
        with self.lock:
            return sorted((e for e in self.entries.values() if e["type"] == "sgv"),
                          key=lambda e: e["date"])

    def upsert(self, docs: list[dict[str, Any]]) -> None:
        with self.lock:
            for doc in docs:
                st = sys_time(doc)
                doc = {**doc, "sysTime": st, "utcOffset": 0}
                if doc.get("dateString"):
                    doc["dateString"] = st
                key = (st, str(doc.get("type")))
                old = self.entries.get(key, {})
                self.entries[key] = {**old, **doc}


def _handler(ns: Nightscout) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _answer(self, status: int, body: Any, path: str, n: int) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            with ns.lock:
                ns.requests.append((path, n, status))

        def _gate(self, path: str, n: int) -> bool:
            query = parse_qs(urlsplit(self.path).query)
            secret = query["secret"][0] if "secret" in query else self.headers.get("api-secret")
            with ns.lock:
                fail = ns._fail.pop(0) if ns._fail else None
            if ns.down:
                self._answer(503, {"status": 503, "message": "down"}, path, n)
                return False
            if fail is not None:
                self._answer(fail, {"status": fail, "message": "injected"}, path, n)
                return False
            if not ns.authorized(secret):
                self._answer(401, {"status": 401, "message": "Unauthorized",
                                   "description": "Invalid/Missing"}, path, n)
                return False
            return True

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            docs = body if isinstance(body, list) else [body]
            if not self._gate(path, len(docs)):
                return
            if path == "/api/v1/entries":
                ns.upsert(docs)
            elif path == "/api/v1/devicestatus":
                with ns.lock:
                    ns.devicestatus.extend(docs)
            else:
                self._answer(404, {"status": 404}, path, len(docs))
                return
            with ns.lock:
                lost = ns._store_then_fail > 0
                if lost:
                    ns._store_then_fail -= 1
            if lost:
                self._answer(500, {"status": 500, "message": "reply lost"}, path, len(docs))
            else:
                self._answer(200, docs, path, len(docs))

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if not self._gate(parts.path, 0):
                return
            count = int(parse_qs(parts.query).get("count", ["10"])[0])
            with ns.lock:
                rows = sorted(ns.entries.values(), key=lambda e: -int(e.get("date", 0)))
            self._answer(200, rows[:count], parts.path, 0)

    return Handler


@contextmanager
def running(api_secret: str = "a-long-api-secret-0123") -> Iterator[Nightscout]:
    """A stand-in Nightscout on a free loopback port for the block's duration."""
    ns = Nightscout(api_secret)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ns))
    ns.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="nightscout-standin",
                              daemon=True)
    thread.start()
    try:
        yield ns
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
