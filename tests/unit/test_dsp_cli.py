"""``edge-gateway analyze``: the JSON contract and the input errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import edge_gateway.cli  # noqa: F401  (registers the command groups)
from edge_gateway.cli.analyze import HRV_KEYS
from edge_gateway.cli.base import main

DATA = Path(__file__).resolve().parents[1] / "data"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_hrv_on_f1o02_has_every_key(tmp_path: Path) -> None:
    code, out, err = run("analyze", "hrv", str(DATA / "f1o02_rr.csv.gz"), "--json")
    assert code == 0, err
    data = json.loads(out)
    for key in HRV_KEYS:
        assert key in data
    assert data["n_corrected"] >= 24
    assert 1040 < data["mean_rr_ms"] < 1080
    assert data["mean_hr_bpm"] == pytest.approx(60000 / data["mean_rr_ms"])
    assert all(data[k] is not None for k in HRV_KEYS)


def test_hrv_no_clean_differs_on_ectopic_record() -> None:
    _, cleaned, _ = run("analyze", "hrv", str(DATA / "f1o02_rr.csv.gz"))
    _, raw, _ = run("analyze", "hrv", str(DATA / "f1o02_rr.csv.gz"), "--no-clean")
    assert json.loads(raw)["n_corrected"] == 0
    assert json.loads(raw)["rmssd_ms"] > json.loads(cleaned)["rmssd_ms"] * 1.2


def test_hrv_tiny_file_prints_nulls(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("rr_ms\n800\n")
    code, out, _ = run("analyze", "hrv", str(path))
    assert code == 0
    data = json.loads(out)
    assert set(HRV_KEYS) <= set(data)
    assert data["n_beats"] == 1 and data["sdnn_ms"] is None and data["sampen"] is None


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("", 1, "empty file"),
        ("t_s,other\n1,2\n", 1, "missing column 'rr_ms'"),
        ("rr_ms\n800\n\n810\nabc\n", 5, "'abc' is not a number"),
        ("rr_ms\n", 2, "no data rows"),
        ("rr_ms\n800\n-5\n", 3, "not a positive interval"),
    ],
)
def test_hrv_bad_input_names_the_line(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    code, out, err = run("analyze", "hrv", str(path))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert f"{path}:{line}:" in err and reason in err


def test_gzip_input_is_read(tmp_path: Path) -> None:
    path = tmp_path / "rr.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("label,rr_ms\nN,800\nN,820\nN,790\n")
    code, out, _ = run("analyze", "hrv", str(path))
    assert code == 0 and json.loads(out)["n_beats"] == 3


def test_every_analyze_command_has_an_example() -> None:
    group = main.commands["analyze"]
    assert group.help is not None and "Example:" in group.help
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert command.help is not None and "Example:" in command.help, name


def test_rhythm_keys_and_episode_shape() -> None:
    code, out, err = run("analyze", "rhythm", str(DATA / "afdb04043_excerpt_rr.csv.gz"))
    assert code == 0, err
    data = json.loads(out)
    for key in ("af_burden_pct", "af_episodes", "pauses", "bradycardia_pct", "tachycardia_pct",
                "ectopic_beats"):
        assert key in data
    ep = max(data["af_episodes"], key=lambda e: e["end_beat"] - e["start_beat"])
    assert set(ep) == {"start_beat", "end_beat", "start_s", "end_s"}
    assert abs(ep["start_beat"] - 890) < 40
    assert isinstance(data["ectopic_beats"], int)
    assert 20 < data["af_burden_pct"] < 35


def test_rhythm_pause_reported(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("rr_ms\n" + "800\n" * 50 + "3200\n" + "800\n" * 50)
    code, out, _ = run("analyze", "rhythm", str(path))
    assert code == 0
    assert json.loads(out)["pauses"] == [{"beat": 50, "duration_ms": 3200.0, "severe": True}]


def test_glucose_subjects_by_id(tmp_path: Path) -> None:
    path = tmp_path / "cgm.csv"
    lines = ["id,time,glucose_mmol_l"]
    for k in range(12):
        lines.append(f"a,2026-11-20T08:{5 * k:02d}:00Z,{5.0 + 0.1 * k:.1f}")
        lines.append(f"b,2026-11-20 08:{5 * k:02d}:00,3.5")
    path.write_text("\n".join(lines) + "\n")
    code, out, err = run("analyze", "glucose", str(path), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert set(data["subjects"]) == {"a", "b"}
    b = data["subjects"]["b"]
    for key in ("n", "coverage_pct", "mean_mg_dl", "sd_mg_dl", "cv_pct", "gmi_pct", "tbr2_pct",
                "tbr1_pct", "tir_pct", "tar1_pct", "tar2_pct", "lbgi", "hbgi", "mage_mg_dl",
                "hypo_events", "hyper_events", "agp"):
        assert key in b
    assert b["mean_mg_dl"] == pytest.approx(3.5 * 18.016)
    assert b["tbr1_pct"] == 100.0 and b["hypo_events"] == 1


def test_glucose_bad_time_names_line(tmp_path: Path) -> None:
    path = tmp_path / "cgm.csv"
    path.write_text("time,glucose_mg_dl\n2026-11-20T08:00:00Z,100\nyesterday,110\n")
    code, _, err = run("analyze", "glucose", str(path))
    assert code == 2 and f"{path}:3:" in err and "ISO 8601" in err


def test_bp_guidelines(tmp_path: Path) -> None:
    path = tmp_path / "bp.csv"
    path.write_text("time,systolic,diastolic,pulse\n2026-11-20T07:00:00Z,135,85,70\n"
                    "2026-11-20T19:00:00Z,185,95,\n")
    code, out, _ = run("analyze", "bp", str(path))
    assert code == 0
    acc = json.loads(out)
    assert acc["n"] == 2 and acc["classes"] == {"stage_1": 1, "hypertensive_crisis": 1}
    assert acc["mean_systolic"] == 160 and acc["mean_diastolic"] == 90
    assert acc["hypertensive_crisis"] is True
    _, out, _ = run("analyze", "bp", str(path), "--guideline", "esc-esh-2018")
    assert json.loads(out)["classes"] == {"high_normal": 1, "grade_3": 1}


def test_bp_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "bp.csv"
    path.write_text("time,systolic\n2026-11-20T07:00:00Z,135\n")
    code, _, err = run("analyze", "bp", str(path))
    assert code == 2 and f"{path}:1:" in err and "diastolic" in err
