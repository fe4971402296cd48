"""A small real file system for the full-disk tests: a tmpfs mounted (and unmounted) by the test.

Mounting needs root (these tests run as root in CI and on the team's machines); without it the
test fails and says so: a full-disk fault cannot be faked with a mock.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "1500k") -> Iterator[Path]:
    """``where``/disk, a tmpfs of ``size``, unmounted on the way out."""
    if os.geteuid() != 0:
        raise AssertionError("the full-disk tests mount a small tmpfs and need root "
                             "(run them as root, e.g. in the CI container)")
    mnt = where / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mnt)],
                   check=True, capture_output=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)


def remount(mnt: Path, mode: str) -> None:
    """``mode`` "ro" or "rw"."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mnt)], check=True,
                   capture_output=True)


def fill(mnt: Path) -> Path:
    """Fill the file system to the last byte with a filler file; returns it."""
    filler = mnt / "filler"
    with filler.open("wb", buffering=0) as fh:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * size)
    return filler
