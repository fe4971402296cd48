"""Reading and raw-frame queries: backfill marks, DSP windows, report and export loading.

Writing readings is ``Store.write_batch`` / ``Store.add_readings`` (in ``db.py``, with the
per-device statistics they keep).  Times are fixed-width UTC ISO text, so text order is time
order and the ``(patient_id, kind, time)`` index serves every per-patient range below.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from edge_gateway.store.db import Store, period_filter

#: One reading row as the DSP scheduler loads it: time, value, extra JSON, kind, record key.
WindowRow = tuple[str, float, str | None, str, str]


def _marks(n: int) -> str:
    return ",".join("?" * n)


# --------------------------------------------------------------------------- raw frames
def record_payloads(store: Store, device_id: str, characteristic: str, reset_epoch: int,
                    limit: int) -> list[bytes]:
    """The raw frames behind the newest readings of a characteristic in one reset epoch
    (distinct, newest first): what a backfill's "last record held" is worked out from."""
    rows = store.conn.execute(
        "SELECT DISTINCT f.payload FROM readings r JOIN raw_frames f ON f.id = r.raw_frame_id"
        " WHERE r.device_id = ? AND r.characteristic = ? AND r.reset_epoch = ?"
        " AND f.payload IS NOT NULL ORDER BY r.id DESC LIMIT ?",
        (device_id, characteristic, reset_epoch, limit))
    return [bytes(p) for (p,) in rows]


def latest_frame(store: Store, device_id: str, characteristic: str) -> bytes | None:
    """The newest accepted raw frame of a characteristic (None if none, or not kept)."""
    row = store.conn.execute(
        "SELECT payload FROM raw_frames WHERE device_id = ? AND characteristic = ?"
        " AND status = 'ok' ORDER BY id DESC LIMIT 1", (device_id, characteristic)).fetchone()
    return None if row is None or row[0] is None else bytes(row[0])


def recent_frames(store: Store, device_id: str, characteristic: str,
                  limit: int = 50) -> Iterator[bytes]:
    """Accepted raw frames of a characteristic, newest first (lazily: stop when found)."""
    for (payload,) in store.conn.execute(
            "SELECT payload FROM raw_frames WHERE device_id = ? AND characteristic = ?"
            " AND status = 'ok' AND payload IS NOT NULL ORDER BY id DESC LIMIT ?",
            (device_id, characteristic, limit)):
        yield bytes(payload)


def rejected_frames(store: Store, device_id: str) -> int:
    """Frames of a device that failed to decode (served by the partial index)."""
    return int(store.conn.execute(
        "SELECT count(*) FROM raw_frames WHERE device_id = ? AND status = 'rejected'",
        (device_id,)).fetchone()[0])


# --------------------------------------------------------------------------- per device
def latest_value(store: Store, device_id: str) -> tuple[str, float, str] | None:
    """(kind, value, unit) of the device's newest reading with a value."""
    row = store.conn.execute(
        "SELECT kind, value, unit FROM readings WHERE device_id = ? AND value IS NOT NULL"
        " ORDER BY id DESC LIMIT 1", (device_id,)).fetchone()
    return None if row is None else (row[0], row[1], row[2])


# --------------------------------------------------------------------------- per patient
def first_time(store: Store, patient_id: str, kinds: Sequence[str]) -> str | None:
    """The time of the patient's oldest reading of ``kinds``."""
    row = store.conn.execute(
        f"SELECT min(time) FROM readings WHERE patient_id = ? AND kind IN ({_marks(len(kinds))})",
        [patient_id, *kinds]).fetchone()
    return row[0] if row and row[0] else None


def window(store: Store, patient_id: str, kinds: Sequence[str], start: str,
           end: str) -> list[WindowRow]:
    """Readings with a value of ``kinds`` in ``[start, end)``, in time (then arrival) order."""
    return store.conn.execute(
        f"SELECT time, value, extra, kind, record_key FROM readings WHERE patient_id = ?"
        f" AND kind IN ({_marks(len(kinds))}) AND time >= ? AND time < ? AND value IS NOT NULL"
        f" ORDER BY time, id", [patient_id, *kinds, start, end]).fetchall()


def timed_values(store: Store, patient_id: str, kinds: Sequence[str], lo: str | None,
                 hi: str | None) -> Iterator[tuple[str, float, str]]:
    """(time, value, unit) of the patient's readings of ``kinds`` in ``[lo, hi)``."""
    if len(kinds) == 1:
        kind_sql, args = "kind = ?", [patient_id, kinds[0], lo, hi]
    else:
        kind_sql, args = f"kind IN ({_marks(len(kinds))})", [patient_id, *kinds, lo, hi]
    yield from store.conn.execute(
        f"SELECT time, value, unit FROM readings WHERE patient_id = ? AND {kind_sql}"
        " AND value IS NOT NULL AND time >= ? AND time < ? ORDER BY time", args)


def minute_means(store: Store, patient_id: str, kind: str, lo: str | None,
                 hi: str | None) -> list[tuple[str, float]]:
    """('YYYY-MM-DDTHH:MM', mean value) per minute: a 1 Hz stream averaged in SQL, so two
    weeks of it fit in a Raspberry Pi's memory."""
    return [(m, v) for m, v in store.conn.execute(
        "SELECT substr(time, 1, 16) AS m, avg(value) FROM readings WHERE patient_id = ? AND"
        " kind = ? AND value IS NOT NULL AND time >= ? AND time < ?"
        " GROUP BY m ORDER BY m", (patient_id, kind, lo, hi))]


def record_values(store: Store, patient_id: str, kinds: Sequence[str], lo: str | None,
                  hi: str | None) -> Iterator[tuple[str, str, str, str, float, str]]:
    """(device, record key, kind, time, value, unit) of ``kinds`` in ``[lo, hi)`` by time:
    the parts of multi-value measurements (a BP reading) share device and record key."""
    yield from store.conn.execute(
        f"SELECT device_id, record_key, kind, time, value, unit FROM readings WHERE"
        f" patient_id = ? AND kind IN ({_marks(len(kinds))}) AND value IS NOT NULL"
        " AND time >= ? AND time < ? ORDER BY time", (patient_id, *kinds, lo, hi))


def device_totals(store: Store, patient_id: str, lo: str | None,
                  hi: str | None) -> list[tuple[str, str, int, str, str]]:
    """(device, profile or '-', readings, first time, last time) per device of the patient
    in ``[lo, hi)``."""
    return store.conn.execute(
        "SELECT r.device_id, coalesce(d.profile, '-'), count(*), min(r.time), max(r.time)"
        " FROM readings r LEFT JOIN devices d ON d.id = r.device_id"
        " WHERE r.patient_id = ? AND r.time >= ? AND r.time < ? GROUP BY r.device_id"
        " ORDER BY r.device_id", (patient_id, lo, hi)).fetchall()


# A 5-minute slot key ('2026-11-20T07:' || minute / 5 * 5): distinct slots are at most 288 a
# day per device, so they can go to the caller to be binned by *local* day.
_SLOT = "substr(time, 1, 14) || printf('%02d', CAST(substr(time, 15, 2) AS INTEGER) / 5 * 5)"


def five_minute_slots(store: Store, patient_id: str, device_id: str, lo: str | None,
                      hi: str | None) -> Iterator[str]:
    """The distinct 5-minute slots ('YYYY-MM-DDTHH:MM', UTC) with a reading of the device."""
    for (key,) in store.conn.execute(
            f"SELECT DISTINCT {_SLOT} FROM readings WHERE patient_id = ? AND device_id = ?"
            " AND time >= ? AND time < ?", (patient_id, device_id, lo, hi)):
        yield key


def export_rows(store: Store, patient_id: str, since: str | None,
                until: str | None) -> Iterator[Any]:
    """(id, device, kind, value, unit, special, time, received_at, device_time, record_key)
    of the patient's readings from ``since`` (to ``until``), streamed in time order."""
    bounds, args = period_filter("time", patient_id, since, until)
    return store.stream(
        "SELECT id, device_id, kind, value, unit, special, time, received_at,"
        " device_time, record_key FROM readings WHERE patient_id = ?"
        + bounds + " ORDER BY time, device_id, record_key, kind", args)

