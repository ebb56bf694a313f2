"""Test-time averaging: the driven mesh as the mean over a few slightly moved copies of each frame.

Why: the model's errors on people and headsets it never saw are misreadings of a frame, not
frame-to-frame noise (temporal smoothing made every held-out capture worse, docs/results.md), and
a misreading depends on exactly where a lip corner or an eyelid falls in each camera. Reading the
same frame a few times, each camera image shifted, zoomed and rolled by about a third of the 2-D
jitter the model was trained with, and averaging their embeddings lowered every face, mouth and
eyes ratio on all three held-out worlds (untrained people's face 0.579 -> 0.558x with 16 copies;
docs/results.md). B runs once per copy; G and F_i run once on the mean e.

The copies are fixed warps drawn once from a seed (not per call), so a frame's output is still a
pure function of the frame, and the first copy is the frame itself.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.errors import ConfigError

EXTRA_KEY = "test_time_averaging"  # a checkpoint's recommended setting, in its `extra`


@dataclass(frozen=True)
class AveragingConfig:
    """How many copies of each frame are read (1: averaging off) and how far each is moved
    (standard deviations: shift as a fraction of the image side, relative zoom, roll in degrees)."""

    copies: int = 8
    shift: float = 0.02
    scale: float = 0.02
    roll_deg: float = 1.5
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.copies, int) or isinstance(self.copies, bool) or self.copies < 1:
            raise ConfigError(f"test-time averaging: copies must be an integer >= 1, got {self.copies!r}")
        for name in ("shift", "scale", "roll_deg"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 0.5 * (90 if name == "roll_deg" else 1):
                raise ConfigError(f"test-time averaging: {name} must be a number in a sane range, got {value!r}")

    @property
    def enabled(self) -> bool:
        return self.copies > 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AveragingConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"test-time averaging: unknown fields {unknown}; expected some of {sorted(known)}")
        return cls(**data)


OFF = AveragingConfig(copies=1)


def averaging_for(extra: dict | None, copies: int | None = None) -> AveragingConfig:
    """The setting to use: `copies` when given (1 = off, its spreads the checkpoint's or the
    defaults), else what the checkpoint recommends (`extra[EXTRA_KEY]`), else off."""
    stored = (extra or {}).get(EXTRA_KEY)
    base = AveragingConfig.from_dict(stored) if stored else None
    chosen = base or OFF if copies is None else dataclasses.replace(base or AveragingConfig(), copies=copies)
    return OFF if chosen.copies == 1 else chosen  # one read is one read, whatever the spreads say


def copy_warps(cfg: AveragingConfig, size: int) -> np.ndarray:
    """(copies - 1, 3, 2, 3) affine maps, one per extra copy and camera, drawn once from the seed."""
    rng = np.random.default_rng([cfg.seed, 71])
    warps = np.empty((cfg.copies - 1, 3, 2, 3), np.float32)
    centre = (size / 2 - 0.5, size / 2 - 0.5)
    for k in range(cfg.copies - 1):
        for c in range(3):
            m = cv2.getRotationMatrix2D(centre, float(rng.normal(0.0, cfg.roll_deg)),
                                        float(np.exp(rng.normal(0.0, cfg.scale))))
            m[:, 2] += rng.normal(0.0, cfg.shift * size, 2)
            warps[k, c] = m
    return warps


def sampling_grids(cfg: AveragingConfig, size: int) -> np.ndarray:
    """`copy_warps` as grid_sample grids (copies - 1, 3, S, S, 2) in [-1, 1] (align_corners=True):
    for each output pixel, where in the camera image it reads, as cv2.warpAffine would."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    pixels = np.stack([xs, ys, np.ones_like(xs)], -1)  # (S, S, 3)
    warps = copy_warps(cfg, size)
    grids = np.empty((*warps.shape[:2], size, size, 2), np.float32)
    for k in range(warps.shape[0]):
        for c in range(warps.shape[1]):
            inverse = cv2.invertAffineTransform(warps[k, c].astype(np.float64))
            grids[k, c] = (pixels @ inverse.T) * (2.0 / (size - 1)) - 1.0
    return grids


def store_averaging(checkpoint: str | os.PathLike, cfg: AveragingConfig, out: str | os.PathLike) -> Path:
    """Write `checkpoint` with `cfg` as its recommended test-time averaging (`extra[EXTRA_KEY]`) to
    `out`, atomically; everything else in the file is kept as it is (fp16 weights stay fp16)."""
    from engine.io.checkpoint import store_extra
    return store_extra(checkpoint, EXTRA_KEY, cfg.to_dict(), out)
