"""Device management over the store: the allowlist the daemon starts sessions for.

Only devices added here get a session; a scan result is just a candidate.  Every change is
audited (actor = the OS user) and bumps ``settings_version`` so the running daemon picks it up
without a restart.  Radio work (scan, pair, forget) is in :mod:`edge_gateway.drivers.ble`.
"""

from __future__ import annotations

import os
import re
from typing import Any

from edge_gateway.drivers import registry
from edge_gateway.errors import NotFound, UsageError
from edge_gateway.store import Store
from edge_gateway.store import audit as audit_log
from edge_gateway.store import devices as device_rows
from edge_gateway.store import patients as patient_rows
from edge_gateway.store import settings as setting_rows
from edge_gateway.store.audit import os_actor

_ADDRESS = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")


def check_address(address: str) -> str:
    addr = address.strip().upper()
    if not _ADDRESS.match(addr):
        raise UsageError(f"{address!r} is not a Bluetooth address",
                         hint="six hex pairs, e.g. C0:FF:EE:00:00:01")
    return addr


def device_key(ident: str) -> str:
    """A device as the commands name it -> its id: a Bluetooth address (any case), a serial
    port path (``/dev/ttyUSB0`` -> ``serial-ttyUSB0``), or the id ``devices list`` shows."""
    text = ident.strip()
    if _ADDRESS.match(text.upper()):
        return text.upper()
    if text.startswith("/dev/"):
        return "serial-" + os.path.basename(text)
    if not text or len(text) > 128 or not text.isprintable() or any(c.isspace() for c in text):
        raise UsageError(f"{ident[:40]!r} is not a device id",
                         hint="a Bluetooth address, a serial port, or an id from "
                              "`edge-gateway devices list`")
    return text


def profile_of(service_uuids: list[str] | tuple[str, ...]) -> str | None:
    """The health profile a device advertises (``"glucose"``), or None."""
    for uuid in service_uuids:
        profile = registry.profile_for(uuid)
        if profile in registry.current().health_profiles:
            return profile
    return None


def add_device(store: Store, address: str, profile: str, *, name: str | None = None,
               patient: str | None = None, actor: str | None = None,
               force: bool = False) -> dict[str, Any]:
    """Add (or re-add) a BLE device.  A known device keeps its profile unless ``force``: a
    different one changes how every later frame is decoded, so it is asked for and audited."""
    addr = check_address(address)
    known = registry.current().health_profiles  # the profiles with PROFILE.scan
    if profile not in known:
        raise UsageError(f"unknown profile {profile!r}",
                         hint=f"one of {', '.join(sorted(known))}")
    if patient is not None:
        patient_rows.require(store, patient)
    before = store.device(addr)["profile"] if device_rows.exists(store, addr) else None
    if before is not None and before != profile and not force:
        raise UsageError(f"{addr} is already added with profile {before!r}",
                         hint=f"add --force to change it to {profile!r}")
    store.upsert_device(addr, profile=profile, name=name, address=addr, patient_id=patient)
    with store.transaction():
        device_rows.enable(store, addr)  # re-adding
        changed = {"profile_was": before} if before not in (None, profile) else {}
        audit_log.record(store, actor or os_actor(), "device.add", addr,
                         {"profile": profile, "patient": patient, **changed})
        setting_rows.bump_version(store)
    return store.device(addr)


#: Serial line protocols the gateway speaks, and the health profile each device has.
SERIAL_PROTOCOLS = {"masimo-rad8": "pulse_oximeter"}


def add_serial_device(store: Store, port: str, protocol: str, *, name: str | None = None,
                      patient: str | None = None, actor: str | None = None) -> dict[str, Any]:
    """Add a serial home sensor (``/dev/ttyUSB0`` speaking ``protocol``)."""
    import json

    if protocol not in SERIAL_PROTOCOLS:
        raise UsageError(f"unknown serial protocol {protocol!r}",
                         hint=f"one of {', '.join(sorted(SERIAL_PROTOCOLS))}")
    if not port.startswith("/dev/") and not os.path.exists(port):
        raise UsageError(f"{port!r} is not a serial port path",
                         hint="give the device path, e.g. /dev/ttyUSB0")
    if patient is not None:
        patient_rows.require(store, patient)
    dev_id = "serial-" + os.path.basename(port)
    store.upsert_device(dev_id, profile=SERIAL_PROTOCOLS[protocol], name=name or dev_id,
                        address=port, transport="serial", patient_id=patient)
    with store.transaction():
        device_rows.enable(store, dev_id, details=json.dumps({"protocol": protocol}))
        audit_log.record(
            store, actor or os_actor(), "device.add", dev_id,
            {"transport": "serial", "port": port, "protocol": protocol, "patient": patient})
        setting_rows.bump_version(store)
    return store.device(dev_id)


def assign(store: Store, address: str, patient: str, *, user: int | None = None,
           actor: str | None = None) -> dict[str, Any]:
    """Assign a device to a patient; with ``user``, one user slot of a multi-user cuff."""
    addr = device_key(address)
    store.device(addr)
    patient_rows.require(store, patient)
    with store.transaction():
        if user is None:
            device_rows.set_patient(store, addr, patient)
        else:
            if not 0 <= user <= 0xFE:
                raise UsageError(f"user slot {user} must be 0..254 (BLS User ID)")
            device_rows.assign_user(store, addr, user, patient)
        audit_log.record(store, actor or os_actor(), "device.assign", addr,
                         {"patient": patient, "user": user})
        setting_rows.bump_version(store)
    return show_device(store, addr)


def mark_bonded(store: Store, address: str, bonded: bool = True) -> None:
    store.update_device_state(check_address(address), bonded=int(bonded))


def show_device(store: Store, address: str) -> dict[str, Any]:
    dev = store.device(device_key(address))
    dev["users"] = [{"user": u, "patient": p} for u, p in device_rows.users(store, dev["id"])]
    return dev


def list_devices(store: Store) -> list[dict[str, Any]]:
    return [show_device(store, i) for i in device_rows.ids(store)]


def remove_device(store: Store, address: str, *, actor: str | None = None) -> None:
    """Stop collecting from a device.  Its readings and raw frames stay."""
    addr = device_key(address)
    with store.transaction():
        if not device_rows.exists(store, addr):
            raise NotFound("device", addr, hint="`edge-gateway devices list` shows them")
        device_rows.disable(store, addr)
        audit_log.record(store, actor or os_actor(), "device.remove", addr)
        setting_rows.bump_version(store)
