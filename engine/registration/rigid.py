"""Rigid alignment of the face template to a scan in any pose, with or without landmarks.

Without landmarks the pose is found from geometry alone: the principal axes of the scan and of the
mean face give a frame each, the 24 rotations of a cube between them cover every way the axes can
pair up and point (a scan's longest axis may be its height or its width, and PCA signs are arbitrary),
and a short trimmed point-to-point ICP runs from each start on ~1,500 points. The few best starts are
refined with point-to-plane ICP on the dense scan and the lowest trimmed residual wins. Trimming (only
the closest ``trim`` fraction of template points count) lets a scan cover less than the template (a
front crop) and matches on the scan's open border are ignored. A scan of a whole head is centred far
behind the face, so the search also runs with the kit's whole-head skin as template and the best
starts of both searches are refined on the face. With three or more landmarks the pose
comes from a Kabsch fit of those points instead and only the refinement runs.

``Pose`` maps model coordinates to scan coordinates: ``x_scan = R @ x_model + t``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.spatial import cKDTree

from engine.registration.config import RigidConfig
from engine.registration.scan import ScanSurface

PLANE_BOUND_MM = 10.0


@dataclass
class Pose:
    """x_scan = R @ x_model + t."""

    R: np.ndarray
    t: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x @ self.R.T + self.t

    def inverse_apply(self, x: np.ndarray) -> np.ndarray:
        return (x - self.t) @ self.R

    def to_dict(self) -> dict:
        return {"R": self.R.tolist(), "t": self.t.tolist()}


def kabsch(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> Pose:
    """The rotation and translation that best map ``src`` onto ``dst`` (least squares)."""
    w = np.ones(len(src)) if weights is None else weights
    w = w / w.sum()
    cs, cd = w @ src, w @ dst
    h = (src - cs).T @ ((dst - cd) * w[:, None])
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    R = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return Pose(R, cd - R @ cs)


def rotation_from_vector(w: np.ndarray) -> np.ndarray:
    """Rodrigues: the rotation by |w| radians about w."""
    angle = float(np.linalg.norm(w))
    if angle < 1e-12:
        return np.eye(3)
    k = w / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def cube_rotations() -> list[np.ndarray]:
    """The 24 proper rotations that map the coordinate axes onto each other."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            m[np.arange(3), perm] = signs
            if np.linalg.det(m) > 0:
                out.append(m)
    return out


def pca_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centroid, axes as rows, right-handed)."""
    c = points.mean(0)
    _, _, axes = np.linalg.svd(points - c, full_matrices=False)
    if np.linalg.det(axes) < 0:
        axes[2] *= -1
    return c, axes


def _trimmed(dist: np.ndarray, valid: np.ndarray, trim: float) -> np.ndarray:
    """Indices of the closest ``trim`` fraction of the valid matches."""
    idx = np.flatnonzero(valid)
    if len(idx) < 3:
        return idx
    keep = max(3, int(trim * len(dist)))
    return idx[np.argsort(dist[idx])[:keep]]


def icp_point_to_point(model_pts: np.ndarray, scan_pts: np.ndarray, tree: cKDTree, border: np.ndarray,
                       pose: Pose, iterations: int, trim: float) -> tuple[Pose, float]:
    """Trimmed point-to-point ICP; returns the pose and its trimmed mean distance."""
    score = np.inf
    for _ in range(iterations):
        dist, idx = tree.query(pose.apply(model_pts))
        keep = _trimmed(dist, ~border[idx], trim)
        if len(keep) < 3:
            return pose, np.inf
        score = float(dist[keep].mean())
        pose = kabsch(model_pts[keep], scan_pts[idx[keep]])
    dist, idx = tree.query(pose.apply(model_pts))
    keep = _trimmed(dist, ~border[idx], trim)
    return pose, float(dist[keep].mean()) if len(keep) >= 3 else score


def point_to_plane_step(p: np.ndarray, c: np.ndarray, n: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Small rotation R and translation v minimising sum w (n . (R p + v - c))^2 (linearised)."""
    a = np.hstack([np.cross(p, n), n])
    b = np.einsum("ij,ij->i", n, c - p)
    aw = a * w[:, None]
    x = np.linalg.solve(aw.T @ a + 1e-6 * np.eye(6), aw.T @ b)
    return rotation_from_vector(x[:3]), x[3:]


def icp_point_to_plane(model_pts: np.ndarray, scan: ScanSurface, pose: Pose, iterations: int,
                       trim: float) -> tuple[Pose, float]:
    """Trimmed point-to-plane ICP against the dense scan samples (matches beyond 10, later 5 mm are
    ignored: the coarse search got the pose that close, and a bounded KD-tree search is fast)."""
    score = np.inf
    for it in range(iterations):
        p = pose.apply(model_pts)
        dist, idx = scan.closest(p, PLANE_BOUND_MM if it < iterations // 2 else PLANE_BOUND_MM / 2)
        keep = _trimmed(dist, np.isfinite(dist) & ~scan.border[idx], trim)
        if len(keep) < 6:
            return pose, np.inf
        score = float(dist[keep].mean())
        dR, v = point_to_plane_step(p[keep], scan.points[idx[keep]], scan.normals[idx[keep]], np.ones(len(keep)))
        pose = Pose(dR @ pose.R, dR @ pose.t + v)
    return pose, score


def landmark_pose(model_pts: np.ndarray, scan_pts: np.ndarray) -> Pose:
    """The rigid pose that maps the template's landmarks onto the scan's."""
    return kabsch(model_pts, scan_pts)


def _coarse_search(model_pts: np.ndarray, scan_pts: np.ndarray, tree: cKDTree, border: np.ndarray,
                   cfg: RigidConfig, cancel: Callable[[], None] | None) -> list[tuple[float, Pose]]:
    """Trimmed ICP from the 24 pairings of the two PCA frames, best first."""
    cm, am = pca_frame(model_pts)
    cs, as_ = pca_frame(scan_pts)
    results = []
    for cube in cube_rotations():
        if cancel:
            cancel()
        R = as_.T @ cube @ am
        pose, score = icp_point_to_point(model_pts, scan_pts, tree, border, Pose(R, cs - R @ cm),
                                         cfg.coarse_iterations, cfg.trim)
        results.append((score, pose))
    return sorted(results, key=lambda r: r[0])


def align(face_pts: np.ndarray, scan: ScanSurface, cfg: RigidConfig, start: Pose | None = None,
          cancel: Callable[[], None] | None = None, head_pts: np.ndarray | None = None) -> tuple[Pose, float]:
    """Best rigid pose of the face template (model frame) on the scan; see the module docstring.

    The coarse search runs with the face and, when given, the whole-head template (a head scan's
    centre is far from its face's); the best starts of each are refined on the face alone."""
    face = face_pts[:: max(1, len(face_pts) // cfg.coarse_points)]
    if start is not None:
        return icp_point_to_plane(face, scan, start, cfg.refine_iterations, cfg.trim)
    sub = scan.subsample(cfg.coarse_scan_points)
    scan_pts, border = scan.points[sub], scan.border[sub]
    tree = cKDTree(scan_pts)
    starts = []
    for pts in (face_pts, head_pts):
        if pts is not None:
            coarse = pts[:: max(1, len(pts) // cfg.coarse_points)]
            starts += [pose for _, pose in _coarse_search(coarse, scan_pts, tree, border, cfg, cancel)[: cfg.refine_starts]]
    refined = [icp_point_to_plane(face, scan, pose, cfg.refine_iterations, cfg.trim) for pose in starts]
    return min(refined, key=lambda r: r[1])
