"""Is the gateway's own clock trustworthy?

A Raspberry Pi has no real-time clock: after a power cut it boots at the last saved time until
NTP answers.  The kernel knows whether its clock is synchronised (adjtimex: STA_UNSYNC clear and
a bounded maximum error), which is what timedatectl's "System clock synchronized" reports.  A
device clock is never set from an unsynchronised gateway clock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_STA_UNSYNC = 0x0040
_TIME_ERROR = 5


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (Linux, 64-bit longs); we only read status/maxerror.
    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


def kernel_clock_synchronized() -> bool | None:
    """True/False from adjtimex(2); None when it cannot be asked (not Linux)."""
    override = os.environ.get("EDGE_GATEWAY_CLOCK_SYNCED")
    if override in ("0", "1"):
        # For tests and for sites that keep time by GPS/PTP outside the kernel's NTP state.
        return override == "1"
    name = ctypes.util.find_library("c")
    state = -1
    tx = _Timex()
    if name is not None:
        try:
            state = ctypes.CDLL(name, use_errno=True).adjtimex(ctypes.byref(tx))
        except (OSError, AttributeError):
            state = -1
    if state < 0:
        # The service's seccomp filter (ProtectClock=yes) refuses adjtimex even for reading;
        # systemd-timesyncd leaves this flag file while the clock is synchronised.
        if os.path.exists(_TIMESYNCD_FLAG):
            return True
        return None
    return state != _TIME_ERROR and not (tx.status & _STA_UNSYNC)


_TIMESYNCD_FLAG = "/run/systemd/timesync/synchronized"
