"""Device management over the store: the allowlist the daemon starts sessions for.

Only devices added here get a session; a scan result is just a candidate.  Every change is
audited (actor = the OS user) and bumps ``settings_version`` so the running daemon picks it up
without a restart.  Radio work (scan, pair, forget) is in :mod:`edge_gateway.drivers.ble`.
"""

from __future__ import annotations

import re
from typing import Any

from edge_gateway.alerts.thresholds import bump_settings_version
from edge_gateway.care.caregiver import audit, os_actor, require_patient
from edge_gateway.drivers import registry
from edge_gateway.errors import NotFound, UsageError
from edge_gateway.store import Store

_ADDRESS = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
PROFILES = frozenset(p for p in registry.SERVICES.values()
                     if p not in ("battery", "device_information", "current_time"))
#: Profiles whose records need a bond before a device hands them out (GLS §5.1, BLS §5.1).
NEEDS_BOND = frozenset({"glucose", "blood_pressure"})


def check_address(address: str) -> str:
    addr = address.strip().upper()
    if not _ADDRESS.match(addr):
        raise UsageError(f"{address!r} is not a Bluetooth address",
                         hint="six hex pairs, e.g. C0:FF:EE:00:00:01")
    return addr


def profile_of(service_uuids: list[str] | tuple[str, ...]) -> str | None:
    """The health profile a device advertises (``"glucose"``), or None."""
    for uuid in service_uuids:
        profile = registry.profile_for(uuid)
        if profile in PROFILES:
            return profile
    return None


def add_device(store: Store, address: str, profile: str, *, name: str | None = None,
               patient: str | None = None, actor: str | None = None) -> dict[str, Any]:
    addr = check_address(address)
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}",
                         hint=f"one of {', '.join(sorted(PROFILES))}")
    if patient is not None:
        require_patient(store, patient)
    store.upsert_device(addr, profile=profile, name=name, address=addr, patient_id=patient)
    with store.transaction() as conn:
        conn.execute("UPDATE devices SET enabled = 1 WHERE id = ?", (addr,))  # re-adding
        audit(conn, actor or os_actor(), "device.add", addr,
              {"profile": profile, "patient": patient})
        bump_settings_version(conn)
    return store.device(addr)


#: Serial line protocols the gateway speaks, and the health profile each device has.
SERIAL_PROTOCOLS = {"masimo-rad8": "pulse_oximeter"}


def add_serial_device(store: Store, port: str, protocol: str, *, name: str | None = None,
                      patient: str | None = None, actor: str | None = None) -> dict[str, Any]:
    """Add a serial home sensor (``/dev/ttyUSB0`` speaking ``protocol``)."""
    import json
    import os.path

    if protocol not in SERIAL_PROTOCOLS:
        raise UsageError(f"unknown serial protocol {protocol!r}",
                         hint=f"one of {', '.join(sorted(SERIAL_PROTOCOLS))}")
    if not port.startswith("/dev/") and not os.path.exists(port):
        raise UsageError(f"{port!r} is not a serial port path",
                         hint="give the device path, e.g. /dev/ttyUSB0")
    if patient is not None:
        require_patient(store, patient)
    dev_id = "serial-" + os.path.basename(port)
    store.upsert_device(dev_id, profile=SERIAL_PROTOCOLS[protocol], name=name or dev_id,
                        address=port, transport="serial", patient_id=patient)
    with store.transaction() as conn:
        conn.execute("UPDATE devices SET enabled = 1, details = ? WHERE id = ?",
                     (json.dumps({"protocol": protocol}), dev_id))
        audit(conn, actor or os_actor(), "device.add", dev_id,
              {"transport": "serial", "port": port, "protocol": protocol, "patient": patient})
        bump_settings_version(conn)
    return store.device(dev_id)


def assign(store: Store, address: str, patient: str, *, user: int | None = None,
           actor: str | None = None) -> dict[str, Any]:
    """Assign a device to a patient; with ``user``, one user slot of a multi-user cuff."""
    addr = check_address(address)
    store.device(addr)
    require_patient(store, patient)
    with store.transaction() as conn:
        if user is None:
            conn.execute("UPDATE devices SET patient_id = ? WHERE id = ?", (patient, addr))
        else:
            if not 0 <= user <= 0xFE:
                raise UsageError(f"user slot {user} must be 0..254 (BLS User ID)")
            conn.execute("INSERT INTO device_users (device_id, user_id, patient_id)"
                         " VALUES (?, ?, ?) ON CONFLICT(device_id, user_id)"
                         " DO UPDATE SET patient_id = excluded.patient_id", (addr, user, patient))
        audit(conn, actor or os_actor(), "device.assign", addr, {"patient": patient, "user": user})
        bump_settings_version(conn)
    return show_device(store, addr)


def mark_bonded(store: Store, address: str, bonded: bool = True) -> None:
    store.update_device_state(check_address(address), bonded=int(bonded))


def show_device(store: Store, address: str) -> dict[str, Any]:
    dev = store.device(check_address(address))
    dev["users"] = [{"user": u, "patient": p} for u, p in store.conn.execute(
        "SELECT user_id, patient_id FROM device_users WHERE device_id = ? ORDER BY user_id",
        (dev["id"],))]
    return dev


def list_devices(store: Store) -> list[dict[str, Any]]:
    ids = [row[0] for row in store.conn.execute("SELECT id FROM devices ORDER BY id")]
    return [show_device(store, i) for i in ids]


def remove_device(store: Store, address: str, *, actor: str | None = None) -> None:
    """Stop collecting from a device.  Its readings and raw frames stay."""
    addr = check_address(address)
    with store.transaction() as conn:
        if conn.execute("SELECT 1 FROM devices WHERE id = ?", (addr,)).fetchone() is None:
            raise NotFound("device", addr, hint="`edge-gateway devices list` shows them")
        conn.execute("UPDATE devices SET enabled = 0 WHERE id = ?", (addr,))
        audit(conn, actor or os_actor(), "device.remove", addr)
        bump_settings_version(conn)
