"""Files with a patient's data in them (exports, reports): created private, never clobbered.

A new file is created ``0600`` with ``O_EXCL``: it is health data, so nobody else on the hub
may read it, and an existing file is never overwritten by accident.  With ``force`` the content
goes to a private temporary file beside the target, which then replaces it in one rename (an
interrupted export never leaves half a file where the old one was).  A failed write removes
what it created.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from edge_gateway.errors import UsageError

#: Mode of export and report files: the caregiver's own.
FILE_MODE = 0o600


@contextlib.contextmanager
def private_output(path: Path, *, force: bool = False) -> Iterator[BinaryIO]:
    """A binary file object writing ``path`` (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder", hint="give a file name for --out")
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", hint="choose another name or add --force")
    target = (path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp") if force else path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(target, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise
