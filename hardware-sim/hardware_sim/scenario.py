"""Scenarios: TOML files naming the simulated devices, their physiology and their faults.

A scenario is picked by name (``demo`` → ``hardware_sim/scenarios/demo.toml``, shipped in the
wheel) or by path, validated once, and built into configured peripherals for a given start
time::

    spec = load_scenario("demo")                       # ScenarioSpec, or ConfigError
    sim = build_scenario(spec, start=now, clock=clock, runtime_dir=tmp)
    sim.peripherals   # list[SimPeripheral], ready for VirtualBlueZ(bus, sim.peripherals)
    sim.serial        # list[SerialSensor], not opened yet (call .open() / .run())

Times inside a file are relative, so a scenario means the same thing whenever it runs:
episodes start at an offset from the start (``at = "+2m"``), night-time lows at a local time
of day some nights back (``at = "03:10"``, ``days_ago = 0`` is the most recent night).
Durations are ``"300ms"``, ``"45s"``, ``"5m"``, ``"2h"``, ``"13d12h"``, ``"3y"`` (365-day
years), optionally signed, or plain numbers of seconds.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from edge_gateway.errors import ConfigError

from .generators import (
    DEFAULT_BP_USERS,
    RR_EPISODES,
    BpUser,
    CgmProfile,
    Episode,
    RRProfile,
    last_local_time,
)
from .peripheral import Faults
from .peripherals.base import Clock, FrameFaults, SimPeripheral, wall_clock
from .peripherals.blood_pressure import BloodPressureCuff
from .peripherals.cgm import CgmSensor
from .peripherals.clinic import (
    ClinicCuff,
    ClinicMeter,
    ClinicScale,
    ClinicThermometer,
    SpotCheckOximeter,
)
from .peripherals.glucose_meter import GlucoseMeter
from .peripherals.heart_rate import HeartRateStrap
from .peripherals.pulse_oximeter import PulseOximeter
from .peripherals.thermometer import Scale, Thermometer
from .serial_sensor import SerialFaults, SerialSensor

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
          "y": 365 * 86400.0}
_DESAT = frozenset({"desaturation"})
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(value: object, *, where: str = "", key: str = "") -> timedelta:
    """``"1h30m"``, ``"-3y"``, ``"300ms"`` or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(where, key, f"{value!r} is not a duration")
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    if not isinstance(value, str):
        raise ConfigError(where, key, f"{value!r} is not a duration")
    text = value.strip().replace(" ", "")
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    parts = _PART.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise ConfigError(where, key, f"{value!r} is not a duration",
                          hint='write e.g. "45s", "5m", "1h30m", "13d12h", "-3y"')
    return timedelta(seconds=sign * sum(float(n) * _UNITS[u] for n, u in parts))


def _hour_of_day(value: object, where: str, key: str) -> float:
    m = re.fullmatch(r"(\d{1,2}):(\d\d)", str(value))
    if m is None or int(m[1]) > 23 or int(m[2]) > 59:
        raise ConfigError(where, key, f"{value!r} is not a time of day", hint='write "03:10"')
    return int(m[1]) + int(m[2]) / 60.0


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """A validated scenario file (nothing built yet)."""

    name: str
    path: str
    description: str
    seed: int
    utc_offset: timedelta
    peripherals: tuple[Mapping[str, Any], ...]
    serial: tuple[Mapping[str, Any], ...]
    #: The gateway config the scenario is meant for, as TOML sections (``[ble]``
    #: ``max_connections = 7``); the gateway's own loader validates it.
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Simulation:
    """A built scenario: devices configured for one start time."""

    spec: ScenarioSpec
    start: datetime
    peripherals: list[SimPeripheral]
    serial: list[SerialSensor]

    def peripheral(self, name_or_address: str) -> SimPeripheral:
        for p in self.peripherals:
            if name_or_address in (p.name, p.address):
                return p
        raise KeyError(name_or_address)


def scenario_names() -> list[str]:
    """The scenarios shipped with hardware-sim."""
    folder = resources.files("hardware_sim") / "scenarios"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_scenario(name_or_path: str | Path) -> ScenarioSpec:
    """Read and validate a scenario by shipped name or by file path."""
    text_name = str(name_or_path)
    if text_name.endswith(".toml") or "/" in text_name:
        path = Path(text_name)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise ConfigError(str(path), "", f"cannot read scenario: {e.strerror}") from None
        where = str(path)
    else:
        res = resources.files("hardware_sim") / "scenarios" / f"{text_name}.toml"
        if not res.is_file():
            names = ", ".join(scenario_names())
            raise ConfigError(text_name, "", "no such scenario", hint=f"shipped: {names}")
        raw = res.read_bytes()
        where = f"scenarios/{text_name}.toml"
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(where, "", f"not valid TOML: {e}") from None
    return _validate(doc, where)


_TOP = {"name", "description", "seed", "utc_offset", "peripheral", "serial"}
#: Gateway config sections a scenario may state (``[ble]``); see ``ScenarioSpec.config``.
_CONFIG_SECTIONS = {"ble", "daemon"}
_COMMON = {"kind", "address", "name", "seed", "battery", "rssi", "requires_pairing", "passkey",
           "faults"}
_KIND_KEYS: dict[str, set[str]] = {
    "heart_rate": {"mean_hr", "ectopic_per_hour", "interval", "episodes"},
    "cgm": {"lows", "session_age", "noise_sd", "baseline", "warmup"},
    "glucose_meter": {"history", "new_record_every", "pace", "record_every"},
    "blood_pressure": {"history", "users", "record_every", "records"},
    "pulse_oximeter": {"pulse", "interval", "episodes"},
    "thermometer": {"history", "episodes", "record_every"},
    "scale": {"history", "baseline_kg", "record_every"},
    # Store-only: spot-checks indicated on connect (peripherals/clinic.py).
    "spot_check_oximeter": {"history", "pulse", "baseline", "record_every"},
}
_FAULT_KEYS = {"refuse_connections", "link_loss_after", "link_loss_once", "indication_delay",
               "connect_delay", "corrupt_every", "truncate_every", "clock_offset",
               "reboot_before_connect"}
_SERIAL_KEYS = {"protocol", "name", "seed", "link", "serial_number", "interval", "pulse",
                "episodes", "faults"}
_SERIAL_FAULT_KEYS = {"corrupt_share", "truncate_share", "unplug_at", "unplug_for",
                      "unplug_every", "clock_offset", "sensor_off"}


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str, key: str) -> None:
    for k in table:
        if k not in allowed:
            raise ConfigError(where, f"{key}.{k}" if key else k, "unknown key",
                              hint="known: " + ", ".join(sorted(allowed)))


def _validate(doc: Mapping[str, Any], where: str) -> ScenarioSpec:
    _check_keys(doc, _TOP | _CONFIG_SECTIONS, where, "")
    seed = doc.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(where, "seed", "must be an integer")
    peripherals = doc.get("peripheral", [])
    if not isinstance(peripherals, list):
        raise ConfigError(where, "peripheral", "must be an array of tables ([[peripheral]])")
    addresses: set[str] = set()
    for i, p in enumerate(peripherals):
        key = f"peripheral[{i}]"
        kind = p.get("kind")
        if kind not in _KIND_KEYS:
            raise ConfigError(where, f"{key}.kind", f"unknown kind {kind!r}",
                              hint="one of: " + ", ".join(sorted(_KIND_KEYS)))
        _check_keys(p, _COMMON | _KIND_KEYS[kind], where, key)
        address = str(p.get("address", "")).upper()
        if re.fullmatch(r"([0-9A-F]{2}:){5}[0-9A-F]{2}", address) is None:
            raise ConfigError(where, f"{key}.address", f"{p.get('address')!r} is not a "
                              "Bluetooth address", hint='write "C0:FF:EE:00:00:01"')
        if address in addresses:
            raise ConfigError(where, f"{key}.address", f"{address} is used twice")
        addresses.add(address)
        _check_keys(p.get("faults", {}), _FAULT_KEYS, where, f"{key}.faults")
    serial = doc.get("serial", [])
    for i, s in enumerate(serial):
        _check_keys(s, _SERIAL_KEYS, where, f"serial[{i}]")
        _check_keys(s.get("faults", {}), _SERIAL_FAULT_KEYS, where, f"serial[{i}].faults")
        if s.get("protocol", "masimo-rad8") != "masimo-rad8":
            raise ConfigError(where, f"serial[{i}].protocol", "only masimo-rad8 is simulated")
    spec = ScenarioSpec(
        name=str(doc.get("name", Path(where).stem)), path=where,
        description=str(doc.get("description", "")), seed=seed,
        utc_offset=parse_duration(doc.get("utc_offset", 0), where=where, key="utc_offset"),
        peripherals=tuple(peripherals), serial=tuple(serial),
        config={k: dict(doc[k]) for k in sorted(_CONFIG_SECTIONS) if k in doc},
    )
    # Build once against a fixed time so every value error surfaces at load, not at run time.
    build_scenario(spec, start=datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    return spec


# -- building ----------------------------------------------------------------------------------


class _Ctx:
    """What a builder needs to turn one table into one device."""

    def __init__(self, spec: ScenarioSpec, table: Mapping[str, Any], key: str,
                 start: datetime) -> None:
        self.spec = spec
        self.t = table
        self.key = key
        self.start = start

    def dur(self, name: str, default: timedelta) -> timedelta:
        if name not in self.t:
            return default
        return parse_duration(self.t[name], where=self.spec.path, key=f"{self.key}.{name}")

    def num(self, name: str, default: float) -> float:
        v = self.t.get(name, default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(self.spec.path, f"{self.key}.{name}", f"{v!r} is not a number")
        return float(v)

    def episodes(self, kinds: frozenset[str]) -> tuple[Episode, ...]:
        out = []
        for i, e in enumerate(self.t.get("episodes", [])):
            k = f"{self.key}.episodes[{i}]"
            _check_keys(e, {"kind", "at", "duration", "rate"}, self.spec.path, k)
            if "kind" not in e or "duration" not in e:
                raise ConfigError(self.spec.path, k, "an episode needs kind and duration")
            if e["kind"] not in kinds:
                raise ConfigError(self.spec.path, f"{k}.kind", f"unknown episode {e['kind']!r}",
                                  hint="here: " + ", ".join(sorted(kinds)))
            at = parse_duration(e.get("at", 0), where=self.spec.path, key=f"{k}.at")
            length = parse_duration(e["duration"], where=self.spec.path, key=f"{k}.duration")
            rate = e.get("rate")
            out.append(Episode(str(e["kind"]), self.start + at, length,
                               None if rate is None else float(rate)))
        return tuple(out)


def _faults(c: _Ctx) -> tuple[Faults, FrameFaults]:
    f = c.t.get("faults", {})
    key = f"{c.key}.faults"

    def opt(name: str) -> float | None:
        if name not in f:
            return None
        return parse_duration(f[name], where=c.spec.path, key=f"{key}.{name}").total_seconds()

    faults = Faults(
        refuse_connections=int(f.get("refuse_connections", 0)),
        link_loss_after=opt("link_loss_after"),
        link_loss_once=bool(f.get("link_loss_once", True)),
        indication_delay=opt("indication_delay") or 0.0,
        connect_delay=opt("connect_delay") or 0.0,
    )
    reboot = f.get("reboot_before_connect")
    frame = FrameFaults(
        corrupt_every=int(f.get("corrupt_every", 0)),
        truncate_every=int(f.get("truncate_every", 0)),
        clock_offset=timedelta(seconds=opt("clock_offset") or 0.0),
        reboot_before_connect=None if reboot is None else int(reboot),
    )
    return faults, frame


def _heart_rate(c: _Ctx, kw: dict[str, Any]) -> SimPeripheral:
    profile = RRProfile(mean_hr_bpm=c.num("mean_hr", 64.0),
                        ectopic_per_hour=c.num("ectopic_per_hour", 4.0),
                        episodes=c.episodes(RR_EPISODES))
    return HeartRateStrap(profile=profile, interval_s=c.num("interval", 1.0), **kw)


def _cgm(c: _Ctx, kw: dict[str, Any]) -> SimPeripheral:
    lows = []
    nadir = 48.0
    for i, low in enumerate(c.t.get("lows", [])):
        k = f"{c.key}.lows[{i}]"
        _check_keys(low, {"at", "days_ago", "nadir"}, c.spec.path, k)
        hour = _hour_of_day(low.get("at", "03:00"), c.spec.path, f"{k}.at")
        lows.append(last_local_time(c.start, hour, days_ago=int(low.get("days_ago", 0)),
                                    utc_offset=c.spec.utc_offset))
        nadir = float(low.get("nadir", nadir))
    profile = CgmProfile(
        baseline_mg_dl=c.num("baseline", 118.0), noise_sd_mg_dl=c.num("noise_sd", 7.0),
        warmup_min=int(c.dur("warmup", timedelta(hours=1)).total_seconds() // 60),
        low_nadir_mg_dl=nadir, lows=tuple(lows), utc_offset=c.spec.utc_offset,
    )
    return CgmSensor(profile=profile,
                     session_age=c.dur("session_age", timedelta(days=13, hours=12)), **kw)


def _every(c: _Ctx, kw: dict[str, Any], plain: type[Any], clinic: type[Any]) -> type[Any]:
    """The clinic variant of a store-only device when the table asks for a record every so
    often (time scaled down for tests and benchmarks), else the plain one."""
    if "record_every" not in c.t:
        return plain
    kw["record_every_s"] = c.dur("record_every", timedelta(0)).total_seconds()
    return clinic


def _glucose_meter(c: _Ctx, kw: dict[str, Any]) -> SimPeripheral:
    every = c.dur("new_record_every", timedelta(0)).total_seconds()
    meter: type[GlucoseMeter] = _every(c, kw, GlucoseMeter, ClinicMeter)
    return meter(history=c.dur("history", timedelta(days=14)),
                 new_record_every_s=every or None, pace_s=c.num("pace", 0.0), **kw)


def _blood_pressure(c: _Ctx, kw: dict[str, Any]) -> SimPeripheral:
    users: tuple[BpUser, ...] = DEFAULT_BP_USERS
    if "users" in c.t:
        users = tuple(
            BpUser(int(u["id"]), float(u["systolic"]), float(u["diastolic"]),
                   float(u.get("pulse", 70.0)),
                   irregular_share=float(u.get("irregular_share", 0.0)))
            for u in c.t["users"]
        )
    cuff: type[BloodPressureCuff] = _every(c, kw, BloodPressureCuff, ClinicCuff)
    return cuff(users=users, history=c.dur("history", timedelta(days=14)),
                records=bool(c.t.get("records", False)), **kw)


def _pulse_oximeter(c: _Ctx, kw: dict[str, Any]) -> SimPeripheral:
    return PulseOximeter(pulse_bpm=c.num("pulse", 68.0), episodes=c.episodes(_DESAT),
                         interval_s=c.num("interval", 1.0), **kw)


def _thermometer(c: _Ctx, kw: dict[str, Any]) -> SimPeripheral:
    thermometer: type[Thermometer] = _every(c, kw, Thermometer, ClinicThermometer)
    return thermometer(history=c.dur("history", timedelta(days=14)),
                       episodes=c.episodes(frozenset({"fever"})), **kw)


def _scale(c: _Ctx, kw: dict[str, Any]) -> SimPeripheral:
    scale: type[Scale] = _every(c, kw, Scale, ClinicScale)
    return scale(history=c.dur("history", timedelta(days=14)),
                 baseline_kg=c.num("baseline_kg", 78.0), **kw)


def _spot_check_oximeter(c: _Ctx, kw: dict[str, Any]) -> SimPeripheral:
    every = c.dur("record_every", timedelta(0)).total_seconds()
    return SpotCheckOximeter(history=c.dur("history", timedelta(days=14)),
                             baseline=c.num("baseline", 96.0), pulse_bpm=c.num("pulse", 74.0),
                             record_every_s=every or None, **kw)


BUILDERS: dict[str, Callable[[_Ctx, dict[str, Any]], SimPeripheral]] = {
    "heart_rate": _heart_rate, "cgm": _cgm, "glucose_meter": _glucose_meter,
    "blood_pressure": _blood_pressure, "pulse_oximeter": _pulse_oximeter,
    "thermometer": _thermometer, "scale": _scale, "spot_check_oximeter": _spot_check_oximeter,
}


def build_scenario(spec: ScenarioSpec, *, start: datetime, clock: Clock = wall_clock,
                   runtime_dir: Path | None = None) -> Simulation:
    """Configured devices for a run starting at ``start`` (aware).  ``clock`` is the devices'
    true clock (tests pass a manual one); ``runtime_dir`` holds serial ports' symlinks."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    peripherals: list[SimPeripheral] = []
    try:
        for i, t in enumerate(spec.peripherals):
            c = _Ctx(spec, t, f"peripheral[{i}]", start)
            faults, frame = _faults(c)
            kw: dict[str, Any] = {
                "address": str(t["address"]).upper(), "start": start,
                "seed": int(t.get("seed", spec.seed + i)), "clock": clock,
                "faults": faults, "frame_faults": frame,
            }
            if "name" in t:
                kw["name"] = str(t["name"])
            for opt in ("battery", "requires_pairing", "passkey"):
                if opt in t:
                    kw[opt] = t[opt]
            device = BUILDERS[t["kind"]](c, kw)
            if "rssi" in t:
                device.rssi = int(t["rssi"])
            peripherals.append(device)
        serial = [_serial(spec, i, s, start, runtime_dir) for i, s in enumerate(spec.serial)]
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(spec.path, "", f"invalid value: {e}") from None
    return Simulation(spec, start, peripherals, serial)


def _serial(spec: ScenarioSpec, i: int, s: Mapping[str, Any], start: datetime,
            runtime_dir: Path | None) -> SerialSensor:
    c = _Ctx(spec, s, f"serial[{i}]", start)
    f = s.get("faults", {})
    unplug = f.get("unplug_at")
    every = f.get("unplug_every")
    faults = SerialFaults(
        corrupt_share=float(f.get("corrupt_share", 0.0)),
        truncate_share=float(f.get("truncate_share", 0.0)),
        unplug_at=None if unplug is None else parse_duration(unplug).total_seconds(),
        unplug_for=parse_duration(f.get("unplug_for", 2)).total_seconds(),
        unplug_every=None if every is None else parse_duration(every).total_seconds(),
        clock_offset=parse_duration(f.get("clock_offset", 0)),
        sensor_off=tuple((parse_duration(a).total_seconds(), parse_duration(b).total_seconds())
                         for a, b in f.get("sensor_off", [])),
    )
    link = None
    if runtime_dir is not None:
        link = runtime_dir / str(s.get("link", f"tty{s.get('name', 'rad8')}"))
    return SerialSensor(
        start, seed=int(s.get("seed", spec.seed + 100 + i)), name=str(s.get("name", "rad8")),
        serial_number=str(s.get("serial_number", "0000093112")),
        interval_s=c.num("interval", 1.0), pulse_bpm=c.num("pulse", 68.0),
        episodes=c.episodes(_DESAT), link_path=link, faults=faults,
    )


def demo() -> list[SimPeripheral]:
    """The demo scenario's BLE devices starting now, for
    ``python -m hardware_sim.run_bluez --peripherals hardware_sim.scenario:demo``."""
    return build_scenario(load_scenario("demo"), start=datetime.now(UTC)).peripherals


def faults() -> list[SimPeripheral]:
    """The faults scenario's BLE devices starting now (see :func:`demo`)."""
    return build_scenario(load_scenario("faults"), start=datetime.now(UTC)).peripherals


def main() -> int:
    """``python -m hardware_sim.scenario``: list the shipped scenarios and their devices."""
    for name in scenario_names():
        spec = load_scenario(name)
        print(f"{name}: {spec.description}")
        for t in spec.peripherals:
            faults = ", ".join(f"{k}={v}" for k, v in t.get("faults", {}).items())
            print(f"  {t['kind']:<15} {t['address']}  {t.get('name', '')}"
                  + (f"  [faults: {faults}]" if faults else ""))
        for s in spec.serial:
            print(f"  serial          {s.get('protocol', 'masimo-rad8')}  {s.get('name', '')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
