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

Mirroring (`mirror`): the headset rig is left-right symmetric (engine/synth/headset.py), so the
mirror image of a frame (the two eye cameras swapped, every image flipped left to right) is what
the same headset would see of the mirrored face making the mirrored expression. B reads it too,
G drives the mirrored neutral with it, and the mesh mirrored back is averaged with the direct
one. Unlike the warped copies, whose readings are strongly correlated (16 of them saturate),
the mirrored reading is a second, far more independent one: alone (two reads) it took
untrained people's face from 0.579 to 0.545x, with the 16 copies from 0.558 to 0.533x
(docs/results.md). The expression code e (and so F_i's avatar codes and the ARKit head) stays
the direct reading's: a mirrored e describes the mirrored expression.
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
    mirror: bool = False  # also read the mirror image of each frame (module docstring)

    def __post_init__(self) -> None:
        if not isinstance(self.copies, int) or isinstance(self.copies, bool) or self.copies < 1:
            raise ConfigError(f"test-time averaging: copies must be an integer >= 1, got {self.copies!r}")
        if not isinstance(self.mirror, bool):
            raise ConfigError(f"test-time averaging: mirror must be true or false, got {self.mirror!r}")
        for name in ("shift", "scale", "roll_deg"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 0.5 * (90 if name == "roll_deg" else 1):
                raise ConfigError(f"test-time averaging: {name} must be a number in a sane range, got {value!r}")

    @property
    def enabled(self) -> bool:
        return self.copies > 1 or self.mirror

    @property
    def reads(self) -> int:
        """Backbone reads per frame."""
        return self.copies * (2 if self.mirror else 1)

    def describe(self) -> str:
        """What a status line or a log says, e.g. "16 copies + mirror (32 reads)"."""
        if not self.enabled:
            return "one read"
        copies = f"{self.copies} copies" if self.copies > 1 else "the frame"
        return f"{copies}{' + mirror' if self.mirror else ''} ({self.reads} reads)"

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


def averaging_for(extra: dict | None, copies: int | None = None, mirror: bool | None = None) -> AveragingConfig:
    """The setting to use: what the checkpoint recommends (`extra[EXTRA_KEY]`, else off), with
    `copies` (1 = no warped copies; the spreads stay the checkpoint's or the defaults) and `mirror`
    replaced where given."""
    stored = (extra or {}).get(EXTRA_KEY)
    base = AveragingConfig.from_dict(stored) if stored else None
    chosen = base or OFF
    if copies is not None or mirror is not None:
        given = {k: v for k, v in (("copies", copies), ("mirror", mirror)) if v is not None}
        chosen = dataclasses.replace(base or dataclasses.replace(AveragingConfig(), copies=1), **given)
    return chosen if chosen.enabled else OFF  # one read is one read, whatever the spreads say


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
