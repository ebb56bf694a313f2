"""Which unit a scan is in: given by the user, or judged from its size.

Scanners and face tools write millimetres, centimetres, metres or inches with nothing in the file to
say which. A face crop or head scan is 80-450 mm across its largest principal axis (measured in the
scan's own PCA frame, so the pose does not matter); at most two units put a scan in that range
(centimetres and inches overlap for 80-177 mm scans), and the pipeline then keeps the unit whose
face-model fit is closer. A scan no unit makes face-sized gets a clear error.
"""
from __future__ import annotations

import numpy as np

from engine.errors import MeshError

UNITS: dict[str, float] = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "in": 25.4}
FACE_SIZE_MM = (80.0, 450.0)


def unit_factor(name: str) -> float:
    """Millimetres per unit of ``name`` (mm, cm, m, in)."""
    try:
        return UNITS[name]
    except KeyError:
        raise MeshError(f"unknown unit {name!r}; expected one of {', '.join(UNITS)}") from None


def principal_extent(verts: np.ndarray) -> float:
    """Largest extent of the points along their principal axes (independent of pose)."""
    centred = verts - verts.mean(0)
    _, _, axes = np.linalg.svd(centred[:: max(1, len(centred) // 20000)], full_matrices=False)
    return float(np.ptp(centred @ axes.T, axis=0).max())


def unit_candidates(verts: np.ndarray, given: str | None = None) -> list[tuple[str, float]]:
    """[(unit, mm per unit)]: the given unit, else every unit that makes the scan face-sized."""
    if given:
        return [(given, unit_factor(given))]
    extent = principal_extent(verts)
    lo, hi = FACE_SIZE_MM
    found = [(name, f) for name, f in UNITS.items() if lo <= extent * f <= hi]
    if not found:
        sizes = ", ".join(f"{extent * f:.0f} mm in {name}" for name, f in UNITS.items())
        raise MeshError(f"the scan is {extent:.4g} units across, which is no face size in any unit ({sizes}; "
                        f"a face is {lo:.0f}-{hi:.0f} mm): it is not a face or head scan, or pass --units")
    return found
