"""Devices and their user slots: the allowlist, the daemon-owned state, the status facts.

``Store.upsert_device``, ``Store.device``, ``Store.set_connected`` and
``Store.update_device_state`` (in ``db.py``) are the writer-side calls; this module holds the
rest of what is asked of the ``devices`` and ``device_users`` tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from edge_gateway.store.db import Store


class DeviceContext(NamedTuple):
    """What the frame pipeline needs to turn a device's frames into readings."""

    patient_id: str | None
    reset_epoch: int
    clock_offset_s: float | None
    last_record: str | None


class DeviceActivity(NamedTuple):
    """What the alert ticker needs to tell a silent device or a low battery."""

    id: str
    patient_id: str | None
    last_seen_at: str | None
    battery_pct: float | None
    enabled: int
    added_at: str


class DeviceStatus(NamedTuple):
    """One row of ``edge-gateway status``."""

    id: str
    name: str | None
    profile: str
    patient_id: str | None
    connected: int
    connected_changed_at: str | None
    transport: str
    battery_pct: float | None
    last_seen_at: str | None
    last_reading_at: str | None
    readings_total: int


# --------------------------------------------------------------------------- reads
def exists(store: Store, device_id: str) -> bool:
    return store.conn.execute("SELECT 1 FROM devices WHERE id = ?",
                              (device_id,)).fetchone() is not None


def ids(store: Store) -> list[str]:
    return [row[0] for row in store.conn.execute("SELECT id FROM devices ORDER BY id")]


def users(store: Store, device_id: str) -> list[tuple[int, str]]:
    """(user slot, patient) of a multi-user device, by slot."""
    return [(u, p) for u, p in store.conn.execute(
        "SELECT user_id, patient_id FROM device_users WHERE device_id = ? ORDER BY user_id",
        (device_id,))]


def user_patients(store: Store, device_id: str) -> tuple[tuple[int, str], ...]:
    """(user slot, patient) pairs of a device, unordered (the pipeline's lookup table)."""
    return tuple(store.conn.execute(
        "SELECT user_id, patient_id FROM device_users WHERE device_id = ?",
        (device_id,)).fetchall())


def context(store: Store, device_id: str) -> DeviceContext | None:
    row = store.conn.execute(
        "SELECT patient_id, reset_epoch, clock_offset_s, last_record FROM devices"
        " WHERE id = ?", (device_id,)).fetchone()
    return None if row is None else DeviceContext(*row)


def reset_epoch(store: Store, device_id: str) -> int:
    """The device's current reset epoch (0 for an unknown device)."""
    row = store.conn.execute("SELECT reset_epoch FROM devices WHERE id = ?",
                             (device_id,)).fetchone()
    return int(row[0]) if row else 0


def enabled_ble(store: Store) -> dict[str, str]:
    """Enabled BLE devices: id -> the address to connect to."""
    rows = store.conn.execute(
        "SELECT id, coalesce(address, id) FROM devices WHERE enabled = 1 AND transport = 'ble'")
    return {device_id: address for device_id, address in rows}


def enabled_serial(store: Store) -> dict[str, tuple[str, str]]:
    """Enabled serial devices: id -> (port, details JSON)."""
    rows = store.conn.execute(
        "SELECT id, coalesce(address, id), coalesce(details, '{}') FROM devices"
        " WHERE enabled = 1 AND transport = 'serial'").fetchall()
    return {dev_id: (port, details) for dev_id, port, details in rows}


def last_reading_times(store: Store) -> Iterator[tuple[str, str | None]]:
    """(device, newest reading received) as the writer keeps it: never a readings scan."""
    yield from store.conn.execute("SELECT id, last_reading_at FROM devices")


def activity(store: Store) -> list[DeviceActivity]:
    return [DeviceActivity(*row) for row in store.conn.execute(
        "SELECT id, patient_id, last_seen_at, battery_pct, enabled, added_at FROM devices")]


def status_rows(store: Store) -> list[DeviceStatus]:
    return [DeviceStatus(*row) for row in store.conn.execute(
        "SELECT d.id, d.name, d.profile, d.patient_id, d.connected, d.connected_changed_at,"
        " d.transport, d.battery_pct, d.last_seen_at, d.last_reading_at, d.readings_total"
        " FROM devices d ORDER BY d.id").fetchall()]


# --------------------------------------------------------------------------- writes
def enable(store: Store, device_id: str, *, details: str | None = None) -> None:
    """Enable a device (re-adding one); with ``details`` (JSON) also replace its details."""
    with store.write() as conn:
        if details is None:
            conn.execute("UPDATE devices SET enabled = 1 WHERE id = ?", (device_id,))
        else:
            conn.execute("UPDATE devices SET enabled = 1, details = ? WHERE id = ?",
                         (details, device_id))


def disable(store: Store, device_id: str) -> None:
    """Stop collecting from a device (its readings and raw frames stay)."""
    with store.write() as conn:
        conn.execute("UPDATE devices SET enabled = 0 WHERE id = ?", (device_id,))


def set_patient(store: Store, device_id: str, patient_id: str) -> None:
    with store.write() as conn:
        conn.execute("UPDATE devices SET patient_id = ? WHERE id = ?", (patient_id, device_id))


def assign_user(store: Store, device_id: str, user: int, patient_id: str) -> None:
    """Map one user slot of a multi-user device to a patient (replacing any earlier one)."""
    with store.write() as conn:
        conn.execute("INSERT INTO device_users (device_id, user_id, patient_id)"
                     " VALUES (?, ?, ?) ON CONFLICT(device_id, user_id)"
                     " DO UPDATE SET patient_id = excluded.patient_id",
                     (device_id, user, patient_id))


def add_user(store: Store, device_id: str, user: int, patient_id: str) -> None:
    """Map one user slot to a patient unless that slot is already mapped."""
    with store.write() as conn:
        conn.execute("INSERT OR IGNORE INTO device_users (device_id, user_id, patient_id)"
                     " VALUES (?, ?, ?)", (device_id, user, patient_id))
