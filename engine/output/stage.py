"""The output stage: ARKit weights -> calibration -> one-euro smoothing -> rate-limited senders.

One object per output profile. It never raises per frame: a network error is counted and kept as
the protocol's last error (shown to the user) and the next frame tries again, so an unplugged cable
or a closed receiver never stops the studio. Bad settings are caught when the stage is built, per
protocol, so one mistyped host does not silence the other protocols.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from engine.output.arkit import ARKIT_COUNT
from engine.output.endpoint import Endpoint, OutputError, check_endpoint
from engine.output.filters import Calibration, OneEuroConfig, OneEuroFilter
from engine.output.livelink import LiveLinkIdentity, LiveLinkSender
from engine.output.osc import BabbleSender, VRChatSender

PROTOCOLS = ("vrchat", "babble", "livelink")
PROTOCOL_TITLES = {"vrchat": "VRChat OSC (VRCFT v2)", "babble": "Babble OSC (ARKit)", "livelink": "Live Link Face"}
DEFAULT_PORTS = {"vrchat": 9000, "babble": 8888, "livelink": 11111}


@dataclass(frozen=True)
class OutputConfig:
    """Everything a profile saves. rate_hz: most frames a second sent per protocol (0: every frame);
    face: '' for the driven subject, else the retarget target whose weights are sent."""

    vrchat: Endpoint = Endpoint(False, "127.0.0.1", DEFAULT_PORTS["vrchat"])
    babble: Endpoint = Endpoint(False, "127.0.0.1", DEFAULT_PORTS["babble"])
    livelink: Endpoint = Endpoint(False, "127.0.0.1", DEFAULT_PORTS["livelink"])
    rate_hz: float = 60.0
    smoothing: OneEuroConfig = OneEuroConfig()
    gain: tuple[float, ...] = field(default_factory=lambda: (1.0,) * ARKIT_COUNT)
    offset: tuple[float, ...] = field(default_factory=lambda: (0.0,) * ARKIT_COUNT)
    face: str = ""
    livelink_subject: str = "MIAStudio"
    osc_bundle: bool = False

    def endpoint(self, protocol: str) -> Endpoint:
        return getattr(self, protocol)

    def with_endpoint(self, protocol: str, **changes: Any) -> OutputConfig:
        return replace(self, **{protocol: replace(self.endpoint(protocol), **changes)})

    def check(self) -> None:
        """OutputError for the first bad setting of an enabled protocol or of the rate."""
        for p in PROTOCOLS:
            e = self.endpoint(p)
            if e.enabled:
                check_endpoint(e.host, e.port, PROTOCOL_TITLES[p])
        if not np.isfinite(self.rate_hz) or self.rate_hz < 0:
            raise OutputError(f"rate limit {self.rate_hz!r} Hz: expected 0 (every frame) or a positive rate")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> OutputConfig:
        """Rebuilds a config saved by to_dict; unknown keys are ignored, missing ones take defaults."""
        base = cls()
        kw: dict[str, Any] = {}
        for p in PROTOCOLS:
            if isinstance(d.get(p), dict):
                e = d[p]
                kw[p] = Endpoint(bool(e.get("enabled", False)), str(e.get("host", "127.0.0.1")),
                                 int(e.get("port", DEFAULT_PORTS[p])))
        if isinstance(d.get("smoothing"), dict):
            s = d["smoothing"]
            kw["smoothing"] = OneEuroConfig(bool(s.get("enabled", True)), float(s.get("min_cutoff", 3.0)),
                                            float(s.get("beta", 0.5)), float(s.get("d_cutoff", 1.0)))
        for k in ("gain", "offset"):
            v = d.get(k)
            if v is not None and len(v) == ARKIT_COUNT:
                kw[k] = tuple(float(x) for x in v)
        for k, cast in (("rate_hz", float), ("face", str), ("livelink_subject", str), ("osc_bundle", bool)):
            if k in d:
                kw[k] = cast(d[k])
        return replace(base, **kw)


@dataclass
class OutputFrame:
    raw: np.ndarray  # (52,) weights as solved
    weights: np.ndarray  # (52,) after calibration and smoothing: what was sent
    gaze: np.ndarray | None  # (2, 2) eye yaw/pitch radians
    sent: bool


class OutputStage:
    """Calibrates, smooths and sends ARKit-52 weights to every enabled protocol of a config."""

    def __init__(self, config: OutputConfig = OutputConfig(), clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.config = config
        self.calibration = Calibration(ARKIT_COUNT, np.array(config.gain), np.array(config.offset))
        self.filter = OneEuroFilter(config.smoothing)
        self.gaze_filter = OneEuroFilter(config.smoothing)
        self.senders: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.packets = {p: 0 for p in PROTOCOLS}
        self.frames = 0
        self.output_ms = 0.0
        self._next_send = 0.0
        self._neutral: list[np.ndarray] = []
        self._neutral_wanted = 0
        self._rate_mark = (clock(), 0)
        self.packets_per_s = 0.0
        self._build_senders()

    def _build_senders(self) -> None:
        cfg = self.config
        if not np.isfinite(cfg.rate_hz) or cfg.rate_hz < 0:
            self.errors["rate"] = f"rate limit {cfg.rate_hz!r} Hz is not valid; sending every frame"
        makers = {"vrchat": lambda e: VRChatSender(e.host, e.port, cfg.osc_bundle),
                  "babble": lambda e: BabbleSender(e.host, e.port, cfg.osc_bundle),
                  "livelink": lambda e: LiveLinkSender(e.host, e.port, LiveLinkIdentity(subject=cfg.livelink_subject))}
        for p in PROTOCOLS:
            e = cfg.endpoint(p)
            if not e.enabled:
                continue
            try:
                self.senders[p] = makers[p](e)
            except (OutputError, OSError) as err:
                self.errors[p] = str(err)

    # ----- calibration
    def set_neutral(self, frames: int = 15) -> None:
        """Take the offsets from the mean raw weights of the next ``frames`` frames (hold still)."""
        self._neutral, self._neutral_wanted = [], max(1, int(frames))

    @property
    def calibrating(self) -> bool:
        return self._neutral_wanted > 0

    def reset_calibration(self) -> None:
        self.calibration.reset()
        self._neutral_wanted = 0

    def calibrated_config(self) -> OutputConfig:
        """The config with the current gain/offset (what a profile should save after "set neutral")."""
        return replace(self.config, gain=tuple(self.calibration.gain.tolist()),
                       offset=tuple(self.calibration.offset.tolist()))

    # ----- per frame
    def process(self, arkit: np.ndarray, gaze: np.ndarray | None = None, time_s: float | None = None) -> OutputFrame:
        """One frame: calibrate, smooth, send when the rate limit allows. Never raises on the network."""
        t0 = time.perf_counter()
        now = self.clock() if time_s is None else time_s
        raw = np.asarray(arkit, np.float32).reshape(ARKIT_COUNT)
        if self._neutral_wanted:
            self._neutral.append(raw)
            if len(self._neutral) >= self._neutral_wanted:
                self.calibration.set_neutral(np.mean(self._neutral, axis=0))
                self._neutral_wanted = 0
        weights = np.clip(self.filter(self.calibration(raw), now), 0.0, 1.0)
        g = None if gaze is None else self.gaze_filter(np.asarray(gaze, np.float32), now)
        sent = self._due(now)
        if sent:
            for p, sender in self.senders.items():
                try:
                    if p == "livelink":
                        n = sender.send_arkit(weights, g, now)
                    else:
                        n = sender.send_arkit(weights)
                    self.packets[p] += n
                    if n:
                        self.errors.pop(p, None)
                except OutputError as err:
                    self.errors[p] = str(err)
        self.frames += 1
        self._update_rate()
        dt = (time.perf_counter() - t0) * 1e3
        self.output_ms = dt if self.frames == 1 else 0.95 * self.output_ms + 0.05 * dt
        return OutputFrame(raw, weights, g, sent)

    def _due(self, now: float) -> bool:
        rate = self.config.rate_hz
        if not self.senders:
            return False
        if not (np.isfinite(rate) and rate > 0):
            return True
        period = 1.0 / rate
        if now < self._next_send - period:  # the clock went back (a looped capture's timestamps)
            self._next_send = now
        if now < self._next_send:
            return False
        self._next_send = max(self._next_send + period, now + 0.5 * period)  # keep cadence, no bursts
        return True

    def _update_rate(self) -> None:
        t = self.clock()
        mark_t, mark_n = self._rate_mark
        if t - mark_t >= 1.0:
            total = sum(self.packets.values())
            self.packets_per_s = (total - mark_n) / (t - mark_t)
            self._rate_mark = (t, total)

    def stats(self) -> dict:
        """What the Output panel and `mia stream` show."""
        return {"packets": dict(self.packets), "packets_per_s": self.packets_per_s, "frames": self.frames,
                "errors": dict(self.errors), "output_ms": self.output_ms, "calibrating": self.calibrating,
                "active": sorted(self.senders)}

    def close(self) -> None:
        for s in self.senders.values():
            s.close()
        self.senders = {}
