"""Rows read straight from a damaged database file's table leaf pages (``db recover``).

When the file is truncated or an interior B-tree page is damaged, SQLite cannot reach the leaf
pages below it, though they are intact on disk.  This reads every table leaf page (type 0x0D,
SQLite file format §1.6) that is not on the freelist (deleted data must not come back), decodes
its cells (§1.6 cell format, overflow chains) and records (§2.1 record format), and yields
``(rowid, values)``.  Pure reading: no SQLite library, no writes.

Which table a row belongs to is not written on a leaf page; the caller attributes rows by
their column count and constraints, and only for tables whose column count is unique.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

Value = int | float | str | bytes | None


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A SQLite varint at ``pos``: (value, next position).  Raises IndexError past the end."""
    value = 0
    for i in range(8):
        byte = buf[pos + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + i + 1
    return (value << 8) | buf[pos + 8], pos + 9


def _record(payload: bytes) -> list[Value] | None:
    """The values of one record, or None when it does not parse."""
    try:
        header, pos = _varint(payload, 0)
        types = []
        while pos < header:
            t, pos = _varint(payload, pos)
            types.append(t)
        pos = header
        out: list[Value] = []
        for t in types:
            if t == 0:
                out.append(None)
            elif 1 <= t <= 6:
                size = (1, 2, 3, 4, 6, 8)[t - 1]
                out.append(int.from_bytes(payload[pos:pos + size], "big", signed=True))
                pos += size
            elif t == 7:
                out.append(struct.unpack(">d", payload[pos:pos + 8])[0])
                pos += 8
            elif t in (8, 9):
                out.append(t - 8)
            elif t >= 12:
                size = (t - 12) // 2
                raw = payload[pos:pos + size]
                if len(raw) != size:
                    return None
                out.append(raw.decode("utf-8") if t % 2 else bytes(raw))
                pos += size
            else:
                return None
        return out if pos <= len(payload) else None
    except (IndexError, UnicodeDecodeError, struct.error):
        return None


class PageFile:
    """The pages of a database file that may be damaged or truncated."""

    def __init__(self, path: Path) -> None:
        self.data = path.read_bytes()
        head = self.data[:100]
        size = int.from_bytes(head[16:18], "big")
        self.page_size = 65536 if size == 1 else size
        self.usable = self.page_size - head[20]
        self.pages = len(self.data) // self.page_size
        self.free = self._freelist(int.from_bytes(head[32:36], "big"))

    def page(self, n: int) -> bytes | None:
        if not 1 <= n <= self.pages:
            return None
        return self.data[(n - 1) * self.page_size:n * self.page_size]

    def _freelist(self, trunk: int) -> set[int]:
        free: set[int] = set()
        while trunk and trunk not in free:
            page = self.page(trunk)
            if page is None:
                break
            free.add(trunk)
            count = int.from_bytes(page[4:8], "big")
            for i in range(min(count, (self.usable - 8) // 4)):
                free.add(int.from_bytes(page[8 + 4 * i:12 + 4 * i], "big"))
            trunk = int.from_bytes(page[0:4], "big")
        return free

    def _payload(self, page: bytes, pos: int, size: int) -> bytes | None:
        u = self.usable
        x = u - 35
        if size <= x:
            return page[pos:pos + size]
        m = ((u - 12) * 32 // 255) - 23
        k = m + ((size - m) % (u - 4))
        local = k if k <= x else m
        out = bytearray(page[pos:pos + local])
        nxt = int.from_bytes(page[pos + local:pos + local + 4], "big")
        seen: set[int] = set()
        while len(out) < size:
            over = self.page(nxt)
            if over is None or nxt in seen:
                return None
            seen.add(nxt)
            out += over[4:u][:size - len(out)]
            nxt = int.from_bytes(over[0:4], "big")
        return bytes(out)

    def rows(self) -> Iterator[tuple[int, list[Value]]]:
        """``(rowid, values)`` of every cell on every table leaf page not on the freelist."""
        for n in range(1, self.pages + 1):
            if n in self.free:
                continue
            page = self.page(n)
            assert page is not None
            start = 100 if n == 1 else 0
            if page[start] != 0x0D:
                continue
            cells = int.from_bytes(page[start + 3:start + 5], "big")
            for i in range(cells):
                ptr = start + 8 + 2 * i
                try:
                    pos = int.from_bytes(page[ptr:ptr + 2], "big")
                    size, pos = _varint(page, pos)
                    rowid, pos = _varint(page, pos)
                except IndexError:
                    continue
                if rowid >= 1 << 63:
                    rowid -= 1 << 64
                payload = self._payload(page, pos, size)
                values = None if payload is None else _record(payload)
                if values is not None:
                    yield rowid, values


def fits(values: list[Any], columns: list[tuple[str, str, bool, bool]]) -> bool:
    """Whether decoded values can be a row of a table: ``columns`` are (name, declared type,
    not null, integer primary key).  The rowid alias is stored as NULL."""
    if len(values) != len(columns):
        return False
    for value, (_name, decl, notnull, ipk) in zip(values, columns, strict=True):
        if ipk:
            if value is not None:
                return False
            continue
        if value is None:
            if notnull:
                return False
            continue
        decl = decl.upper()
        if "INT" in decl and not isinstance(value, int):
            return False
        if "TEXT" in decl and not isinstance(value, str):
            return False
        if "REAL" in decl and not isinstance(value, int | float):
            return False
    return True
