"""Decode throughput of the hot codecs against a bare ``struct.unpack_from`` loop.

Run: ``python benchmarks/bench_codecs.py`` (part of ``make bench``).  Prints lines
``name: value unit (ratio X vs baseline)``.

For Heart Rate Measurement (0x2A37) and CGM Measurement (0x2AA7) the same frames (a fixed,
seeded mix of every layout) are decoded three ways in the same run:

* ``codec``: ``from_bytes`` — full length checks, special values, a frozen dataclass out;
* ``bare``: the baseline — a loop that pulls the same fields out with ``struct.unpack_from``
  and nothing else (no checks, no objects), i.e. what the codec costs at the very least;
* ``floor``: one ``struct.unpack_from`` per frame, for scale.

The ratio is codec time / bare time (target: within 5×).
"""

from __future__ import annotations

import random
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_gateway.drivers.profiles.cgm import CGMMeasurement, CGMRecord
from edge_gateway.drivers.profiles.heart_rate import HeartRateMeasurement
from edge_gateway.drivers.profiles.ieee11073 import SFloat

N_FRAMES = 2000
REPEAT = 9


def hr_frames(rng: random.Random) -> list[bytes]:
    out = []
    for _ in range(N_FRAMES):
        wide = rng.random() < 0.1
        energy = rng.randrange(0, 5000) if rng.random() < 0.2 else None
        rr = tuple(rng.randrange(600, 1200) for _ in range(rng.choice((0, 1, 1, 2, 3))))
        out.append(HeartRateMeasurement(rng.randrange(45, 180), 3, energy, rr, wide).to_bytes())
    return out


def cgm_frames(rng: random.Random) -> list[bytes]:
    out = []
    for _ in range(N_FRAMES):
        crc = rng.random() < 0.5
        recs = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            recs.append(CGMRecord(
                SFloat(rng.randrange(40, 400)), rng.randrange(0, 20000),
                status_octet=1 if rng.random() < 0.1 else None,
                trend=SFloat(rng.randrange(-30, 30), -1) if rng.random() < 0.7 else None,
                quality=SFloat(rng.randrange(80, 100)) if rng.random() < 0.5 else None))
        out.append(CGMMeasurement(tuple(recs)).to_bytes(add_crc=crc))
    return out


_H = struct.Struct("<H")
_BB = struct.Struct("<BB")


def bare_hr(frames: list[bytes]) -> None:
    unpack = struct.unpack_from
    for f in frames:
        flags = f[0]
        if flags & 1:
            unpack("<H", f, 1)
            pos = 3
        else:
            unpack("<B", f, 1)
            pos = 2
        if flags & 8:
            unpack("<H", f, pos)
            pos += 2
        if flags & 16:
            unpack(f"<{(len(f) - pos) >> 1}H", f, pos)


def bare_cgm(frames: list[bytes]) -> None:
    unpack = struct.unpack_from
    for f in frames:
        pos = 0
        n = len(f)
        while pos < n:
            size, flags, _g, _off = unpack("<BBHH", f, pos)
            p = pos + 6 + bin(flags & 0xE0).count("1")
            if flags & 1:
                unpack("<H", f, p)
                p += 2
            if flags & 2:
                unpack("<H", f, p)
            pos += size


def floor(frames: list[bytes]) -> None:
    unpack = _BB.unpack_from
    for f in frames:
        unpack(f)


def codec_loop(cls: type[HeartRateMeasurement] | type[CGMMeasurement]
               ) -> Callable[[list[bytes]], None]:
    def run(frames: list[bytes]) -> None:
        decode = cls.from_bytes
        for f in frames:
            decode(f)
    return run


def measure(fns: list[Callable[[list[bytes]], None]], frames: list[bytes]) -> list[float]:
    """Decodes per second of each loop: best of REPEAT rounds, the loops interleaved within
    a round so that a busy machine slows all of them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(REPEAT):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(5):
                fn(frames)
            best[i] = min(best[i], time.perf_counter() - t0)
    return [5 * len(frames) / t for t in best]


def main() -> None:
    rng = random.Random(11073)
    for name, cls, frames, bare in (
        ("heart_rate_2a37", HeartRateMeasurement, hr_frames(rng), bare_hr),
        ("cgm_2aa7", CGMMeasurement, cgm_frames(rng), bare_cgm),
    ):
        base, fl, got = measure([bare, floor, codec_loop(cls)], frames)
        print(f"{name}_bare_unpack: {base:,.0f} decodes/s (ratio 1.00 vs baseline)")
        print(f"{name}_floor_one_unpack: {fl:,.0f} decodes/s (ratio {base / fl:.2f} vs baseline)")
        print(f"{name}_codec: {got:,.0f} decodes/s (ratio {base / got:.2f} vs baseline)")


if __name__ == "__main__":
    main()
