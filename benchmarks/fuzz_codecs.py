"""Coverage-guided fuzzing of every codec with atheris (libFuzzer for Python).

Not a test and not a project dependency: install atheris by hand into the venv first.

    .venv/bin/pip install atheris
    # one parser, one million inputs:
    .venv/bin/python benchmarks/fuzz_codecs.py 2aa7 -atheris_runs=1000000
    # every registered parser, one million inputs each, two at a time, with a summary:
    .venv/bin/python benchmarks/fuzz_codecs.py --all --runs 1000000 --jobs 2

What counts as a finding: any exception other than ``MalformedPayload`` from ``from_bytes``;
a payload that decodes but does not re-encode to the very same bytes; a decoded object whose
``to_json()`` is not JSON; ``to_readings`` raising anything (``MalformedPayload`` allowed only
for a CGM record whose E2E-CRC does not match).  A crash input is written by libFuzzer as
``crash-<sha1>`` in the current directory.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RX = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def fuzz_one(char: str, argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["edge_gateway.drivers"]):
        from edge_gateway.drivers import registry
        from edge_gateway.errors import MalformedPayload

    codec = registry.CODECS[char]

    def target(data: bytes) -> None:
        try:
            obj = codec.from_bytes(data)
        except MalformedPayload as err:
            if err.raw != data or not 0 <= err.offset <= len(data):
                raise AssertionError(f"bad error fields: {err!r}") from None
            return
        again = obj.to_bytes()
        if again != data:
            raise AssertionError(f"re-encoding differs: {data.hex()} -> {again.hex()}")
        json.dumps(obj.to_json())
        try:
            registry.to_readings(char, data, device_id="fuzz", received_at=RX,
                                 device_clock_offset=timedelta(minutes=-7),
                                 session_start=datetime(2026, 11, 20, 8, 0))
        except MalformedPayload as err:
            if "E2E-CRC" not in err.reason:
                raise

    atheris.Setup([sys.argv[0], *argv], target)
    atheris.Fuzz()


def run_all(runs: int, jobs: int, max_len: int) -> int:
    from edge_gateway.drivers.registry import CODECS

    chars = sorted(CODECS)
    pending = list(chars)
    running: list[tuple[str, subprocess.Popen[str], float]] = []
    failures = 0
    print(f"{'char':6} {'runs':>9} {'seconds':>8} {'exec/s':>8} {'cov':>6} result")
    while pending or running:
        while pending and len(running) < jobs:
            char = pending.pop(0)
            cmd = [sys.executable, __file__, char, f"-atheris_runs={runs}",
                   f"-max_len={max_len}", "-print_final_stats=1"]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
            running.append((char, proc, time.monotonic()))
        for item in list(running):
            char, proc, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            out = proc.stdout.read() if proc.stdout else ""
            done = re.search(r"Done (\d+) (?:runs )?in (\d+) second", out)
            cov = re.findall(r"cov: (\d+)", out)
            secs = time.monotonic() - t0
            n = int(done.group(1)) if done else 0
            ok = proc.returncode == 0 and done is not None
            failures += not ok
            print(f"{char:6} {n:>9} {secs:>8.0f} {n / secs:>8.0f} {cov[-1] if cov else '-':>6} "
                  f"{'ok' if ok else 'FINDING (exit ' + str(proc.returncode) + ')'}",
                  flush=True)
            if not ok:
                print(out[-3000:], flush=True)
        time.sleep(0.2)
    return 1 if failures else 0


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--all":
        ap = argparse.ArgumentParser()
        ap.add_argument("--all", action="store_true")
        ap.add_argument("--runs", type=int, default=1_000_000)
        ap.add_argument("--jobs", type=int, default=1)
        ap.add_argument("--max-len", type=int, default=64)
        args = ap.parse_args()
        sys.exit(run_all(args.runs, args.jobs, args.max_len))
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    fuzz_one(sys.argv[1], sys.argv[2:])


if __name__ == "__main__":
    main()
