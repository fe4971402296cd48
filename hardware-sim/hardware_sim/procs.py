"""Helper processes that die with the process that started them.

A demo or test killed with SIGKILL runs no cleanup code; without this its dbus-daemon,
simulator and mosquitto would run on for good.  Linux's parent-death signal
(``prctl(PR_SET_PDEATHSIG)``) has the kernel kill the child when its parent thread ends.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets ``sig`` when this process's
    calling thread ends (start helpers from the main thread).  Also covers a parent that
    died between ``fork`` and the ``prctl``."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec
