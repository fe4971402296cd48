"""devices scan|add|pair|assign|list|remove: which BLE devices the gateway collects from.

Thin commands over :mod:`edge_gateway.drivers.devices` (the allowlist in the store) and
:mod:`edge_gateway.drivers.ble` (scan, pair, forget through BlueZ).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import click

from edge_gateway.cli.base import Context, emit, main, with_context
from edge_gateway.cli.core import open_store
from edge_gateway.drivers import devices as D
from edge_gateway.drivers import registry
from edge_gateway.errors import DeviceError, UsageError


def _ble() -> Any:
    from edge_gateway.drivers import ble  # bleak only for the commands that use the radio

    return ble


def _adapter(ctx: Context) -> str:
    return str(ctx.load_config().ble.adapter)


@main.group()
def devices() -> None:
    """Find, pair, add, assign and remove BLE health devices.

    Example:

        edge-gateway devices scan
    """


@devices.command("scan")
@click.option("--seconds", default=5.0, show_default=True, help="How long to listen.")
@click.option("--all", "everything", is_flag=True, help="Show every device, not only health ones.")
@with_context(json=True)
def devices_scan(ctx: Context, seconds: float, everything: bool, as_json: bool) -> None:
    """List nearby BLE devices advertising a health service.

    Example:

        edge-gateway devices scan --seconds 10
    """
    # The health services: every profile that declares ``scan`` (PROFILE in drivers/profiles).
    health = registry.current().scan_services
    found = asyncio.run(_ble().scan(seconds, () if everything else health,
                                 adapter=_adapter(ctx)))
    rows = [{"address": f.address, "name": f.name, "rssi": f.rssi,
             "profile": D.profile_of(f.services), "services": list(f.services)} for f in found]
    emit(rows, as_json, (f"{r['address']}  {r['rssi']:>4} dBm  {r['profile'] or '-':<15}"
                         f" {r['name'] or ''}" for r in rows),
         empty="nothing found (is the device awake and advertising?)")


@devices.command("add")
@click.argument("address")
@click.option("--profile", type=click.Choice(sorted(registry.current().health_profiles)),
              default=None,
              help="Health profile; found by a short scan when omitted.")
@click.option("--name", default=None, help="A name to show instead of the advertised one.")
@click.option("--patient", default=None, help="Assign the device to this patient.")
@click.option("--serial", "serial_protocol", type=click.Choice(sorted(D.SERIAL_PROTOCOLS)),
              default=None, help="ADDRESS is a serial port (/dev/ttyUSB0) with a home sensor "
              "speaking this protocol.")
@click.option("--force", is_flag=True,
              help="Change the profile of a device already added (audited).")
@with_context(json=True)
def devices_add(ctx: Context, address: str, profile: str | None, name: str | None,
                patient: str | None, serial_protocol: str | None, force: bool,
                as_json: bool) -> None:
    """Add a device to the allowlist; the daemon starts collecting from it.

    A serial port that is not plugged in now is accepted with a warning (the daemon opens it
    when it appears).  A device already added keeps its profile unless --force is given.

    Example:

        edge-gateway devices add C0:FF:EE:00:00:01 --patient alice

        edge-gateway devices add /dev/ttyUSB0 --serial masimo-rad8 --patient alice
    """
    if serial_protocol is not None:
        dev = D.add_serial_device(open_store(ctx), address, serial_protocol, name=name,
                                  patient=patient)
        if not os.path.exists(address):
            click.echo(f"warning: {address} is not present now; the daemon opens it when the"
                       " sensor is plugged in", err=True)
        emit(dev, as_json, f"added {dev['id']} ({address}, {serial_protocol})")
        return
    addr = D.check_address(address)
    if profile is None:
        seen = asyncio.run(_ble().find(addr, 10.0, adapter=_adapter(ctx)))
        if seen is None:
            raise DeviceError(addr, "not seen in a 10 s scan", retryable=True,
                              hint="wake the device, or give --profile")
        profile = D.profile_of(seen.services)
        name = name or seen.name
        if profile is None:
            raise UsageError(f"{addr} advertises no health service this gateway knows",
                             hint="give --profile")
    dev = D.add_device(open_store(ctx), addr, profile, name=name, patient=patient,
                       force=force)
    pair = profile in registry.current().needs_bond and not dev.get("bonded")
    emit(dev, as_json, [f"added {addr} ({profile})",
                        *([f"next: edge-gateway devices pair {addr}"] if pair else [])])


@devices.command("pair")
@click.argument("address")
@click.option("--passkey", type=int, default=None,
              help="The six digits the device shows; asked for when needed if omitted.")
@with_context()
def devices_pair(ctx: Context, address: str, passkey: int | None) -> None:
    """Pair (bond) with a device; glucose meters and cuffs need it before giving records.

    Example:

        edge-gateway devices pair C0:FF:EE:00:00:01
    """
    addr = D.check_address(address)

    async def ask(_address: str) -> int:
        if passkey is not None:
            return passkey
        value: Any = await asyncio.to_thread(
            click.prompt, f"Passkey shown on {addr}", type=int)
        return int(value)

    asyncio.run(_ble().pair(addr, ask, adapter=_adapter(ctx)))
    D.mark_bonded(open_store(ctx), addr)  # no-op for a device not added yet
    click.echo(f"paired with {addr}")


@devices.command("assign")
@click.argument("address")
@click.argument("patient")
@click.option("--user", type=int, default=None,
              help="User slot of a multi-user blood-pressure cuff (BLS User ID).")
@with_context(json=True)
def devices_assign(ctx: Context, address: str, patient: str, user: int | None,
                   as_json: bool) -> None:
    """Assign a device (or one user slot of a cuff) to a patient.

    Example:

        edge-gateway devices assign C0:FF:EE:00:00:02 bob --user 2
    """
    dev = D.assign(open_store(ctx), address, patient, user=user)
    emit(dev, as_json, f"{dev['id']} -> {patient}"
         + (f" (user {user})" if user is not None else ""))


@devices.command("list")
@with_context(json=True)
def devices_list(ctx: Context, as_json: bool) -> None:
    """List the devices the gateway collects from.

    Example:

        edge-gateway devices list --json
    """
    rows = D.list_devices(open_store(ctx, readonly=True))
    emit(rows, as_json, (_device_line(d) for d in rows),
         empty="no devices yet (find one with: edge-gateway devices scan)")


def _device_line(d: dict[str, Any]) -> str:
    users = ",".join(f"{u['user']}:{u['patient']}" for u in d["users"])
    return (f"{d['id']}  {d['profile']:<15} {d['name'] or '-':<20}"
            f" patient={d['patient_id'] or '-'}{' users=' + users if users else ''}"
            f" bonded={'yes' if d['bonded'] else 'no'}"
            f" {'enabled' if d['enabled'] else 'removed'}"
            f" connected={'yes' if d['connected'] else 'no'}")


@devices.command("remove")
@click.argument("address")
@click.option("--forget", is_flag=True, help="Also delete the bond from the Bluetooth stack.")
@with_context()
def devices_remove(ctx: Context, address: str, forget: bool) -> None:
    """Stop collecting from a device (its readings stay).

    ADDRESS is a Bluetooth address, a serial port (/dev/ttyUSB0) or an id from `devices list`.

    Example:

        edge-gateway devices remove C0:FF:EE:00:00:01 --forget

        edge-gateway devices remove serial-ttyUSB0
    """
    addr = D.device_key(address)
    store = open_store(ctx)
    if forget and store.device(addr)["transport"] != "ble":
        raise UsageError(f"{addr} is not a Bluetooth device", hint="drop --forget")
    D.remove_device(store, addr)
    if forget:
        asyncio.run(_ble().forget(addr, adapter=_adapter(ctx)))
    click.echo(f"removed {addr}")
