"""Per-shape calibration (gain/offset, "set neutral") and one-euro smoothing of output weights.

A person's relaxed face rarely fits to exactly zero weights (and the model's mesh has a bias of its
own), so receivers want an offset per shape taken from a neutral moment, and a gain to reach full
range. Raw per-frame weights jitter; the one-euro filter (Casiez et al., CHI 2012), which the headset
trackers users know (EyeTrackVR, Project Babble) also use, smooths slow motion hard and lets fast
motion (a blink, a jaw drop) through with little lag.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroConfig:
    """min_cutoff (Hz): smoothing at rest (lower = smoother); beta: how fast the cutoff rises with
    speed (higher = less lag); d_cutoff (Hz): cutoff of the speed estimate. enabled False: no filter."""

    enabled: bool = True
    min_cutoff: float = 3.0
    beta: float = 0.5
    d_cutoff: float = 1.0


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """The one-euro filter over a vector of channels, fed with timestamps in seconds."""

    def __init__(self, config: OneEuroConfig = OneEuroConfig()) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        cfg = self.config
        if not cfg.enabled:
            return x.astype(np.float32)
        if self._x is None or self._x.shape != x.shape or t < self._t:  # first frame, or time went back
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.astype(np.float32)
        if t == self._t:  # the same instant again: nothing new to filter
            return self._x.astype(np.float32)
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(cfg.d_cutoff, dt) * (dx - self._dx)
        cutoff = cfg.min_cutoff + cfg.beta * np.abs(self._dx)
        self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._t = t
        return self._x.astype(np.float32)


class Calibration:
    """out = clip((w - offset) * gain, 0, 1) per shape; set_neutral() takes offsets from a relaxed face."""

    def __init__(self, count: int, gain: np.ndarray | None = None, offset: np.ndarray | None = None) -> None:
        self.count = count
        self.gain = np.ones(count, np.float32) if gain is None else _vector(gain, count, "gain")
        self.offset = np.zeros(count, np.float32) if offset is None else _vector(offset, count, "offset")

    def __call__(self, w: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(w, np.float32) - self.offset) * self.gain, 0.0, 1.0)

    def set_neutral(self, neutral_weights: np.ndarray) -> None:
        """Offsets := the weights of a neutral face (a mean over a short window is best)."""
        self.offset = np.clip(_vector(neutral_weights, self.count, "neutral weights"), 0.0, 1.0)

    def reset(self) -> None:
        self.gain[:] = 1.0
        self.offset[:] = 0.0


def _vector(v: np.ndarray, count: int, what: str) -> np.ndarray:
    v = np.asarray(v, np.float32).reshape(-1)
    if v.shape != (count,) or not np.isfinite(v).all():
        raise ValueError(f"calibration {what}: expected {count} finite numbers, got shape {v.shape}")
    return v.copy()
