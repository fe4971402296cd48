"""Templates, static files and the cloud migrations work from a built wheel (not the tree).

The wheel is built from a copy of the source (``pip wheel``: what ``pip install .[cloud]``
installs), unpacked into a folder, and a fresh interpreter that imports the package from
there renders every console template, reads the CSS and lists the migrations.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = r"""
import sys
sys.path.insert(0, sys.argv[1])
import edge_gateway
assert edge_gateway.__file__.startswith(sys.argv[1]), edge_gateway.__file__
from datetime import UTC, datetime
from edge_gateway.cloud.console.app import static_css, templates
from edge_gateway.cloud.store.pg import migrations
env = templates()
names = sorted(env.list_templates())
html = env.get_template("login.html").render(csrf="t0k", next="/", error=None,
                                             now=datetime.now(UTC), commands_on=False)
assert 'name="csrf_token" value="t0k"' in html, html
assert b"@media print" in static_css()
print(",".join(names), [m[1] for m in migrations()])
"""


def test_the_console_runs_from_a_built_wheel(tmp_path: Path) -> None:
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("edge_gateway", "hardware-sim"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True, timeout=240)
    [wheel] = out.glob("edge_gateway-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    res = subprocess.run([sys.executable, "-c", CHECK, str(site)], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    listed, migs = res.stdout.strip().split(" ", 1)
    assert set(listed.split(",")) >= {"base.html", "login.html", "now.html", "patients.html",
                                      "patient.html", "hubs.html", "error.html", "audit.html"}
    assert "0001_init.sql" in migs and "0002_console.sql" in migs
