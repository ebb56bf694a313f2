"""OSC out: VRChat avatar parameters (VRCFaceTracking Unified Expressions v2) and Babble-style ARKit.

Two address sets over the same UDP/OSC transport:
- ``vrchat``: ``/avatar/parameters/v2/<Name>`` for every v2 parameter of engine.output.arkit
  (base parameters 0..1; combined ones such as ``v2/JawX`` -1..1), what VRChat avatars made for
  VRCFaceTracking listen to (default 127.0.0.1:9000);
- ``babble``: ``/<arkitName>`` one float each (``/jawOpen``, ``/mouthFunnel`` ...), the address set
  Project Babble sends, for tools that already listen to it (default port 8888).

Each message is one float, built by python-osc once per address: a frame only appends the big-endian
float to the prebuilt address + type-tag bytes, so sending 70 parameters costs well under a
millisecond. One datagram per message (what VRChat expects); ``bundle`` packs a frame into one OSC
bundle instead (fewer packets, for receivers that take bundles). As VRCFaceTracking does, a value
that moved less than ``min_change`` since it was last sent is skipped, and every address is sent
again each ``refresh_s`` seconds so a receiver that starts late still gets all of them; each
datagram costs ~5-10 us, so this is most of the output stage's time.
"""
from __future__ import annotations

import struct
import time
from typing import Sequence

import numpy as np
from pythonosc.osc_message_builder import OscMessageBuilder

from engine.output.arkit import ARKIT_NAMES, unified_names, unified_values
from engine.output.endpoint import OutputError, open_udp, resolve

VRCHAT_PREFIX = "/avatar/parameters/v2/"
BUNDLE_HEADER = b"#bundle\x00" + struct.pack(">Q", 1)  # time tag 1: "immediately"
_FLOAT = struct.Struct(">f")


def _prefix(address: str) -> bytes:
    """python-osc's bytes for ``address`` with one float argument, minus the float."""
    builder = OscMessageBuilder(address)
    builder.add_arg(0.0, OscMessageBuilder.ARG_TYPE_FLOAT)
    return builder.build().dgram[:-4]


class OscSender:
    """Sends one float per address to host:port; ``send`` returns the number of datagrams sent."""

    def __init__(self, addresses: Sequence[str], host: str, port: int, what: str, bundle: bool = False,
                 min_change: float = 0.002, refresh_s: float = 1.0) -> None:
        self.addresses = list(addresses)
        self.what, self.bundle = what, bundle
        self.min_change, self.refresh_s = min_change, refresh_s
        self._last = np.full(len(self.addresses), np.nan)
        self._last_full = -np.inf
        self.messages = 0  # OSC messages handed to the network (a bundle holds several)
        family, self.target = resolve(host, port, what)
        self._prefixes = [_prefix(a) for a in self.addresses]
        self._sock = open_udp(family)

    def send(self, values: Sequence[float]) -> int:
        if len(values) != len(self._prefixes):
            raise ValueError(f"{self.what}: {len(values)} values for {len(self._prefixes)} addresses")
        now = time.monotonic()
        v = np.asarray(values, np.float64)
        if now - self._last_full >= self.refresh_s:
            changed = np.ones(len(v), bool)
            self._last_full = now
        else:
            changed = ~(np.abs(v - self._last) < self.min_change)
        idx = np.flatnonzero(changed)
        if len(idx) == 0:
            return 0
        self._last[idx] = v[idx]
        messages = [self._prefixes[i] + _FLOAT.pack(v[i]) for i in idx.tolist()]
        try:
            if self.bundle:
                self._sock.sendto(BUNDLE_HEADER + b"".join(struct.pack(">i", len(m)) + m for m in messages),
                                  self.target)
                self.messages += len(messages)
                return 1
            for m in messages:
                self._sock.sendto(m, self.target)
                self.messages += 1
        except BlockingIOError:
            self._last_full = -np.inf  # the send buffer is full: drop this frame, resend all next time
            return 0
        except OSError as err:
            self._last_full = -np.inf
            raise OutputError(f"{self.what}: cannot send to {self.target[0]}:{self.target[1]} ({err.strerror or err})") from None
        return 1 if self.bundle else len(messages)

    def close(self) -> None:
        self._sock.close()


class VRChatSender(OscSender):
    """VRCFaceTracking Unified Expressions v2 parameters from ARKit-52 weights."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9000, bundle: bool = False, **kw: float) -> None:
        self.names = unified_names()
        super().__init__([VRCHAT_PREFIX + n for n in self.names], host, port, "VRChat OSC", bundle, **kw)

    def send_arkit(self, arkit: np.ndarray) -> int:
        values = unified_values(arkit)
        return self.send([values[n] for n in self.names])


class BabbleSender(OscSender):
    """``/<arkitName>`` for each of the 52 ARKit shapes, as Project Babble sends them."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8888, bundle: bool = False, **kw: float) -> None:
        super().__init__(["/" + n for n in ARKIT_NAMES], host, port, "Babble OSC", bundle, **kw)

    def send_arkit(self, arkit: np.ndarray) -> int:
        return self.send(np.asarray(arkit, np.float32).tolist())


__all__ = ["OscSender", "VRChatSender", "BabbleSender", "OutputError", "VRCHAT_PREFIX"]
