#!/bin/sh
# Install Home Assistant core 2024.3.3 (the newest release for Python 3.11) into its own venv
# for `make test-ha`: pinned by the constraints file inside its own wheel, plus josepy<2 (the
# acme package of that release breaks with josepy 2) and the requirements of the integrations
# that start (hass runs with --skip-pip, so it installs nothing itself).
set -eu
VENV=${1:-/tmp/ha-venv}
VERSION=2024.3.3
PY=${PYTHON:-python3.11}
if [ -x "$VENV/bin/hass" ] && "$VENV/bin/hass" --version 2>/dev/null | grep -qx "$VERSION" \
        && "$VENV/bin/python" -c 'import paho.mqtt, janus, PIL, hass_frontend, sqlalchemy' 2>/dev/null; then
    exit 0
fi
command -v "$PY" >/dev/null || { echo "ha-venv: $PY not found (Home Assistant $VERSION needs Python 3.11)" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip wheel
"$VENV/bin/pip" download --quiet --no-deps "homeassistant==$VERSION" -d "$WORK"
"$VENV/bin/python" - "$WORK" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/homeassistant-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    open(sys.argv[1] + "/constraints.txt", "wb").write(
        z.read("homeassistant/package_constraints.txt"))
PY
"$VENV/bin/pip" install --quiet "homeassistant==$VERSION" 'josepy<2' -c "$WORK/constraints.txt"
# The requirements of the integrations that start (HA's defaults, frontend included, and those
# the test configures, with their dependencies), read from their manifest.json files.
"$VENV/bin/python" - > "$WORK/requirements.txt" <<'PY'
import json
from pathlib import Path
import homeassistant.bootstrap as b
comp = Path(b.__file__).parent / "components"
todo = {*b.DEFAULT_INTEGRATIONS, *b.CORE_INTEGRATIONS, "logger", "system_log", "api",
        "config", "onboarding", "http", "mqtt"}
seen, reqs = set(), set()
while todo:
    d = todo.pop()
    if d in seen or not (comp / d / "manifest.json").exists():
        seen.add(d)
        continue
    seen.add(d)
    man = json.loads((comp / d / "manifest.json").read_text())
    reqs.update(man.get("requirements", []))
    todo.update(man.get("dependencies", []) + man.get("after_dependencies", []))
print("\n".join(sorted(r for r in reqs if not r.startswith("sentry-sdk"))))
PY
"$VENV/bin/pip" install --quiet -r "$WORK/requirements.txt" -c "$WORK/constraints.txt"
"$VENV/bin/hass" --version
