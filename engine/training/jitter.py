"""Cheap 2-D image jitter for training: per-camera shift, zoom, roll, gain, gamma, blur and noise.

Why, beside the 3-D augmentation layer: the diagnosis in docs/results.md showed a network keys on
whatever makes a capture unique (where the face sits in each camera, its brightness curve) before
it learns the expression. The 3-D layer re-renders the parallax of a moved headset but costs a
render per sample; these image-space draws cost ~0.1 ms a sample, so every sample of every step
gets a different camera placement and exposure, and a capture can no longer be recognised from
its framing. Each camera draws its own values (headset cameras are mounted and exposed
independently). Draws come from the sample's generator, so a sample stays a pure function of
(seed, key).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine.errors import ConfigError


@dataclass
class JitterConfig:
    """Spreads (standard deviations) of the per-camera image draws."""

    enabled: bool = True
    shift: float = 0.05          # translation, fraction of the image side
    scale: float = 0.06          # relative zoom (log-normal)
    roll_deg: float = 3.0        # in-plane rotation
    gain: float = 0.15           # relative brightness (log-normal)
    gamma: float = 0.15          # exponent on [0, 1] intensities (log-normal)
    blur_probability: float = 0.15
    noise: float = 0.02          # additive Gaussian noise, std drawn uniformly in [0, noise]

    def __post_init__(self) -> None:
        for name in ("shift", "scale", "roll_deg", "gain", "gamma", "noise"):
            if getattr(self, name) < 0:
                raise ConfigError(f"JitterConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.blur_probability <= 1.0:
            raise ConfigError(f"JitterConfig.blur_probability must be in [0, 1], got "
                              f"{self.blur_probability}")


def jitter_config(options: dict) -> JitterConfig | None:
    """The JitterConfig for TrainConfig.jitter options, or None when jitter is off."""
    if not options.get("enabled", True):
        return None
    try:
        return JitterConfig(**options)
    except TypeError as err:
        raise ConfigError(f"jitter options {options}: {err}") from err


def jitter_camera(image: np.ndarray, rng: np.random.Generator, cfg: JitterConfig) -> np.ndarray:
    """One (S, S) uint8 camera image under one random draw."""
    size = image.shape[0]
    angle = rng.normal(0.0, cfg.roll_deg)
    zoom = float(np.exp(rng.normal(0.0, cfg.scale)))
    m = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), angle, zoom)
    m[:, 2] += rng.normal(0.0, cfg.shift * size, 2)
    x = cv2.warpAffine(image.astype(np.float32) / 255.0, m, (size, size), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < cfg.blur_probability:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.0))
    x = np.clip(x * np.exp(rng.normal(0.0, cfg.gain)), 0.0, 1.0) ** np.exp(rng.normal(0.0, cfg.gamma))
    x = x + rng.normal(0.0, 1.0, x.shape).astype(np.float32) * rng.uniform(0.0, cfg.noise)
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def jitter_images(images: np.ndarray, rng: np.random.Generator, cfg: JitterConfig) -> np.ndarray:
    """(3, S, S) uint8 HMC images, each camera jittered independently."""
    return np.stack([jitter_camera(im, rng, cfg) for im in images])
