"""A real OSC receiver for the output tests: Debian's ``oscdump`` (liblo-tools) on a port the
kernel picks, so no free-port race; shared by the engine and the CLI tests (fixture in conftest)."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

WAIT_S = 60.0


def wait_for(predicate: Callable[[], object], timeout: float = WAIT_S, step: float = 0.02) -> bool:
    """Poll until `predicate()` is true or `timeout` seconds pass; returns its last verdict."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def udp_port_of(pid: int) -> int | None:
    """The UDP port a process has bound (found through its socket inode in /proc/net/udp)."""
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return None
    inodes = {link[8:-1] for link in links if link.startswith("socket:[")}
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[9] in inodes:
                return int(fields[1].rsplit(":", 1)[1], 16)
    return None


@contextlib.contextmanager
def run_oscdump(folder: Path) -> Iterator[tuple[int, Callable[[], list[str]]]]:
    """oscdump on port 0; yields (port, lines()) once it answers a ping, and is killed afterwards."""
    exe = shutil.which("oscdump")
    if exe is None:
        pytest.fail("oscdump not found: install Debian's liblo-tools (make apt)")
    out = folder / "oscdump.txt"
    with out.open("wb") as fh:
        proc = subprocess.Popen([exe, "-L", "0"], stdout=fh, stderr=subprocess.STDOUT)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        def lines() -> list[str]:
            return out.read_text(errors="replace").splitlines()
        wait_for(lambda: udp_port_of(proc.pid) is not None or proc.poll() is not None)
        port = udp_port_of(proc.pid)
        assert port and proc.poll() is None, f"oscdump did not start: {lines()}"
        ping = b"/ping\x00\x00\x00,\x00\x00\x00"
        assert wait_for(lambda: probe.sendto(ping, ("127.0.0.1", port)) and any("/ping" in x for x in lines()),
                        step=0.05), f"oscdump on port {port} does not answer: {lines()}"
        yield port, lines
    finally:
        probe.close()
        proc.kill()
        proc.wait(WAIT_S)


def parse_oscdump(lines: list[str]) -> dict[str, list[float]]:
    """address -> the float values oscdump printed for it, in order."""
    got: dict[str, list[float]] = {}
    for line in lines:  # "[time tag] /address f 0.500000"
        parts = line.split()
        if len(parts) >= 3 and parts[-3].startswith("/") and parts[-2] == "f":
            got.setdefault(parts[-3], []).append(float(parts[-1]))
    return got
