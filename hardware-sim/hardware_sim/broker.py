"""A throwaway mosquitto on a free loopback port, for the demo and the benchmarks.

Never the machine's own broker: the config binds 127.0.0.1 on a port the kernel picked, and
persistence lives in the given directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hardware_sim.procs import die_with_parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if Path(p).exists()), None)


@dataclass
class LocalBroker:
    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _account() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "root" if os.getuid() == 0 else "nobody"


def start_broker(directory: Path) -> LocalBroker | None:
    """Start mosquitto on 127.0.0.1:<free port>; None when mosquitto is not installed."""
    exe = mosquitto_path()
    if exe is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {directory}/\nautosave_interval 1\n"
        f"log_dest file {directory}/mosquitto.log\n"
        # Run as whoever started it: as root mosquitto would switch to its own user, and a
        # change of user clears the parent-death signal (prctl(2)); that user could not
        # write this directory anyway.
        f"user {_account()}\n")
    with (directory / "stderr.log").open("ab") as err:
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=die_with_parent())  # dies with a killed demo
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return LocalBroker(port, proc, directory)
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    return None
