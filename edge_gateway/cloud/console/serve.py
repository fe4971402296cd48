"""Start-up of ``edge-gateway cloud console``: options -> settings -> uvicorn until SIGTERM.

The listening socket is bound here, before uvicorn starts, so a port in use or an address
not on this machine is one line from the CLI instead of a log traceback.
"""

from __future__ import annotations

import ipaddress
import socket
from datetime import timedelta
from pathlib import Path

from edge_gateway.cloud.console.app import Settings, make_app
from edge_gateway.cloud.console.commander import Commander
from edge_gateway.errors import GatewayError, UsageError


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {text!r} is not HOST:PORT", hint="e.g. 127.0.0.1:8080")
    return host, int(port)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def make_commander(key_file: str, *, broker: str, prefix: str, username: str | None = None,
                   password: str | None = None, ca_file: str | None = None) -> Commander:
    path = Path(key_file)
    try:
        if path.stat().st_mode & 0o077:
            raise GatewayError(f"the signing key {path} is readable by others",
                               hint=f"chmod 600 {path}")
        pem = path.read_bytes()
    except OSError as err:
        raise GatewayError(f"cannot read the signing key {path}: {err.strerror}") from err
    try:
        return Commander(pem, broker=broker, prefix=prefix, username=username,
                         password=password, ca_file=ca_file)
    except ValueError as err:
        raise GatewayError(f"{path} is not an Ed25519 private key ({err})",
                           hint="make one with `edge-gateway cloud keys generate`") from err


def settings(dsn: str, *, host: str, commander: Commander | None, stale_after: timedelta,
             silent_after: timedelta) -> Settings:
    return Settings(dsn=dsn, commander=commander, stale_after=stale_after,
                    silent_after=silent_after, loopback=_loopback(host))


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise GatewayError(f"cannot listen on {host}:{port}: {err.strerror}",
                           hint="choose another --listen address or port") from err
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def run(s: Settings, host: str, port: int, log_level: str = "info") -> None:
    """Serve until SIGTERM/SIGINT (uvicorn's own handlers), then close cleanly."""
    import uvicorn

    sock = bind(host, port)
    # log_config=None: uvicorn's own lines go through our key=value logging (logfmt).
    config = uvicorn.Config(make_app(s), log_level=log_level, access_log=False,
                            lifespan="on", server_header=False, proxy_headers=False,
                            log_config=None)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
