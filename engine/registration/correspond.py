"""Closest-point matches from model vertices to the scan, with the usual rejections.

Shared by the identity fit, the non-rigid refinement and the report so they agree on what "the scan
covers this vertex" means: the nearest scan sample is within a distance, not on the scan's open
border (off the edge of a crop), and its normal agrees with the vertex normal (so an inner lip does
not match the outer lip in front of it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.registration.rigid import Pose
from engine.registration.scan import ScanSurface


@dataclass
class Matches:
    """Per model vertex, in the model frame: closest scan point and normal, distances, validity."""

    points: np.ndarray    # (V, 3)
    normals: np.ndarray   # (V, 3)
    distance: np.ndarray  # (V,) Euclidean distance to the nearest sample
    plane: np.ndarray     # (V,) signed point-to-plane distance n . (x - c)
    valid: np.ndarray     # (V,) bool


def match(verts: np.ndarray, normals: np.ndarray, scan: ScanSurface, pose: Pose, max_distance: float,
          min_normal_dot: float, mask: np.ndarray | None = None) -> Matches:
    """Match every vertex (model frame) to the scan under ``pose``; ``mask`` limits which may be valid."""
    dist, idx = scan.closest(pose.apply(verts))
    c = pose.inverse_apply(scan.points[idx])
    n = scan.normals[idx] @ pose.R
    plane = np.einsum("ij,ij->i", n, verts - c)
    valid = (dist < max_distance) & ~scan.border[idx] & (np.einsum("ij,ij->i", n, normals) > min_normal_dot)
    if mask is not None:
        valid &= mask
    return Matches(c, n, dist, plane, valid)


def surface_distance(m: Matches, spacing: float) -> np.ndarray:
    """Distance to the scan surface: point-to-plane near a sample, Euclidean when far from any."""
    tangential = np.sqrt(np.maximum(m.distance ** 2 - m.plane ** 2, 0.0))
    return np.sqrt(m.plane ** 2 + np.maximum(tangential - spacing, 0.0) ** 2)
