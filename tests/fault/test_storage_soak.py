"""Soak: at the smallest storage cap (1 MB) a demo-like stream keeps being stored for 10
minutes, with evictions counted.  `make soak` runs it; STORAGE_SOAK_SECONDS shortens it.

Six straps send a heart rate and an RR interval every second, a meter a stored record now and
then; the writer commits once a second as in the daemon.  Every batch must commit (the writer
never holds), the database stays under the cap, the oldest readings go first and the newest
are all there.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_gateway.reading import Reading
from edge_gateway.store import BatchWriter, FrameRecord, Store

SECONDS = float(os.environ.get("STORAGE_SOAK_SECONDS", "600"))
CAP = 1_000_000
STRAPS = 6
#: Frames per strap every quarter second (demo straps notify about once a second; more here
#: so the cap is crossed many times over even in a shortened run).
RATE = 20


@pytest.mark.soak
@pytest.mark.timeout(SECONDS + 300)
def test_a_stream_keeps_being_stored_at_the_smallest_cap(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db", cap_bytes=CAP)
    writer = BatchWriter(store, max_frames=10_000, max_delay_s=1.0)
    end = time.monotonic() + SECONDS
    i = 0
    last_key = {}
    while time.monotonic() < end:
        now = datetime.now(UTC)
        for _ in range(RATE):
            for s in range(STRAPS):
                dev = f"strap-{s}"
                key = f"rx:{i}"
                writer.submit(FrameRecord(dev, "2a37", now, bytes(6)), [
                    Reading(dev, "2a37", "heart_rate", 60.0 + i % 30, "/min", now, now, key),
                    Reading(dev, "2a37", "rr_interval", 0.8, "s", now, now, key + ":rr")])
                last_key[dev] = key
                i += 1
        if writer.due():
            writer.flush()
        assert not writer.holding, writer.stats.last_error
        time.sleep(max(0.0, 1.0 / 4))
    writer.flush(force=True)
    assert not writer.holding and writer.pending == 0
    assert writer.stats.readings_new == 2 * i
    assert store.used_bytes() <= CAP
    evicted = store.evicted()
    assert evicted > 0 and store.counter("evicted.readings_at_cap") > 0
    for dev, key in last_key.items():
        assert store.conn.execute("SELECT count(*) FROM readings WHERE device_id = ? AND"
                                  " record_key = ?", (dev, key)).fetchone()[0] == 1
    kept = store.conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    print(f"{i} frames ({2 * i} readings) in {SECONDS:.0f} s at a {CAP} byte cap:"
          f" {kept} readings kept, {evicted} rows evicted")
