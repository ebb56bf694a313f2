"""Closest-point matches between the model and the scan, with the usual rejections.

``match`` (model vertex -> scan) is shared by the identity fit, the non-rigid refinement and the
report so they agree on what "the scan covers this vertex" means: the nearest scan sample is within
a distance, not on the scan's open border (off the edge of a crop), and its normal agrees with the
vertex normal (so an inner lip does not match the outer lip in front of it).

``match_measured`` goes the other way: each of the scan's own vertices (where the scanner measured)
to the nearest point of the model's surface, a fixed barycentric pattern on the model's triangles
(a match counts on visible skin away from the model's open border), so the point is a known blend of three model vertices and stays linear in the identity
coefficients. Why both: a scan's triangles are chords between its vertices, and on a coarse scan
they cut curved skin by a tenth of a millimetre or more (lips, nose, eyelids on a 2.5 mm grid).
Matched model vertex -> scan triangle, that bias is a target the identity modes can follow by
sliding the whole face along itself: a front crop re-triangulated at 2.5 mm registered 0.72 mm off
the true face while lying within 0.06 mm of the scan, and the same crop at 1 mm 0.20 mm. The
scan's vertices themselves carry no such bias (docs/registration.md, "Measured vertices").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from engine.registration.rigid import Pose
from engine.registration.scan import ScanSurface, barycentric_grid


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


MODEL_SAMPLE_LEVEL = 3  # barycentric steps per model triangle edge: 10 points a triangle, ~1 mm apart


@dataclass
class MeasuredMatches:
    """Per matched scan vertex, in the scan frame: the vertex, the nearest model-surface point and normal,
    and that point as a blend of three model vertices (for the linearisation in the coefficients)."""

    scan_points: np.ndarray    # (M, 3)
    model_points: np.ndarray   # (M, 3) under the pose
    normals: np.ndarray        # (M, 3) the model's normals there, under the pose
    corners: np.ndarray        # (M, 3) model vertex indices
    weights: np.ndarray        # (M, 3) barycentric weights of the corners


def match_measured(verts: np.ndarray, normals: np.ndarray, faces: np.ndarray, usable: np.ndarray,
                   scan: ScanSurface, pose: Pose, max_distance: float, min_normal_dot: float,
                   limit: int) -> MeasuredMatches:
    """Each measured scan vertex off the open border (at most ``limit``) to the nearest point of the
    model surface given by ``verts`` (model frame), ``normals`` and all its triangles ``faces``, kept
    when that point is within ``max_distance``, on a ``usable`` triangle and the normals agree. Usable
    means visible skin away from the model's open border: a scan's eyeballs or inner lips then find
    the model's own and are left out, and its scalp or neck the border, instead of pulling the skin
    next to them (a whole-head scan 0.53 mm off with border triangles usable, 0.08 without)."""
    bary = barycentric_grid(MODEL_SAMPLE_LEVEL)
    points = np.einsum("kc,tcd->tkd", bary, verts[faces]).reshape(-1, 3)
    along = np.einsum("kc,tcd->tkd", bary, normals[faces]).reshape(-1, 3)
    along /= np.maximum(np.linalg.norm(along, axis=1, keepdims=True), 1e-12)
    chosen = scan.measured_points(limit)
    dist, idx = cKDTree(points).query(pose.inverse_apply(scan.points[chosen]), distance_upper_bound=max_distance)
    idx = np.minimum(idx, len(points) - 1)
    ok = (np.isfinite(dist) & usable[idx // len(bary)]
          & (np.einsum("ij,ij->i", along[idx], scan.normals[chosen] @ pose.R) > min_normal_dot))
    idx, chosen = idx[ok], chosen[ok]
    return MeasuredMatches(scan.points[chosen], pose.apply(points[idx]), along[idx] @ pose.R.T,
                           faces[idx // len(bary)], bary[idx % len(bary)])
