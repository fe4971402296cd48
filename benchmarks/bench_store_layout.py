"""Where the bytes a reading costs go, and what each storage layout change saves.

Replays a steady stream through the real ``Store.write_batch`` (one commit per simulated
second, ``synchronous = FULL``: one fsync per commit, as the daemon does), with frames decoded
by the real codecs, for three workloads:

* ``home``: the reference home — a heart-rate strap notifying at 1 Hz (1-2 RR intervals per
  notification), a CGM every 5 minutes, a cuff twice a day;
* ``demo``: the six-device demo's steady part — the strap and a pulse oximeter at 1 Hz;
* ``20/s``: ten heart-rate notifications a second with one RR interval each (20 readings/s).

For each layout it prints the bytes written per reading from ``/proc/self/io`` ``write_bytes``
(what reached the block layer: WAL, checkpoints and the 4 KiB page each fsync'd append dirties
again), as a ratio against the 0007 layout measured in the same run, and the WAL pages one
commit writes per table and index (``dbstat`` page owners, read from the WAL's frame headers).

    .venv/bin/python benchmarks/bench_store_layout.py           # ~1 minute
    BENCH_LAYOUT_SECONDS=3600 ...                                # longer simulated runs
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_gateway.drivers import registry
from edge_gateway.reading import Reading
from edge_gateway.store import FrameRecord, Store

SECONDS = int(os.environ.get("BENCH_LAYOUT_SECONDS", "600"))
T0 = datetime(2026, 11, 20, tzinfo=UTC)
# Real notifications from a demo run: heart rate with 1-2 RR intervals, PLX continuous.
HR = [bytes.fromhex(h) for h in ("16657c020002", "1666a0025b02", "1675a201", "1670a101")]
PLX = [bytes.fromhex(h) for h in ("1458004a00800014f0", "145800490080001af0")]
Batch = list[tuple[FrameRecord, list[Reading]]]


def decoded(device: str, char: str, t: datetime, payload: bytes) -> tuple[FrameRecord,
                                                                          list[Reading]]:
    rs = registry.decode_readings(char, payload, device_id=device, received_at=t,
                                  device_clock_offset=timedelta(0))
    return FrameRecord(device, char, t, payload), [
        Reading(**{**{f: getattr(r, f) for f in r.__dataclass_fields__}, "patient_id": "p1"})
        for r in rs]


def stored(device: str, char: str, t: datetime, seq: int,
           parts: list[tuple[str, float, str]]) -> tuple[FrameRecord, list[Reading]]:
    """A stored record (CGM, cuff) as its profile keys it, built directly."""
    key = f"seq:{seq}"
    return FrameRecord(device, char, t, seq.to_bytes(4, "little") * 4), [
        Reading(device, char, kind, value, unit, t, t, key, patient_id="p1",
                extra={"record_sequence": seq}) for kind, value, unit in parts]


def workload(name: str, seconds: int) -> Iterator[Batch]:
    for s in range(seconds):
        t = T0 + timedelta(seconds=s)
        batch: Batch = []
        if name == "20/s":
            for i in range(10):
                ti = t + timedelta(milliseconds=100 * i)
                batch.append(decoded("AA:00:00:00:00:01", "2a37", ti, b"\x10\x48\x41\x03"))
        else:
            batch.append(decoded("AA:00:00:00:00:01", "2a37", t, HR[s % len(HR)]))
        if name == "demo":
            batch.append(decoded("AA:00:00:00:00:02", "2a5f", t + timedelta(milliseconds=400),
                                 PLX[s % len(PLX)]))
        if name == "home" and s % 300 == 7:
            batch.append(stored("AA:00:00:00:00:03", "2aa7", t, s // 300,
                                [("cgm_glucose", 112.0, "mg/dL")]))
        if name == "home" and s % 43200 == 11:
            batch.append(stored("AA:00:00:00:00:04", "2a35", t, s // 43200, [
                ("bp_systolic", 128.0, "mmHg"), ("bp_diastolic", 81.0, "mmHg"),
                ("bp_map", 97.0, "mmHg")]))
        yield batch


def write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/self/io")


def wal_pages(wal: Path) -> list[tuple[int, bool]]:
    """(page number, commits) of every frame in a WAL file (its 32-byte header, then frames of
    a 24-byte header and one page)."""
    data = wal.read_bytes()
    if len(data) < 32:
        return []
    page = struct.unpack(">I", data[8:12])[0]
    out = []
    for off in range(32, len(data) - 24 - page + 1, 24 + page):
        pgno, size = struct.unpack(">II", data[off:off + 8])
        out.append((pgno, size != 0))
    return out


Layout = Callable[[Store], None]


def layout_0007(store: Store) -> None:
    """The schema as it was before 0008 (for the ratio)."""
    c = store.conn
    if c.execute("SELECT 1 FROM sqlite_master WHERE name = 'readings_natural_key'").fetchone():
        c.executescript(
            "DROP INDEX readings_natural_key;"
            "CREATE UNIQUE INDEX readings_0007_key ON readings"
            " (device_id, characteristic, kind, reset_epoch, record_key);"
            "DROP INDEX readings_patient_kind_time;"
            "CREATE INDEX readings_patient_kind_time ON readings(patient_id, kind, time);")


def layout_current(store: Store) -> None:
    """The shipped schema, whatever migrations it has."""


def layout_patient_time(store: Store) -> None:
    """An alternative not taken: the per-patient index ordered by time before kind (one leaf
    per patient per commit instead of one per kind), at the price of scanning every kind of
    a patient's range for a one-kind query (14 days of CGM under a 1 Hz strap: 2.9 M index
    entries instead of 4,000)."""
    store.conn.executescript(
        "DROP INDEX readings_patient_kind_time;"
        "CREATE INDEX readings_patient_time ON readings(patient_id, time, kind);")


def fsync_floor(tmp: Path, n: int = 50) -> float:
    """write_bytes of one fsync'd 100-byte append: the page cache dirties (and counts) a whole
    4 KiB page again after each fsync, whatever the database does."""
    path = tmp / "floor.bin"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    try:
        before = write_bytes()
        for _ in range(n):
            os.write(fd, b"x" * 100)
            os.fdatasync(fd)
        return (write_bytes() - before) / n
    finally:
        os.close(fd)


def run(name: str, layout: Layout, tmp: Path, seconds: int, *,
        checkpoint_pages: int | None = None, attribute: bool = False
        ) -> tuple[float, dict[str, float]]:
    """(bytes written per reading, WAL pages per commit by owner when ``attribute``)."""
    path = tmp / f"{name.replace('/', '_')}-{layout.__name__}-{checkpoint_pages}-{attribute}.db"
    store = Store.open(path)
    layout(store)
    if attribute:
        store.conn.execute("PRAGMA wal_autocheckpoint = 0")
    elif checkpoint_pages is not None:
        store.conn.execute(f"PRAGMA wal_autocheckpoint = {checkpoint_pages}")
    batches = list(workload(name, seconds + 120))
    for b in batches[:120]:  # warm: the first leaves and interior pages exist
        store.write_batch(b)
    store.checkpoint()
    readings = sum(len(rs) for b in batches[120:] for _, rs in b)
    before = write_bytes()
    for b in batches[120:]:
        store.write_batch(b)
    written = write_bytes() - before
    owners: dict[str, float] = {}
    if attribute:
        pages = wal_pages(Path(str(path) + "-wal"))
        owner = dict(store.conn.execute("SELECT pageno, name FROM dbstat"))
        commits = sum(1 for _, c in pages if c)
        counts = Counter(owner.get(p, "(freelist/new)") for p, _ in pages)
        owners = {k: v / max(commits, 1) for k, v in counts.most_common()}
    store.close()
    return written / max(readings, 1), owners


def main() -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_LAYOUT_DIR")) as d:
        tmp = Path(d)
        floor = fsync_floor(tmp)
        print(f"layout.fsync_floor: {floor:,.0f} B per fsync'd append (ratio "
              f"{floor / 4096:.2f} vs one 4 KiB page; one commit a second costs at least "
              f"{floor * 86400 / 1e6:,.0f} MB/day, against a 100 MB/day target)")
        for name in ("home", "demo", "20/s"):
            _, owners0 = run(name, layout_0007, tmp, SECONDS // 3, attribute=True)
            _, owners1 = run(name, layout_current, tmp, SECONDS // 3, attribute=True)
            print(f"layout.{name}.wal_pages_per_commit_0007: {sum(owners0.values()):.2f} "
                  "(" + ", ".join(f"{k} {v:.2f}" for k, v in owners0.items()) + ")")
            print(f"layout.{name}.wal_pages_per_commit_now: {sum(owners1.values()):.2f} "
                  "(" + ", ".join(f"{k} {v:.2f}" for k, v in owners1.items()) + ")")
            b0, _ = run(name, layout_0007, tmp, SECONDS)
            b1, _ = run(name, layout_current, tmp, SECONDS)
            b2, _ = run(name, layout_patient_time, tmp, SECONDS)
            b3, _ = run(name, layout_current, tmp, SECONDS, checkpoint_pages=4000)
            print(f"layout.{name}.bytes_per_reading: {b1:,.0f} B (ratio {b1 / b0:.2f} vs the "
                  f"0007 layout's {b0:,.0f} B in the same run; write_bytes, fsync per commit)")
            print(f"layout.{name}.alternatives: patient index by time {b2:,.0f} B (ratio "
                  f"{b2 / b0:.2f}); wal_autocheckpoint 4000 pages {b3:,.0f} B (ratio "
                  f"{b3 / b0:.2f}); vs 0007 in the same run")


if __name__ == "__main__":
    main()
