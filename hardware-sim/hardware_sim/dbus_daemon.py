"""A private ``dbus-daemon`` for the virtual BlueZ: never the machine's system bus.

The daemon gets its own permissive configuration and listens on a unix socket inside a directory
the caller owns; clients reach it through ``DBUS_SYSTEM_BUS_ADDRESS`` (bleak always connects to the
*system* bus, so that variable is how it finds ours).  It starts in a few milliseconds.  It is
stopped by its PID, never by name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from hardware_sim.procs import die_with_parent

ENV_VAR = "DBUS_SYSTEM_BUS_ADDRESS"

# Everyone may own any name and send anything: the bus is private to one test or demo, and a
# restrictive policy would only hide the virtual BlueZ from bleak.  <type>system</type> makes
# dbus-daemon behave as the system bus does (e.g. it refuses to auto-start services).
_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
  <limit name="max_replies_per_connection">50000</limit>
  <limit name="max_match_rules_per_connection">50000</limit>
</busconfig>
"""


@dataclass
class PrivateBus:
    """A running private dbus-daemon."""

    address: str
    pid: int
    directory: Path
    _process: subprocess.Popen[bytes]
    _owns_directory: bool

    def stop(self) -> None:
        """Stop the daemon (by its PID) and remove its socket directory if we made it."""
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self._process.wait(timeout=5)
        if self._process.stdout is not None:
            self._process.stdout.close()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PrivateBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_private_bus(
    directory: Path | None = None, *, executable: str = "dbus-daemon"
) -> PrivateBus:
    """Start a dbus-daemon on a unix socket in ``directory`` (a new temp dir when None).

    Returns once the daemon accepts connections (it prints its address only then).
    Raises ``FileNotFoundError`` when dbus-daemon is not installed (Debian: ``dbus-daemon``).
    """
    owns = directory is None
    where = Path(tempfile.mkdtemp(prefix="eg-dbus-")) if directory is None else directory
    where.mkdir(parents=True, exist_ok=True)
    socket_path = where / "system_bus_socket"
    config = where / "bus.conf"
    config.write_text(_CONFIG.format(socket=escape(str(socket_path))))
    path = shutil.which(executable)
    if path is None:
        raise FileNotFoundError(f"{executable} not found; install the dbus-daemon package")
    # Unprivileged, the daemon complains it cannot raise its fd limit; keep that out of the
    # terminal but on disk for when the bus misbehaves.
    with (where / "dbus-daemon.log").open("ab") as log:
        process = subprocess.Popen(
            [path, f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            stderr=log,
            # Own session: Ctrl-C in a terminal reaches our code, which stops it cleanly.
            start_new_session=True,
            # ...and a parent killed outright (SIGKILL) takes the bus with it.
            preexec_fn=die_with_parent(),
        )
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line:
        process.wait(timeout=5)
        raise RuntimeError(f"dbus-daemon exited with status {process.returncode} before starting")
    return PrivateBus(line, process.pid, where, process, owns)


@contextlib.contextmanager
def system_bus_env(address: str) -> Iterator[None]:
    """Point ``DBUS_SYSTEM_BUS_ADDRESS`` (what bleak and dbus-fast read) at ``address``."""
    old = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = address
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old
