"""The wheel carries everything an installed gateway needs at run time, not only .py files:
the schema migrations and the simulator's scenarios (`edge-gateway demo` from a wheel)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_contains_migrations_and_scenarios(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("edge_gateway-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for sql in (REPO / "edge_gateway" / "store" / "migrations").glob("*.sql"):
        assert f"edge_gateway/store/migrations/{sql.name}" in names
    for scenario in (REPO / "hardware-sim" / "hardware_sim" / "scenarios").glob("*.toml"):
        assert f"hardware_sim/scenarios/{scenario.name}" in names
    assert "edge_gateway/cli/__init__.py" in names and "hardware_sim/bluez.py" in names
    assert any(n.endswith("entry_points.txt") for n in names)
