"""``edge-gateway analyze``: run the on-device DSP on a CSV file and print the result as JSON.

The commands never read the deployment config: they are a window onto ``edge_gateway.dsp``
for a clinician's file or a test record.  Input errors name the file's physical line (the
header is line 1) and exit with status 2.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from edge_gateway.cli.base import echo_json, handle_errors, main
from edge_gateway.errors import UsageError
from edge_gateway.units import MGDL_PER_MMOLL


@dataclass(frozen=True, slots=True)
class Table:
    """The columns of a CSV file as text, with the physical line number of every data row."""

    path: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    lines: tuple[int, ...]

    def has(self, name: str) -> bool:
        return name in self.header

    def column(self, name: str) -> list[str]:
        k = self.header.index(name)
        return [row[k] if k < len(row) else "" for row in self.rows]

    def numbers(self, name: str, *, allow_empty: bool = False) -> np.ndarray:
        """The column as floats; a bad cell raises UsageError naming its line."""
        out = np.empty(len(self.rows), dtype=np.float64)
        for i, text in enumerate(self.column(name)):
            text = text.strip()
            if not text and allow_empty:
                out[i] = math.nan
                continue
            try:
                value = float(text)
            except ValueError:
                raise UsageError(
                    f"column {name!r}: {text!r} is not a number", file=self.path,
                    line=self.lines[i],
                ) from None
            if not math.isfinite(value):
                raise UsageError(
                    f"column {name!r}: {text!r} is not a finite number", file=self.path,
                    line=self.lines[i],
                )
            out[i] = value
        return out

    def require(self, *names: str) -> None:
        for name in names:
            if name not in self.header:
                raise UsageError(
                    f"missing column {name!r} (columns: {', '.join(self.header)})",
                    file=self.path, line=1,
                )


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return io.TextIOWrapper(open(path, "rb"), encoding="utf-8-sig", newline="")


def _csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(physical line, cells) of every non-blank record of a CSV (``.gz`` accepted); a file
    that cannot be read or is not text CSV becomes a one-line :class:`UsageError`."""
    try:
        with _open_text(path) as fh:
            yield from _records(csv.reader(fh))
    except OSError as err:
        raise UsageError(f"cannot read: {err.strerror or err}", file=str(path)) from None
    except (UnicodeDecodeError, csv.Error, EOFError) as err:
        raise UsageError(f"not a readable CSV file: {err}", file=str(path)) from None


def _require_rows(name: str, header: list[str] | None, rows: int, last_line: int) -> None:
    if header is None:
        raise UsageError("empty file: expected a header row", file=name, line=1)
    if not rows:
        raise UsageError("no data rows after the header", file=name, line=last_line + 1)


def read_table(path: Path) -> Table:
    """Read a CSV (``.gz`` accepted) with a header row; blank lines are skipped."""
    name = str(path)
    header: list[str] | None = None
    rows: list[tuple[str, ...]] = []
    lines: list[int] = []
    start = 1
    for line, cells in _csv_records(path):
        if header is None:
            header = [c.strip() for c in cells]
            continue
        rows.append(tuple(cells))
        lines.append(line)
        start = line
    _require_rows(name, header, len(rows), start)
    assert header is not None
    return Table(name, tuple(header), tuple(rows), tuple(lines))


def _records(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """(physical line where the record starts, cells), skipping blank lines."""
    line = 1
    for cells in reader:
        if cells and any(c.strip() for c in cells):
            yield line, cells
        line = reader.line_num + 1


def _clean_json(obj: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean_json(v) for v in obj]
    if isinstance(obj, np.generic):
        return _clean_json(obj.item())
    return obj


def _emit(obj: Any) -> None:
    echo_json(_clean_json(obj))


@main.group()
def analyze() -> None:
    """Run the on-device signal processing on a CSV file and print JSON.

    Example:

        edge-gateway analyze hrv night.csv --json
    """


_json_option = click.option(
    "--json", "as_json", is_flag=True, default=True,
    help="Print JSON (the default and only format; accepted for scripts).",
)


def _rr_input(table: Table) -> tuple[np.ndarray, np.ndarray | None]:
    table.require("rr_ms")
    rr = table.numbers("rr_ms")
    times = table.numbers("t_s") if table.has("t_s") else None
    for i, value in enumerate(rr):
        if value <= 0:
            raise UsageError(
                f"column 'rr_ms': {value:g} is not a positive interval", file=table.path,
                line=table.lines[i],
            )
    return rr, times


HRV_KEYS: Sequence[str] = (
    "n_beats", "n_corrected", "mean_rr_ms", "mean_hr_bpm", "sdnn_ms", "rmssd_ms", "sdsd_ms",
    "pnn50_pct", "pnn20_pct", "vlf_ms2", "lf_ms2", "hf_ms2", "lf_hf", "lf_lomb_ms2",
    "hf_lomb_ms2", "sd1_ms", "sd2_ms", "sampen", "dfa_alpha1", "dfa_alpha2",
)


@analyze.command("hrv")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--no-clean", is_flag=True, help="Compute on the series exactly as given.")
@_json_option
@handle_errors
def analyze_hrv(file: Path, no_clean: bool, as_json: bool) -> None:
    """Heart-rate variability of the RR intervals in FILE.

    FILE is CSV with a column rr_ms (other columns ignored; .gz accepted); a column t_s with
    the beat times lets gaps in the recording split the series.  Ectopic beats and artefacts
    are corrected unless --no-clean is given.  Every key is always printed (null when it
    cannot be computed).

    Example:

        edge-gateway analyze hrv f1o02_rr.csv --json
    """
    from edge_gateway.dsp.hrv import hrv

    rr, times = _rr_input(read_table(file))
    result = hrv(rr, times, clean=not no_clean).as_dict()
    ordered = {key: result[key] for key in HRV_KEYS}
    ordered.update({k: v for k, v in result.items() if k not in ordered})
    ordered["algorithm"] = "hrv/1"
    _emit(ordered)


@analyze.command("rhythm")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_json_option
@handle_errors
def analyze_rhythm_cmd(file: Path, as_json: bool) -> None:
    """Atrial fibrillation, irregular rhythm that is not AF, pauses, brady/tachycardia and
    ectopic beats from FILE.

    FILE is CSV with a column rr_ms (.gz accepted); a column t_s with the beat times is used
    for the episode times when present.  Beats are numbered from 0 by data row; episode ends
    are inclusive.

    Example:

        edge-gateway analyze rhythm 04043_rr.csv.gz --json
    """
    from edge_gateway.dsp.rhythm import ALGORITHM, analyze_rhythm

    rr, times = _rr_input(read_table(file))
    result = analyze_rhythm(rr, times)
    _emit(
        {
            "n_beats": result.n_beats,
            "af_burden_pct": result.af_burden_pct,
            "af_episodes": [
                {"start_beat": e.start_beat, "end_beat": e.end_beat, "start_s": e.start_s,
                 "end_s": e.end_s}
                for e in result.af_episodes
            ],
            "pauses": [
                {"beat": p.beat, "duration_ms": p.duration_ms, "severe": p.severe}
                for p in result.pauses
            ],
            "bradycardia_pct": result.bradycardia_pct,
            "tachycardia_pct": result.tachycardia_pct,
            "ectopic_beats": result.ectopic_beats,
            "irregular_pct": result.irregular_pct,
            "irregular_episodes": [
                {"start_beat": e.start_beat, "end_beat": e.end_beat, "start_s": e.start_s,
                 "end_s": e.end_s}
                for e in result.irregular_episodes
            ],
            "mean_hr_bpm": result.mean_hr_bpm,
            "coverage": result.coverage,
            "algorithm": ALGORITHM,
        }
    )


def _times(table: Table, name: str = "time") -> np.ndarray:
    """ISO 8601 times as seconds since the epoch; a time without offset is taken as UTC."""
    from edge_gateway.reading import parse_iso

    table.require(name)
    out = np.empty(len(table.rows), dtype=np.float64)
    for i, text in enumerate(table.column(name)):
        try:
            dt = parse_iso(text.strip())
        except ValueError:
            dt = None
        if dt is None:
            raise UsageError(
                f"column {name!r}: {text!r} is not an ISO 8601 time", file=table.path,
                line=table.lines[i],
            )
        out[i] = dt.timestamp()
    return out


def _glucose_columns(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """(times, mg/dL, id codes or None, id names) of a glucose CSV, read row by row into
    compact arrays: a year of 5-minute readings for several people never sits in memory as
    text (``read_table`` keeps every cell; 648 k rows took 300 MB that way)."""
    from array import array

    from edge_gateway.reading import parse_iso

    name = str(path)
    times, values, codes = array("d"), array("d"), array("q")
    ids: dict[str, int] = {}
    header: list[str] | None = None
    k_time = k_gl = k_id = -1
    scale = 1.0
    gl_name = ""
    line = 1
    for line, cells in _csv_records(path):
        if header is None:
            header = [c.strip() for c in cells]
            if "time" not in header:
                raise UsageError(f"missing column 'time' (columns: {', '.join(header)})",
                                 file=name, line=1)
            if "glucose_mg_dl" in header:
                gl_name = "glucose_mg_dl"
            elif "glucose_mmol_l" in header:
                gl_name, scale = "glucose_mmol_l", MGDL_PER_MMOLL
            else:
                raise UsageError(
                    "missing column 'glucose_mg_dl' (or 'glucose_mmol_l') "
                    f"(columns: {', '.join(header)})", file=name, line=1)
            k_time, k_gl = header.index("time"), header.index(gl_name)
            k_id = header.index("id") if "id" in header else -1
            continue
        text = cells[k_time].strip() if k_time < len(cells) else ""
        try:
            when = parse_iso(text)
        except ValueError:
            when = None
        if when is None:
            raise UsageError(f"column 'time': {text!r} is not an ISO 8601 time",
                             file=name, line=line)
        cell = cells[k_gl].strip() if k_gl < len(cells) else ""
        try:
            value = float(cell)
        except ValueError:
            raise UsageError(f"column {gl_name!r}: {cell!r} is not a number",
                             file=name, line=line) from None
        if not math.isfinite(value):
            raise UsageError(f"column {gl_name!r}: {cell!r} is not a finite number",
                             file=name, line=line)
        if value <= 0:
            raise UsageError(f"glucose {value * scale:g} is not a positive "
                             "concentration", file=name, line=line)
        times.append(when.timestamp())
        values.append(value * scale)
        if k_id >= 0:
            sid = cells[k_id] if k_id < len(cells) else ""
            codes.append(ids.setdefault(sid, len(ids)))
    _require_rows(name, header, len(times), line)
    id_codes = np.frombuffer(codes, dtype=np.int64) if k_id >= 0 else None
    return (np.frombuffer(times, dtype=np.float64), np.frombuffer(values, dtype=np.float64),
            id_codes, list(ids))


def _glucose_json(t: np.ndarray, g: np.ndarray) -> dict[str, Any]:
    from edge_gateway.dsp.glucose import ALGORITHM, glucose_metrics

    result = glucose_metrics(t, g).as_dict()
    trend = result.pop("trend")
    result.update({f"trend_{k}": v for k, v in trend.items()})
    result["algorithm"] = ALGORITHM
    return result


@analyze.command("glucose")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_json_option
@handle_errors
def analyze_glucose(file: Path, as_json: bool) -> None:
    """Consensus CGM metrics (Battelino 2019; events 2023), MAGE, AGP and trend for FILE.

    FILE is CSV with columns time (ISO 8601; without an offset it is UTC) and glucose_mg_dl or
    glucose_mmol_l (.gz accepted).  With an id column there is one result per id, under
    "subjects".

    Example:

        edge-gateway analyze glucose cgm.csv --json
    """
    t, g, codes, names = _glucose_columns(file)
    if codes is not None:
        subjects = {}
        for code, sid in enumerate(names):
            sel = codes == code
            subjects[sid] = _glucose_json(t[sel], g[sel])
        _emit({"n_subjects": len(subjects), "subjects": subjects})
    else:
        _emit(_glucose_json(t, g))


@analyze.command("bp")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--guideline", default="acc-aha-2017",
    type=click.Choice(["acc-aha-2017", "esh-2023", "esc-2024", "esc-esh-2018"]),
    show_default=True, help="Classification guideline.",
)
@_json_option
@handle_errors
def analyze_bp(file: Path, guideline: str, as_json: bool) -> None:
    """Blood-pressure classes, means and the hypertensive-crisis flag for FILE.

    FILE is CSV with columns time, systolic, diastolic (mmHg) and optionally pulse.

    Example:

        edge-gateway analyze bp home_bp.csv --guideline esc-esh-2018 --json
    """
    from edge_gateway.dsp.bp import ALGORITHM, bp_summary

    table = read_table(file)
    table.require("time", "systolic", "diastolic")
    t = _times(table)
    sys_ = table.numbers("systolic")
    dia = table.numbers("diastolic")
    pulse = table.numbers("pulse", allow_empty=True) if table.has("pulse") else None
    for i in range(len(sys_)):
        if not 0 < dia[i] < sys_[i]:
            raise UsageError(
                f"diastolic {dia[i]:g} must be positive and below systolic {sys_[i]:g}",
                file=table.path, line=table.lines[i],
            )
    result = bp_summary(t, sys_, dia, pulse, guideline=guideline)  # type: ignore[arg-type]
    _emit(
        {
            "n": result.n,
            "guideline": result.guideline,
            "mean_systolic": result.mean_systolic,
            "mean_diastolic": result.mean_diastolic,
            "mean_pulse_pressure": result.mean_pulse_pressure,
            "mean_pulse_bpm": result.mean_pulse_bpm,
            "morning": {"n": result.n_morning, "mean_systolic": result.morning_mean_systolic,
                        "mean_diastolic": result.morning_mean_diastolic},
            "evening": {"n": result.n_evening, "mean_systolic": result.evening_mean_systolic,
                        "mean_diastolic": result.evening_mean_diastolic},
            "classes": result.class_counts,
            "reading_classes": list(result.classes),
            "mean_class": result.mean_class,
            "hypertensive_crisis": result.crisis,
            "crisis_readings": list(result.crisis_readings),
            "algorithm": ALGORITHM,
        }
    )
