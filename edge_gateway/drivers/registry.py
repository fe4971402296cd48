"""Every table about profiles, built from the profile modules themselves.

A profile is one module in :mod:`edge_gateway.drivers.profiles` that declares ``PROFILE`` (or
``PROFILES``, several): a :class:`~edge_gateway.drivers.profiles.base.Profile`.  This module
finds them by itself (``pkgutil.iter_modules`` over the package's ``__path__``), so a new
profile is that one file: its service, codecs, measurements, what the session subscribes to
or reads, its continuous streams, bonding, RACP backfill and any reading kinds of its own.

Keys are characteristic and service UUIDs as :func:`short_uuid` spells them (``"2a37"``, or a
vendor's canonical 36-character UUID); a serial protocol's frames are ``serial:<protocol>``.
The tables are built once, on first use, and rebuilt by :func:`rebuild` (tests that add a
profile directory to the package path).  Pure: importing modules is all it does.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType, ModuleType
from typing import Any

from edge_gateway import units
from edge_gateway.drivers import profiles
from edge_gateway.drivers.profiles.base import Codec, Profile, Racp, ToReadings, short_uuid
from edge_gateway.errors import MalformedPayload
from edge_gateway.reading import Reading
from edge_gateway.units import Kind

SERIAL_PREFIX = "serial:"


def char_key(uuid: str) -> str:
    """The table key of a characteristic: :func:`short_uuid`, or ``serial:<protocol>`` as is.

    Raises ``ValueError`` for text that is neither.
    """
    return uuid if uuid.startswith(SERIAL_PREFIX) else short_uuid(uuid)


@dataclass(frozen=True, eq=False)
class Registry:
    """The tables built from every declared :class:`Profile` (read-only)."""

    profiles: tuple[Profile, ...]
    #: Service UUID -> profile name.
    services: Mapping[str, str]
    #: Characteristic -> codec class.
    codecs: Mapping[str, type[Codec]]
    #: Characteristic -> ``to_readings`` (the characteristics that carry measurements).
    readings: Mapping[str, ToReadings]
    #: What a session subscribes to, reads each connection, reads on the first one.
    subscribe: tuple[str, ...]
    read_once: tuple[str, ...]
    read_first: tuple[str, ...]
    streams: frozenset[str]
    #: Profile names whose devices must be bonded before they hand out records.
    needs_bond: frozenset[str]
    #: Records characteristic -> its RACP description (with normalised UUIDs).
    racp: Mapping[str, Racp]
    #: Every reading kind: the core table merged with the profiles' own.
    kinds: Mapping[str, Kind]

    @property
    def health_profiles(self) -> frozenset[str]:
        """Names of the profiles a device can be added as (``scan``: health services)."""
        return frozenset(p.name for p in self.profiles if p.scan and p.service is not None)

    @property
    def scan_services(self) -> tuple[str, ...]:
        """Service UUIDs ``devices scan`` filters on."""
        return tuple(short_uuid(p.service) for p in self.profiles
                     if p.scan and p.service is not None)


def discover() -> list[Profile]:
    """Import every module of the profiles package; collect its PROFILE / PROFILES."""
    found: list[Profile] = []
    for info in sorted(pkgutil.iter_modules(profiles.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{profiles.__name__}.{info.name}")
        found.extend(_declared(module))
    return found


def _declared(module: ModuleType) -> list[Profile]:
    out: list[Profile] = []
    one = getattr(module, "PROFILE", None)
    if one is not None:
        out.append(one)
    out.extend(getattr(module, "PROFILES", ()))
    for p in out:
        if not isinstance(p, Profile):
            raise TypeError(f"{module.__name__}: PROFILE/PROFILES must hold Profile objects")
    return out


def _add(table: dict[str, Any], key: str, value: Any, what: str, owner: str) -> None:
    old = table.get(key)
    if old is not None and old != value:
        raise ValueError(f"profile {owner}: {what} {key} is declared twice, differently")
    table[key] = value


def build(found: list[Profile] | None = None) -> Registry:
    """The tables from ``found`` (default: :func:`discover`).  Raises ``ValueError`` when two
    profiles disagree (one characteristic, two codecs; a kind that clashes with a core kind)
    or a profile contradicts itself (a measurement without a codec, RACP records that are not
    subscribed)."""
    # Health profiles first, support services (battery, device information) after them: a
    # session reads a device's own characteristics before its battery level.
    ordered = sorted(discover() if found is None else found, key=lambda p: not p.scan)
    services: dict[str, str] = {}
    codecs: dict[str, type[Codec]] = {}
    readings: dict[str, ToReadings] = {}
    subscribe: list[str] = []
    read_once: list[str] = []
    read_first: list[str] = []
    streams: set[str] = set()
    racp: dict[str, Racp] = {}
    kinds = dict(units.KINDS)
    core = dict(kinds)
    names: set[str] = set()

    def keys(chars: tuple[str, ...]) -> list[str]:
        return [char_key(c) for c in chars]

    for p in ordered:
        if p.name in names:
            raise ValueError(f"profile {p.name} is declared twice")
        names.add(p.name)
        if p.service is not None:
            _add(services, short_uuid(p.service), p.name, "service", p.name)
        for codec in p.codecs:
            _add(codecs, char_key(codec.characteristic), codec, "characteristic", p.name)
        for char, fn in p.measurements.items():
            if char_key(char) not in codecs:
                raise ValueError(f"profile {p.name}: measurement {char} has no codec")
            _add(readings, char_key(char), fn, "measurement", p.name)
        subscribe += [c for c in keys(p.subscribe) if c not in subscribe]
        read_once += [c for c in keys(p.read_once) if c not in read_once]
        read_first += [c for c in keys(p.read_first) if c not in read_first]
        streams.update(keys(p.streams))
        if p.racp is not None:
            spec = Racp(char_key(p.racp.records), p.racp.identity, tuple(keys(p.racp.also)),
                        None if p.racp.session is None else char_key(p.racp.session))
            if spec.records not in keys(p.subscribe):
                raise ValueError(f"profile {p.name}: RACP records {spec.records} are not "
                                 "subscribed")
            _add(racp, spec.records, spec, "RACP records", p.name)
        for kind in p.kinds:
            if kind.name in core and core[kind.name] != kind:
                raise ValueError(f"profile {p.name}: kind {kind.name!r} clashes with the "
                                 "core kind of that name (edge_gateway.units.KINDS)")
            _add(kinds, kind.name, kind, "kind", p.name)
    return Registry(
        profiles=tuple(ordered), services=MappingProxyType(services),
        codecs=MappingProxyType(codecs), readings=MappingProxyType(readings),
        subscribe=tuple(subscribe), read_once=tuple(read_once),
        read_first=tuple(read_first), streams=frozenset(streams),
        needs_bond=frozenset(p.name for p in ordered if p.needs_bond),
        racp=MappingProxyType(racp), kinds=MappingProxyType(kinds),
    )


_current: Registry | None = None


def current() -> Registry:
    """The registry, built on first use."""
    global _current
    if _current is None:
        _current = build()
    return _current


def rebuild() -> Registry:
    """Discover the profiles again (after ``profiles.__path__`` changed) and use the result."""
    global _current
    _current = build()
    return _current


class _Live(Mapping[str, Any]):
    """A read-only view of one table of the current registry (follows :func:`rebuild`)."""

    def __init__(self, table: Callable[[Registry], Mapping[str, Any]]) -> None:
        self._table = table

    def __getitem__(self, key: str) -> Any:
        return self._table(current())[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table(current()))

    def __len__(self) -> int:
        return len(self._table(current()))


#: Service UUID -> profile name.
SERVICES: Mapping[str, str] = _Live(lambda r: r.services)
#: Characteristic UUID -> codec class.
CODECS: Mapping[str, type[Codec]] = _Live(lambda r: r.codecs)
#: Characteristic UUID -> ``to_readings`` for characteristics that carry measurements.
READINGS: Mapping[str, ToReadings] = _Live(lambda r: r.readings)


def kinds() -> Mapping[str, Kind]:
    """Every reading kind by name: ``units.KINDS`` merged with the profiles' own kinds."""
    return current().kinds


def codec_for(characteristic: str) -> type[Codec] | None:
    return current().codecs.get(char_key(characteristic))


def profile_for(service: str) -> str | None:
    return current().services.get(short_uuid(service))


def decode(characteristic: str, raw: bytes) -> Any:
    """Decode ``raw`` with the characteristic's codec; ``MalformedPayload`` when it does not
    fit, ``KeyError`` when no codec is registered for it."""
    uuid = char_key(characteristic)
    codec = current().codecs.get(uuid)
    if codec is None:
        raise KeyError(uuid)
    return codec.from_bytes(bytes(raw))


def to_readings(characteristic: str, raw: bytes, *, device_id: str, received_at: datetime,
                device_clock_offset: timedelta | None, reset_epoch: int = 0,
                session_start: datetime | None = None) -> list[Reading]:
    """Decode a notification/indication and turn it into Readings (``[]`` for
    characteristics that carry no measurement)."""
    uuid = char_key(characteristic)
    fn = current().readings.get(uuid)
    if fn is None:
        return []
    decoded = decode(uuid, raw)
    return fn(decoded, device_id=device_id, characteristic=uuid, received_at=received_at,
              device_clock_offset=device_clock_offset, reset_epoch=reset_epoch,
              session_start=session_start)


def decode_readings(characteristic: str, raw: bytes, *, device_id: str,
                    received_at: datetime, device_clock_offset: timedelta | None,
                    reset_epoch: int = 0, session_start: datetime | None = None,
                    ) -> list[Reading]:
    """The name the frame pipeline uses for :func:`to_readings`."""
    return to_readings(characteristic, raw, device_id=device_id, received_at=received_at,
                       device_clock_offset=device_clock_offset, reset_epoch=reset_epoch,
                       session_start=session_start)


__all__ = ["CODECS", "READINGS", "SERVICES", "MalformedPayload", "Registry", "build",
           "char_key", "codec_for", "current", "decode", "decode_readings", "discover",
           "kinds", "profile_for", "rebuild", "to_readings"]
