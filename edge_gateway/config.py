"""Deployment configuration: TOML -> frozen dataclasses, validated at load.

Everything a caregiver changes at run time (devices, patients, thresholds) lives in SQLite and
is changed through the CLI; this file holds what a technician sets once: paths, the broker,
credentials, the site.  ``config/gateway.example.toml`` documents every key with its default.

Every error names the file, the key and the reason (``gateway.toml: mqtt.port: ...``); unknown
keys are errors, because a typo silently ignored is a setting silently lost.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge_gateway.errors import ConfigError


def _default_db() -> str:
    # Under systemd, StateDirectory= gives us $STATE_DIRECTORY; elsewhere (the demo, a
    # developer's checkout) the database lives under ./var/.
    state = os.environ.get("STATE_DIRECTORY")
    return str(Path(state.split(":")[0]) / "gateway.db") if state else "var/gateway.db"


@dataclass(frozen=True, slots=True)
class GatewaySection:
    id: str = ""  # empty: the host name
    site: str = "home"
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class StorageSection:
    db_path: str = field(default_factory=_default_db)
    max_bytes: int = 2_000_000_000
    retention_days: int = 365
    batch_max_frames: int = 200
    batch_max_delay_s: float = 1.0


@dataclass(frozen=True, slots=True)
class MqttSection:
    host: str = ""  # empty: no broker; readings are kept and summaries wait in the outbox
    port: int = 1883
    tls: bool = False
    client_id: str = ""
    username: str = ""
    password: str = ""
    password_file: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 24 * 3600
    inflight: int = 20
    topic_prefix: str = "edge-gateway"
    connect_timeout_s: float = 10.0

    @property
    def url(self) -> str:
        """``mqtt://HOST:PORT`` or ``mqtts://HOST:PORT``; empty when no broker is configured."""
        if not self.host:
            return ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def at(self, url: str) -> MqttSection:
        """This section with host, port and tls taken from the broker ``url``."""
        host, port, tls = parse_broker_url(url)
        return dataclasses.replace(self, host=host, port=port, tls=tls)


def parse_broker_url(url: str) -> tuple[str, int, bool]:
    """``mqtt://HOST:PORT`` / ``mqtts://HOST[:PORT]`` -> (host, port, tls); ValueError if not."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(
            f"broker must look like mqtt://HOST:PORT or mqtts://HOST:PORT, got {url!r}")
    try:
        port = parts.port
    except ValueError as err:  # urlsplit's own range check (0..65535)
        raise ValueError(f"broker port must be 1..65535 in {url!r}") from err
    if port == 0:
        raise ValueError(f"broker port must be 1..65535 in {url!r}")
    tls = parts.scheme == "mqtts"
    return parts.hostname, port if port is not None else (8883 if tls else 1883), tls


def with_broker(cfg: Config, url: str) -> Config:
    return dataclasses.replace(cfg, mqtt=cfg.mqtt.at(url))


@dataclass(frozen=True, slots=True)
class SyncSection:
    batch_size: int = 50
    format: str = "json"
    compression: str = "none"
    bulk: bool = False
    interval_s: float = 5.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0


@dataclass(frozen=True, slots=True)
class BleSection:
    adapter: str = "hci0"
    max_connections: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    set_device_clock: bool = True
    max_device_drift_s: int = 60
    #: A store-only device (meter, cuff, thermometer, scale) is visited again this long after
    #: its last visit; it bounds how late a stored record reaches the database (docs/ble.md).
    revisit_s: float = 60.0


@dataclass(frozen=True, slots=True)
class AlertsSection:
    hook: str = ""
    hook_timeout_s: float = 10.0
    hook_retries: int = 3


@dataclass(frozen=True, slots=True)
class DaemonSection:
    log_level: str = "info"
    settings_poll_s: float = 2.0
    dsp_interval_s: float = 60.0
    short_window_min: int = 5


@dataclass(frozen=True, slots=True)
class HomeAssistantSection:
    """``[homeassistant]``: MQTT discovery to the home's broker (docs/homeassistant.md)."""

    enabled: bool = False
    broker: str = ""  # empty: the [mqtt] broker (mqtt://HOST:PORT or mqtts://HOST:PORT)
    username: str = ""
    password_file: str = ""
    discovery_prefix: str = "homeassistant"
    patients: tuple[str, ...] = ()  # empty: every patient
    glucose_unit: str = "mg/dL"


@dataclass(frozen=True, slots=True)
class NightscoutSite:
    """One ``[[nightscout]]`` entry: a patient's readings to a Nightscout site
    (docs/nightscout.md)."""

    patient: str = ""
    url: str = ""
    api_secret_file: str = ""
    name: str = ""  # empty: the patient id; names the outbox destination nightscout:<name>
    backfill_days: int = 14

    @property
    def destination(self) -> str:
        return f"nightscout:{self.name or self.patient}"


@dataclass(frozen=True, slots=True)
class CommandsSection:
    """``[commands]``: signed commands from the clinic console (docs/mqtt.md).  Without a key
    the hub does not subscribe to its command topic at all."""

    console_public_key: str = ""  # base64 of the console's raw 32-byte Ed25519 public key
    console_public_key_file: str = ""  # or a file holding that base64 text

    @property
    def enabled(self) -> bool:
        return bool(self.console_public_key or self.console_public_key_file)


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewaySection = field(default_factory=GatewaySection)
    storage: StorageSection = field(default_factory=StorageSection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    sync: SyncSection = field(default_factory=SyncSection)
    ble: BleSection = field(default_factory=BleSection)
    alerts: AlertsSection = field(default_factory=AlertsSection)
    daemon: DaemonSection = field(default_factory=DaemonSection)
    homeassistant: HomeAssistantSection = field(default_factory=HomeAssistantSection)
    nightscout: tuple[NightscoutSite, ...] = ()
    commands: CommandsSection = field(default_factory=CommandsSection)
    #: Where it came from ("<defaults>" when no file was read).
    source: str = "<defaults>"

    @property
    def gateway_id(self) -> str:
        return self.gateway.id or os.uname().nodename

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.gateway.timezone)

    def redacted(self) -> dict[str, Any]:
        """The effective config as a dict with secrets replaced by ``"***"``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "source":
                continue
            if f.name == "nightscout":  # an array of tables; nothing secret in it (a path)
                out[f.name] = [dataclasses.asdict(site) for site in self.nightscout]
                continue
            section = dataclasses.asdict(getattr(self, f.name))
            for key in _SECRETS.get(f.name, ()):
                if section.get(key):
                    section[key] = "***"
            out[f.name] = section
        return out


_SECRETS = {"mqtt": ("password",)}

# Per-key checks: (predicate, reason shown when it fails).
_RULES: dict[str, tuple[Any, str]] = {
    "gateway.id": (lambda v: v == "" or _safe_id(v), "must be letters, digits, '-' or '_'"),
    "gateway.site": (lambda v: _safe_id(v), "must be letters, digits, '-' or '_'"),
    "mqtt.port": (lambda v: 1 <= v <= 65535, "must be 1..65535"),
    "storage.max_bytes": (lambda v: v >= 1_000_000, "must be at least 1000000 (1 MB)"),
    "storage.retention_days": (lambda v: 1 <= v <= 36500, "must be 1..36500"),
    "storage.batch_max_frames": (lambda v: 1 <= v <= 100_000, "must be 1..100000"),
    "storage.batch_max_delay_s": (lambda v: 0.01 <= v <= 1.0,
                                  "must be 0.01..1.0 (a batch commits at least every second)"),
    "mqtt.keepalive_s": (lambda v: 5 <= v <= 3600, "must be 5..3600"),
    "mqtt.session_expiry_s": (lambda v: 0 <= v <= 0xFFFFFFFF, "must be 0..4294967295"),
    "mqtt.inflight": (lambda v: 1 <= v <= 1000, "must be 1..1000"),
    "mqtt.connect_timeout_s": (lambda v: 1 <= v <= 300, "must be 1..300"),
    "sync.batch_size": (lambda v: 1 <= v <= 10_000, "must be 1..10000"),
    "sync.format": (lambda v: v in ("json", "fhir"), "must be 'json' or 'fhir'"),
    "sync.compression": (lambda v: v in ("none", "gzip", "zstd"),
                         "must be 'none', 'gzip' or 'zstd'"),
    "sync.interval_s": (lambda v: 0.1 <= v <= 3600, "must be 0.1..3600"),
    "sync.backoff_initial_s": (lambda v: 0.1 <= v <= 60, "must be 0.1..60"),
    "sync.backoff_max_s": (lambda v: 1 <= v <= 3600, "must be 1..3600"),
    "ble.max_connections": (lambda v: 1 <= v <= 7, "must be 1..7 (adapters hold 3-7 links)"),
    "ble.backoff_initial_s": (lambda v: 0.1 <= v <= 60, "must be 0.1..60"),
    "ble.backoff_max_s": (lambda v: 1 <= v <= 3600, "must be 1..3600"),
    "ble.max_device_drift_s": (lambda v: 1 <= v <= 86400, "must be 1..86400"),
    "ble.revisit_s": (lambda v: 1 <= v <= 86400, "must be 1..86400"),
    "alerts.hook_timeout_s": (lambda v: 0.1 <= v <= 600, "must be 0.1..600"),
    "alerts.hook_retries": (lambda v: 0 <= v <= 100, "must be 0..100"),
    "daemon.log_level": (lambda v: v in ("debug", "info", "warning", "error"),
                         "must be one of debug, info, warning, error"),
    "daemon.settings_poll_s": (lambda v: 0.1 <= v <= 600, "must be 0.1..600"),
    "daemon.dsp_interval_s": (lambda v: 1 <= v <= 3600, "must be 1..3600"),
    "daemon.short_window_min": (lambda v: v in (1, 2, 5, 10, 15, 30, 60),
                                "must be one of 1, 2, 5, 10, 15, 30, 60 (minutes)"),
    "homeassistant.discovery_prefix": (
        lambda v: bool(v) and not set(v) & set("#+ ") and v.strip("/") == v,
        "must be a topic without wildcards, spaces or a leading/trailing '/'"),
    "homeassistant.patients": (lambda v: all(_safe_id(p) for p in v),
                               "must be a list of patient ids"),
    "homeassistant.glucose_unit": (lambda v: v in ("mg/dL", "mmol/L"),
                                   "must be 'mg/dL' or 'mmol/L'"),
    "nightscout.patient": (lambda v: _safe_id(v), "must be a patient id"),
    "nightscout.name": (lambda v: v == "" or _safe_id(v), "must be letters, digits, '-' or '_'"),
    "nightscout.backfill_days": (lambda v: 0 <= v <= 90, "must be 0..90"),
}


def _safe_id(v: str) -> bool:
    return bool(v) and all(c.isalnum() or c in "-_" for c in v) and v.isascii()


def load_config(
    path: str | Path | None, *, required: bool = False, db_override: str | Path | None = None,
) -> Config:
    """Load and validate ``path``; built-in defaults when it is missing and not ``required``."""
    cfg = Config()
    if path is not None:
        p = Path(path)
        try:
            exists = p.exists()
        except OSError as err:  # a folder on the way this account may not enter
            raise ConfigError(str(p), "", f"cannot reach the file: {err.strerror}",
                              hint="run as the service user or a member of its group") from err
        if exists and p.is_dir():
            raise ConfigError(str(p), "", "is a folder, not a config file",
                              hint="give the TOML file, e.g. /etc/edge-gateway/gateway.toml")
        if exists:
            cfg = _load_file(p)
        elif required:
            raise ConfigError(str(p), "", "file not found",
                              hint="copy config/gateway.example.toml there, or drop -c")
    if db_override is not None:
        cfg = dataclasses.replace(
            cfg, storage=dataclasses.replace(cfg.storage, db_path=str(db_override)))
    return cfg


def _load_file(p: Path) -> Config:
    name = str(p)
    try:
        data = tomllib.loads(p.read_text("utf-8"))
    except PermissionError as err:
        raise ConfigError(name, "", "cannot read the file (permission denied)",
                          hint="run as the service user or a member of its group") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(name, "", f"not valid TOML: {err}") from err
    except RecursionError as err:
        raise ConfigError(name, "", "not a usable config: tables or arrays nested too deeply")\
            from err
    except OSError as err:
        raise ConfigError(name, "", f"cannot read the file: {err.strerror or err}") from err
    sections: dict[str, Any] = {}
    fields_by_name = {f.name: f for f in dataclasses.fields(Config) if f.name != "source"}
    for sec_name, sec_value in data.items():
        if sec_name not in fields_by_name:
            raise ConfigError(
                name, sec_name, f"unknown section (known: {', '.join(fields_by_name)})")
        if sec_name == "nightscout":
            sections[sec_name] = _build_sites(name, sec_value, p.parent)
            continue
        if not isinstance(sec_value, dict):
            raise ConfigError(name, sec_name, "must be a table ([section])")
        cls = _section_class(sec_name)
        sections[sec_name] = _build_section(name, sec_name, cls, sec_value, p.parent)
    cfg = Config(**sections, source=name)
    _cross_checks(name, cfg, p.parent)
    return cfg


def _section_class(sec_name: str) -> type[Any]:
    cls = get_type_hints(Config)[sec_name]
    assert isinstance(cls, type)
    return cls


def _build_section(name: str, sec: str, cls: type[Any], values: dict[str, Any], base: Path) -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{sec}.{key}"
        if key not in known:
            raise ConfigError(name, dotted, f"unknown key (known: {', '.join(sorted(known))})")
        want = hints[key]
        if want == tuple[str, ...]:  # a TOML list of strings
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(name, dotted, f"must be a list of strings, got {value!r}")
            value, want = tuple(value), tuple
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ConfigError(
                name, dotted, f"must be {_type_name(want)}, got {_type_name(type(value))} "
                f"{value!r}")
        rule = _RULES.get(dotted)
        if rule is not None and not rule[0](value):
            raise ConfigError(name, dotted, f"{rule[1]}, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def _build_sites(name: str, value: Any, base: Path) -> tuple[NightscoutSite, ...]:
    """``[[nightscout]]`` entries: each a table with patient, url and api_secret_file."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(name, "nightscout", "must be an array of tables ([[nightscout]])")
    sites: list[NightscoutSite] = []
    for i, entry in enumerate(value):
        site = _build_section(name, "nightscout", NightscoutSite, entry, base)
        where = f"nightscout[{i}]"
        for key in ("patient", "url", "api_secret_file"):
            if not getattr(site, key):
                raise ConfigError(name, f"{where}.{key}", "is required")
        try:
            check_nightscout_url(site.url)
        except ValueError as err:
            raise ConfigError(name, f"{where}.url", str(err)) from err
        check_secret_file(name, f"{where}.api_secret_file", site.api_secret_file)
        if any(s.destination == site.destination for s in sites):
            raise ConfigError(name, f"{where}.name", f"two entries are named "
                              f"{site.destination!r}", hint="give each entry its own name")
        sites.append(site)
    return tuple(sites)


def check_nightscout_url(url: str) -> None:
    """``https://HOST[:PORT][/path]``; plain ``http`` only to a loopback address."""
    import ipaddress

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must look like https://HOST[/path], got {url!r}")
    if parts.scheme == "http":
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"plain http is allowed only to a loopback address, got {url!r}: "
                             "use https (the api-secret and health data would travel in clear)")


def _type_name(t: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            dict: "a table", list: "a list"}.get(t, getattr(t, "__name__", str(t)))


def _cross_checks(name: str, cfg: Config, base: Path) -> None:
    try:
        ZoneInfo(cfg.gateway.timezone)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ConfigError(name, "gateway.timezone",
                          f"unknown time zone {cfg.gateway.timezone!r}",
                          hint="use an IANA name such as Europe/Berlin") from err
    m = cfg.mqtt
    if m.host and ("/" in m.host or " " in m.host):
        raise ConfigError(name, "mqtt.host", f"must be a host name or address, got {m.host!r}",
                          hint="put the port in mqtt.port and set mqtt.tls = true for mqtts")
    if m.password and m.password_file:
        raise ConfigError(name, "mqtt.password_file", "give either password or password_file")
    if m.password_file:
        check_secret_file(name, "mqtt.password_file", m.password_file)
    if m.key_file:
        check_secret_file(name, "mqtt.key_file", m.key_file)
    for key in ("ca_file", "cert_file"):
        value = getattr(m, key)
        if value and not Path(value).is_file():
            raise ConfigError(name, f"mqtt.{key}", f"file not found: {value}")
    if bool(m.cert_file) != bool(m.key_file):
        raise ConfigError(name, "mqtt.cert_file", "cert_file and key_file go together")
    ha = cfg.homeassistant
    if ha.broker:
        try:
            parse_broker_url(ha.broker)
        except ValueError as err:
            raise ConfigError(name, "homeassistant.broker", str(err)) from err
    if ha.password_file:
        check_secret_file(name, "homeassistant.password_file", ha.password_file)
    _check_console_key(name, cfg.commands)


def _check_console_key(name: str, c: CommandsSection) -> None:
    from edge_gateway.commands import decode_public_key

    if c.console_public_key and c.console_public_key_file:
        raise ConfigError(name, "commands.console_public_key_file",
                          "give either console_public_key or console_public_key_file")
    key, text = "commands.console_public_key", c.console_public_key
    if c.console_public_key_file:
        key = "commands.console_public_key_file"
        try:
            text = Path(c.console_public_key_file).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(name, key, f"cannot read {c.console_public_key_file}: "
                              f"{getattr(err, 'strerror', None) or err}") from err
    if not (c.console_public_key or c.console_public_key_file):
        return
    try:
        decode_public_key(text)
    except ValueError as err:
        raise ConfigError(name, key, f"not an Ed25519 public key: {err}",
                          hint="give the base64 of the console's raw 32-byte public key "
                          "(docs/mqtt.md, Commands from the console)") from err


def console_key(cfg: Config) -> str | None:
    """The console's public key (base64) when ``[commands]`` sets one; read from the file now,
    so a replaced key takes effect on the next (re)start."""
    c = cfg.commands
    if c.console_public_key_file:
        return Path(c.console_public_key_file).read_text("utf-8").strip()
    return c.console_public_key.strip() or None


def check_secret_file(name: str, key: str, path: str) -> None:
    """A secret file must exist, be readable, and not be readable by others."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError as err:
        raise ConfigError(name, key, f"file not found: {path}") from err
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise ConfigError(name, key, f"{path} is readable by others (mode {stat.S_IMODE(mode):o})",
                          hint=f"run: chmod 640 {path}")
    if not os.access(p, os.R_OK):
        raise ConfigError(name, key, f"{path} is not readable by this user")


def read_secret(path: str) -> str:
    return Path(path).read_text("utf-8").strip()


def resolve_mqtt(cfg: Config) -> MqttSection | None:
    """``[mqtt]`` as the sync connects with it; None when no broker is configured.

    The client id defaults to ``edge-gateway-<gateway id>`` and the password is read from
    ``password_file`` now, so a changed secret takes effect on the next (re)start.
    """
    m = cfg.mqtt
    if not m.host:
        return None
    return dataclasses.replace(m, client_id=m.client_id or f"edge-gateway-{cfg.gateway_id}",
                               password=read_secret(m.password_file) if m.password_file
                               else m.password, password_file="")
