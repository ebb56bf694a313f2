"""Value -> colour mapping for error heat maps and their colour bars.

Numpy only, so the mesh heat map, the colour bar and any exported figure use exactly
the same colours, and so this can be tested without a display. Colour maps are stored
as 17 control points sampled from matplotlib's perceptually uniform maps and
interpolated linearly (indistinguishable from the full tables at heat-map scale).
"""
from __future__ import annotations

import numpy as np

_CONTROL_POINTS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "viridis": (
        (0.267, 0.005, 0.329), (0.282, 0.095, 0.417), (0.279, 0.175, 0.483),
        (0.259, 0.252, 0.525), (0.230, 0.322, 0.546), (0.199, 0.388, 0.555),
        (0.173, 0.449, 0.558), (0.149, 0.508, 0.557), (0.128, 0.567, 0.551),
        (0.121, 0.626, 0.533), (0.158, 0.684, 0.502), (0.246, 0.739, 0.452),
        (0.369, 0.789, 0.383), (0.516, 0.831, 0.294), (0.678, 0.864, 0.190),
        (0.846, 0.887, 0.100), (0.993, 0.906, 0.144),
    ),
    "turbo": (
        (0.190, 0.072, 0.232), (0.251, 0.252, 0.634), (0.276, 0.421, 0.891),
        (0.259, 0.580, 0.999), (0.158, 0.736, 0.923), (0.093, 0.866, 0.762),
        (0.197, 0.949, 0.595), (0.428, 0.994, 0.386), (0.644, 0.990, 0.234),
        (0.805, 0.925, 0.205), (0.933, 0.812, 0.227), (0.993, 0.674, 0.203),
        (0.984, 0.493, 0.128), (0.921, 0.315, 0.055), (0.816, 0.185, 0.018),
        (0.664, 0.084, 0.004), (0.480, 0.016, 0.011),
    ),
    "magma": (
        (0.001, 0.000, 0.014), (0.040, 0.031, 0.134), (0.113, 0.065, 0.277),
        (0.212, 0.062, 0.419), (0.317, 0.072, 0.485), (0.415, 0.110, 0.505),
        (0.513, 0.148, 0.508), (0.614, 0.182, 0.499), (0.716, 0.215, 0.475),
        (0.817, 0.256, 0.436), (0.904, 0.320, 0.388), (0.961, 0.418, 0.360),
        (0.987, 0.536, 0.382), (0.996, 0.654, 0.446), (0.997, 0.770, 0.535),
        (0.992, 0.884, 0.640), (0.987, 0.991, 0.750),
    ),
    "gray": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}

DEFAULT_COLORMAP = "turbo"


def available_colormaps() -> list[str]:
    """Names accepted by :func:`colormap_lut` and :func:`apply_colormap`."""
    return sorted(_CONTROL_POINTS)


def colormap_lut(name: str = DEFAULT_COLORMAP, n: int = 256) -> np.ndarray:
    """An (n, 4) float32 RGBA lookup table from low (row 0) to high (row n-1)."""
    if name not in _CONTROL_POINTS:
        raise ValueError(f"unknown colour map {name!r}; expected one of {available_colormaps()}")
    points = np.asarray(_CONTROL_POINTS[name], dtype=np.float32)
    xp = np.linspace(0.0, 1.0, len(points))
    x = np.linspace(0.0, 1.0, n)
    rgb = np.stack([np.interp(x, xp, points[:, c]) for c in range(3)], axis=1)
    return np.concatenate([rgb, np.ones((n, 1))], axis=1).astype(np.float32)


def apply_colormap(values: np.ndarray, vmax: float, name: str = DEFAULT_COLORMAP,
                   vmin: float = 0.0, n: int = 256) -> np.ndarray:
    """Map values (any shape) to float32 RGBA in [0, 1], shape values.shape + (4,).

    Values are clipped to [vmin, vmax]; NaN (e.g. a vertex without ground truth) maps
    to the low end rather than poisoning the whole colour buffer.
    """
    values = np.asarray(values, dtype=np.float32)
    span = max(float(vmax) - float(vmin), 1e-12)
    t = np.nan_to_num((values - float(vmin)) / span, nan=0.0)
    idx = np.clip(np.rint(t * (n - 1)), 0, n - 1).astype(np.intp)
    return colormap_lut(name, n)[idx]
