"""Store throughput and disk writes per reading.

1. Readings committed per second through Store.write_batch (raw frame + readings, idempotent
   insert, one transaction per batch) against a raw ``executemany`` of the same rows into the
   same schema, in the same run.  Target: the store reaches >= 50 % of the raw rate.
2. Bytes written per reading at a steady 20 readings/s (10 heart-rate frames/s with one RR
   interval each, committed once per second as the daemon does; simulated time, so the run
   takes seconds): counted as the bytes SQLite hands to write(2) (/proc/self/io wchar), which
   includes WAL frames and checkpoints.  Target <= 1 KB per reading.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_gateway.reading import Reading
from edge_gateway.store import FrameRecord, Store
from edge_gateway.store.db import _INSERT_READING, _reading_row

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def frames(n: int, start: int = 0) -> list[tuple[FrameRecord, list[Reading]]]:
    out = []
    for i in range(start, start + n):
        t = T0 + timedelta(milliseconds=100 * i)
        key = f"rx:{t.isoformat()}"
        out.append((FrameRecord("strap-1", "2a37", t, b"\x10\x48\x00\x04"), [
            Reading("strap-1", "2a37", "heart_rate", 72.0, "/min", t, t, key, patient_id="p1"),
            Reading("strap-1", "2a37", "rr_interval", 833.0, "ms", t, t, key + ":rr0",
                    patient_id="p1"),
        ]))
    return out


def wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def throughput(tmp: Path) -> tuple[float, float]:
    n_frames, batch = 20_000, 200
    data = frames(n_frames)
    store = Store.open(tmp / "store.db")
    t = time.perf_counter()
    for i in range(0, n_frames, batch):
        store.write_batch(data[i:i + batch])
    store_rate = 2 * n_frames / (time.perf_counter() - t)
    store.close()

    raw = Store.open(tmp / "raw.db")  # same schema, same pragmas
    conn = raw.conn
    rows = [_reading_row(r, None) for _, rs in data for r in rs]
    t = time.perf_counter()
    for i in range(0, len(rows), 2 * batch):
        conn.execute("BEGIN")
        conn.executemany(_INSERT_READING, rows[i:i + 2 * batch])
        conn.execute("COMMIT")
    raw_rate = len(rows) / (time.perf_counter() - t)
    raw.close()
    return store_rate, raw_rate


def bytes_per_reading(tmp: Path) -> float:
    store = Store.open(tmp / "steady.db")
    warm = frames(600)
    for s in range(0, 600, 10):
        store.write_batch(warm[s:s + 10])
    seconds = 1800
    data = frames(10 * seconds, start=600)
    before = wchar()
    for s in range(seconds):  # one commit per simulated second, 10 frames = 20 readings
        store.write_batch(data[10 * s:10 * s + 10])
    written = wchar() - before
    store.close()
    return written / (20 * seconds)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        store_rate, raw_rate = throughput(tmp)
        print(f"store.readings_per_s: {store_rate:,.0f} readings/s "
              f"(ratio {store_rate / raw_rate:.2f} vs raw executemany {raw_rate:,.0f}/s; "
              "target >= 0.50)")
        bpr = bytes_per_reading(tmp)
        print(f"store.bytes_written_per_reading_at_20_per_s: {bpr:,.0f} B/reading "
              f"(ratio {bpr / 1024:.2f} vs 1 KB target; includes WAL + checkpoints)")
    _ = sqlite3.sqlite_version


if __name__ == "__main__":
    main()
