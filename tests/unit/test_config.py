from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge_gateway.config import Config, load_config, with_broker
from edge_gateway.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "gateway.example.toml"


def write(tmp_path: Path, text: str, name: str = "gateway.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_example_config_loads_and_documents_every_key_with_its_default(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLE, required=True)
    assert cfg.source == str(EXAMPLE)
    # Uncomment every `# key = value` line: the result must equal the built-in defaults,
    # and every key of every section must appear.
    text = EXAMPLE.read_text()
    uncommented = re.sub(r"^# (\w+ = .*)$", r"\1", text, flags=re.M)
    p = write(tmp_path, uncommented)
    loaded = load_config(p, required=True).redacted()
    defaults = Config().redacted()
    loaded["storage"].pop("db_path")
    defaults["storage"].pop("db_path")
    assert loaded == defaults
    documented = set(re.findall(r"^# (\w+) = ", text, flags=re.M))
    for section in defaults.values():
        for key in section:
            assert key in documented, f"{key} is not documented in the example config"


def test_missing_default_file_means_builtin_defaults(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "absent.toml", required=False)
    assert cfg == Config()


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.toml: file not found"):
        load_config(tmp_path / "absent.toml", required=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[mqtt]\nport = 70000\n", "gateway.toml: mqtt.port: must be 1..65535, got 70000"),
        ("[mqtt]\nport = \"1883\"\n", "mqtt.port: must be an integer, got a string '1883'"),
        ("[mqtt]\nprot = 1883\n", "mqtt.prot: unknown key"),
        ("[mqqt]\nport = 1883\n", "mqqt: unknown section"),
        ("[storage]\nbatch_max_delay_s = 5\n", "storage.batch_max_delay_s: must be 0.01..1.0"),
        ("[sync]\nformat = \"xml\"\n", "sync.format: must be 'json' or 'fhir'"),
        ("[ble]\nmax_connections = true\n", "ble.max_connections: must be an integer"),
        ("[gateway]\ntimezone = \"Mars/Olympus\"\n", "gateway.timezone: unknown time zone"),
        ("[mqtt\n", "not valid TOML"),
    ],
)
def test_bad_config_names_file_key_and_reason(tmp_path: Path, text: str, message: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(p, required=True)
    assert str(info.value).startswith(f"{p}: ") or message.startswith("gateway.toml")
    assert message.replace("gateway.toml", str(p)) in str(info.value)


def test_world_readable_secret_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret\n")
    os.chmod(secret, 0o644)
    p = write(tmp_path, f'[mqtt]\nhost = "broker.local"\npassword_file = "{secret}"\n')
    with pytest.raises(ConfigError, match=r"mqtt.password_file: .* readable by others"):
        load_config(p, required=True)
    os.chmod(secret, 0o640)
    cfg = load_config(p, required=True)
    assert cfg.redacted()["mqtt"]["password_file"] == str(secret)


def test_missing_secret_file_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, f'[mqtt]\nkey_file = "{tmp_path / "nope.key"}"\n')
    with pytest.raises(ConfigError, match=r"mqtt\.key_file: file not found"):
        load_config(p, required=True)


def test_secrets_are_redacted_in_show(tmp_path: Path, cli_env: dict[str, str]) -> None:
    p = write(tmp_path, '[mqtt]\nhost = "b"\npassword = "hunter2"\n')
    out = subprocess.run(
        [sys.executable, "-m", "edge_gateway", "-c", str(p), "config", "show"],
        capture_output=True, text=True, env=cli_env, check=True).stdout
    assert "hunter2" not in out
    assert '"password": "***"' in out


def test_validate_exits_2_with_one_line(tmp_path: Path, cli_env: dict[str, str]) -> None:
    p = write(tmp_path, "[mqtt]\nport = 70000\n")
    res = subprocess.run(
        [sys.executable, "-m", "edge_gateway", "config", "validate", str(p)],
        capture_output=True, text=True, env=cli_env)
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {p}: mqtt.port: must be 1..65535, got 70000"
    assert "Traceback" not in res.stderr


def test_broker_url() -> None:
    cfg = with_broker(Config(), "mqtts://hub.example:8884")
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("hub.example", 8884, True)
    assert cfg.mqtt.url == "mqtts://hub.example:8884"
    with pytest.raises(ValueError, match="mqtt://HOST:PORT"):
        with_broker(Config(), "http://x")
    for bad in ("mqtt://hub:70000", "mqtt://hub:0"):
        with pytest.raises(ValueError, match=r"1\.\.65535"):
            with_broker(Config(), bad)
    assert with_broker(Config(), "mqtts://hub").mqtt.port == 8883
    assert with_broker(Config(), "mqtt://hub").mqtt.port == 1883


def test_resolve_mqtt_fills_client_id_and_reads_the_password_file(tmp_path: Path) -> None:
    from edge_gateway.config import GatewaySection, MqttSection, resolve_mqtt

    assert resolve_mqtt(Config()) is None  # no host: no broker
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    cfg = Config(gateway=GatewaySection(id="gw7"),
                 mqtt=MqttSection(host="hub", password_file=str(secret)))
    m = resolve_mqtt(cfg)
    assert m is not None
    assert (m.client_id, m.password, m.password_file) == ("edge-gateway-gw7", "s3cret", "")
    m = resolve_mqtt(Config(mqtt=MqttSection(host="hub", client_id="mine", password="pw")))
    assert m is not None and (m.client_id, m.password) == ("mine", "pw")
