"""Paste the constants printed by fit_af_model.py into edge_gateway/dsp/rhythm.py.

    .venv/bin/python tests/reference/fit_af_model.py > fit.txt
    .venv/bin/python tests/reference/paste_af_model.py fit.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

RHYTHM = Path(__file__).resolve().parents[2] / "edge_gateway" / "dsp" / "rhythm.py"


def block(name: str, values: list[str]) -> str:
    lines, current = [], "       "
    for value in values:
        if len(current) + len(value) + 2 > 96:
            lines.append(current.rstrip())
            current = "       "
        current += f" {value},"
    lines.append(current.rstrip())
    body = "\n".join(lines)
    return f"{name} = np.array(\n    [\n{body}\n    ]\n)"


def main() -> None:
    fit = Path(sys.argv[1]).read_text()
    parts = ["# Fitted by tests/reference/fit_af_model.py (standardisation then logistic weights)."]
    for name in ("_FEATURE_MEAN", "_FEATURE_SD", "_WEIGHTS"):
        found = re.search(rf"^{name} = np\.array\( \[(.*)\] \)$", fit, re.M)
        assert found, name
        parts.append(block(name, [v.strip() for v in found.group(1).split(",")]))
    bias = re.search(r"^_BIAS = (.*)$", fit, re.M)
    assert bias
    parts.append(f"_BIAS = {bias.group(1)}")
    text = RHYTHM.read_text()
    start = text.index("# Fitted by tests/reference/fit_af_model.py")
    end = text.index("\n", text.index("_BIAS = ", start))
    RHYTHM.write_text(text[:start] + "\n".join(parts) + text[end:])


if __name__ == "__main__":
    main()
