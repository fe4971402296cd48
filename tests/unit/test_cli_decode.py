"""``edge-gateway decode``: the issue's JSON contract, the one-line errors, the human form."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edge_gateway.cli import main

#: Keys the contract lists per characteristic: always present, null when not carried.
CONTRACT = {
    "2a37": ("00 48", ["heart_rate_bpm", "sensor_contact_supported", "sensor_contact_detected",
                       "energy_expended_kj", "rr_intervals_ms"]),
    "2a35": ("00 78 00 50 00 5d 00", ["systolic", "diastolic", "mean_arterial_pressure",
                                      "pressure_unit", "timestamp", "pulse_rate_bpm", "user_id",
                                      "measurement_status"]),
    "2a36": ("00 96 00 ff 07 ff 07", ["systolic", "diastolic", "mean_arterial_pressure",
                                      "pressure_unit", "timestamp", "pulse_rate_bpm",
                                      "user_id", "measurement_status"]),
    "2a18": ("00 01 00 ea 07 0b 19 08 1e 00", [
        "sequence_number", "base_time", "time_offset_min", "glucose_mg_dl", "glucose_mmol_l",
        "type", "sample_location", "sensor_status", "context_follows"]),
    "2a5e": ("00 62 00 48 00", ["spo2_pct", "pulse_rate_bpm"]),
    "2a5f": ("00 62 00 48 00", ["spo2_pct", "pulse_rate_bpm"]),
    "2a1c": ("00 72 01 00 ff", ["temperature", "temperature_unit", "timestamp",
                                "temperature_type"]),
    "2a9d": ("00 ac 36", ["weight", "weight_unit", "timestamp", "user_id", "bmi", "height",
                          "height_unit"]),
    "2a52": ("01 01", ["op_code", "operator", "request_op_code", "response_code",
                       "number_of_records"]),
    "2a19": ("64", ["battery_level_pct"]),
}
RECORD_KEYS = ["glucose_mg_dl", "time_offset_min", "trend_mg_dl_per_min", "quality_pct",
               "sensor_status", "crc_ok"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["decode", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("char", sorted(CONTRACT))
def test_contract_keys_always_present(char: str) -> None:
    hexstr, keys = CONTRACT[char]
    code, out, _ = run(char, hexstr, "--json")
    assert code == 0
    obj = json.loads(out)
    missing = [k for k in keys if k not in obj]
    assert not missing


def test_cgm_records_keys() -> None:
    code, out, _ = run("2aa7", "06 00 78 00 05 00 06 00 7a 00 0a 00", "--json")
    assert code == 0
    records = json.loads(out)["records"]
    assert [r["glucose_mg_dl"] for r in records] == [120.0, 122.0]
    assert all(list(r)[:len(RECORD_KEYS)] == RECORD_KEYS for r in records)


def test_hex_spellings_are_equivalent() -> None:
    outs = {run("2a37", spelled, "--json")[1]
            for spelled in ("1e480a000004", "1e 48 0a 00 00 04", "1e:48:0a:00:00:04",
                            "0x1E480A000004")}
    outs.add(run("2a37", "1e", "48", "0a00", "00", "04", "--json")[1])
    assert len(outs) == 1
    assert json.loads(outs.pop())["rr_intervals_ms"] == [1000.0]


def test_uuid_spellings() -> None:
    for char in ("2A37", "0x2a37", "00002a37-0000-1000-8000-00805f9b34fb"):
        assert run(char, "0048", "--json")[0] == 0


@pytest.mark.parametrize(("args", "needle"), [
    (("2a37", "16"), "2a37 (Heart Rate Measurement): offset 1: heart rate (uint8) truncated"),
    (("2a37", "00 48 00"), "offset 2: 1 trailing byte after the last field"),
    (("2aa7", "07 00 78 00 05 00 00"), "2aa7 (CGM Measurement): offset 0: size field says 7"),
    (("2a18", "02 03 00 ea 07 0b 19 08 1e 00 5f b0"), "offset 12: type/sample location"),
    (("2a37", "0g"), "HEX: 'g' at position 1 is not a hex digit"),
    (("2a37", "123"), "HEX: odd number of hex digits"),
    (("zz", "00"), "CHAR: 'zz' is not a 16-bit Bluetooth SIG UUID"),
    (("2b99", "00"), "CHAR: no decoder for 2b99"),
])
def test_errors_exit_2_with_one_line(args: tuple[str, ...], needle: str) -> None:
    code, out, err = run(*args, "--json")
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert "Traceback" not in err


def test_human_form() -> None:
    code, out, _ = run("2a37", "1e 48 0a 00 00 04 00 02")
    assert code == 0
    assert out.splitlines()[0] == "Heart Rate Measurement (0x2A37), 8 bytes"
    assert "  heart_rate_bpm: 72" in out
    assert "  energy_expended_kj: 10" in out
    assert "1000.0, 500.0" in out
    code, out, _ = run("2aa7", "09 e0 78 00 05 00 04 02 01")  # Warning, Cal/Temp, Status
    assert "session_stopped, calibration_not_allowed, result_lower_than_hypo" in out
    assert "crc_ok: -" in out


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(main, ["decode", "--help"])
    assert "Example:" in result.output


def test_installed_entry_point_never_prints_a_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "edge_gateway.cli", "decode", "2aa7", "06"],
                          capture_output=True, text=True, check=False)
    if "No module named edge_gateway.cli.__main__" in proc.stderr:
        proc = subprocess.run(
            [sys.executable, "-c", "from edge_gateway.cli import main; main()", "decode",
             "2aa7", "06"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: 2aa7 (CGM Measurement): offset 1: flags truncated: needs 1 byte, 0 left "
        "(payload 06)"]
