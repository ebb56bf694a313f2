"""Where a UDP output goes: host + port, checked up front so a typo is an error message, not a crash.

Numeric addresses are checked at once (no network); names are resolved once when a sender is built
(off the GUI thread), with a message that says which host could not be resolved.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from engine.errors import OutputError

__all__ = ["Endpoint", "OutputError", "check_endpoint", "open_udp", "resolve"]

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


@dataclass(frozen=True)
class Endpoint:
    """One protocol's destination; ``enabled`` False means nothing is sent."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9000


def check_endpoint(host: str, port: int, what: str = "output") -> None:
    """Raises OutputError unless host is an IP address or a well-formed host name and 1 <= port <= 65535."""
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise OutputError(f"{what}: port {port!r} is not a UDP port (expected a whole number 1-65535)")
    host = (host or "").strip()
    if not host:
        raise OutputError(f"{what}: no host given (expected an address such as 127.0.0.1 or a host name)")
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    if not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
        raise OutputError(f"{what}: {host!r} is neither an IP address nor a host name")


def resolve(host: str, port: int, what: str = "output") -> tuple[int, tuple]:
    """(address family, socket address) for sendto; OutputError names the host that failed."""
    check_endpoint(host, port, what)
    try:
        infos = socket.getaddrinfo(host.strip(), port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as err:
        raise OutputError(f"{what}: cannot resolve host {host!r} ({err})") from None
    family, _, _, _, addr = infos[0]
    return family, addr


def open_udp(family: int) -> socket.socket:
    """A non-blocking UDP socket: a full send buffer drops a packet instead of stalling the frame loop."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    return sock
