"""Live Link Face UDP packets: what Epic's iPhone app sends to Unreal's ARKit Live Link source.

One datagram per frame, network byte order (Unreal reads it with FNboSerializeFromBuffer):

    uint8   packet version (6)
    int32   length of the device id, then its UTF-8 bytes
    int32   length of the subject name, then its UTF-8 bytes
    int32   frame number        float32 sub-frame      (the frame time, FQualifiedFrameTime)
    int32   frame rate numerator int32 denominator
    uint8   value count (61)
    61 x float32: the 52 ARKit shapes in engine.output.arkit order, then head yaw, pitch, roll and
                  left eye yaw, pitch, roll and right eye yaw, pitch, roll (radians)

The head pose is 0: the headset moves with the head and the model predicts no head rotation.
Default port 11111 (Live Link Face's).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from engine.output.arkit import ARKIT_COUNT
from engine.output.endpoint import OutputError, open_udp, resolve

PACKET_VERSION = 6
VALUE_COUNT = 61
POSE_NAMES = ("headYaw", "headPitch", "headRoll", "leftEyeYaw", "leftEyePitch", "leftEyeRoll",
              "rightEyeYaw", "rightEyePitch", "rightEyeRoll")
_TAIL = struct.Struct(f">ifiiB{VALUE_COUNT}f")


def _string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack(">i", len(b)) + b


@dataclass(frozen=True)
class LiveLinkIdentity:
    """device_id: how Unreal tells senders apart; subject: the Live Link subject name shown in Unreal."""

    device_id: str = "MIAStudio-0001"
    subject: str = "MIAStudio"


def encode_packet(arkit: np.ndarray, gaze: np.ndarray | None, time_s: float, fps: int = 60,
                  identity: LiveLinkIdentity = LiveLinkIdentity()) -> bytes:
    """One Live Link Face packet for ARKit-52 weights, (2, 2) eye yaw/pitch (radians) and a time."""
    arkit = np.asarray(arkit, np.float32).reshape(-1)
    if arkit.shape != (ARKIT_COUNT,):
        raise ValueError(f"Live Link: expected {ARKIT_COUNT} ARKit weights, got {arkit.shape}")
    values = np.zeros(VALUE_COUNT, np.float32)
    values[:ARKIT_COUNT] = arkit
    if gaze is not None:
        g = np.asarray(gaze, np.float32).reshape(2, 2)
        values[55:57], values[58:60] = g[0], g[1]
    frames = time_s * fps
    frame = int(np.floor(frames))
    return (struct.pack(">B", PACKET_VERSION) + _string(identity.device_id) + _string(identity.subject)
            + _TAIL.pack(frame, float(frames - frame), int(fps), 1, VALUE_COUNT, *values.tolist()))


class LiveLinkSender:
    """Sends a Live Link Face packet per frame to host:port (default 11111)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 11111,
                 identity: LiveLinkIdentity = LiveLinkIdentity(), fps: int = 60) -> None:
        family, self.target = resolve(host, port, "Live Link")
        self.identity, self.fps = identity, fps
        self._sock = open_udp(family)

    def send_arkit(self, arkit: np.ndarray, gaze: np.ndarray | None = None, time_s: float = 0.0) -> int:
        packet = encode_packet(arkit, gaze, time_s, self.fps, self.identity)
        try:
            self._sock.sendto(packet, self.target)
        except BlockingIOError:
            return 0
        except OSError as err:
            raise OutputError(f"Live Link: cannot send to {self.target[0]}:{self.target[1]} "
                              f"({err.strerror or err})") from None
        return 1

    def close(self) -> None:
        self._sock.close()
