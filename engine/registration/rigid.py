"""Rigid alignment of the face template to a scan in any pose, with or without landmarks.

Without landmarks the pose is found from geometry alone: the principal axes of the scan and of the
mean face give a frame each, the 24 rotations of a cube between them cover every way the axes can
pair up and point (a scan's longest axis may be its height or its width, and PCA signs are arbitrary),
each also turned +-30 degrees about each axis (a head's width and depth are so alike that its axes in
that plane are only rough); a few steps of trimmed point-to-point ICP screen every start on ~800
template points and the most promising are continued. The few best starts are
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
MIN_NORMAL_DOT = 0.3


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


def _score(dist: np.ndarray, keep: np.ndarray, trim: float, missing: float) -> float:
    """Trimmed mean distance over the best ``trim`` fraction of all points; points short of that
    fraction (no valid match) count as ``missing`` mm, so a pose matching only a sliver scores badly."""
    target = max(3, int(trim * len(dist)))
    return float((dist[keep].sum() + max(target - len(keep), 0) * missing) / target)


def _trimmed(dist: np.ndarray, valid: np.ndarray, trim: float) -> np.ndarray:
    """Indices of the closest ``trim`` fraction of the valid matches."""
    idx = np.flatnonzero(valid)
    if len(idx) < 3:
        return idx
    keep = max(3, int(trim * len(dist)))
    return idx[np.argsort(dist[idx])[:keep]]


def _facing(pose: Pose, model_normals: np.ndarray, scan_normals: np.ndarray) -> np.ndarray:
    """Matches whose normals agree (a face fitted inside out or onto the back of a head does not)."""
    return np.einsum("ij,ij->i", model_normals @ pose.R.T, scan_normals) > MIN_NORMAL_DOT


def icp_point_to_point(model_pts: np.ndarray, model_normals: np.ndarray, scan_pts: np.ndarray,
                       scan_normals: np.ndarray, tree: cKDTree, border: np.ndarray, pose: Pose, iterations: int,
                       trim: float) -> tuple[Pose, float]:
    """Trimmed point-to-point ICP over matches with agreeing normals; returns the pose and its score."""
    score = np.inf
    for it in range(iterations + 1):
        dist, idx = tree.query(pose.apply(model_pts))
        keep = _trimmed(dist, ~border[idx] & _facing(pose, model_normals, scan_normals[idx]), trim)
        if len(keep) < 3:
            return pose, np.inf
        score = _score(dist, keep, trim, float(np.median(dist)) + 10.0)
        if it < iterations:
            pose = kabsch(model_pts[keep], scan_pts[idx[keep]])
    return pose, score


def point_to_plane_step(p: np.ndarray, c: np.ndarray, n: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Small rotation R and translation v minimising sum w (n . (R p + v - c))^2 (linearised)."""
    a = np.hstack([np.cross(p, n), n])
    b = np.einsum("ij,ij->i", n, c - p)
    aw = a * w[:, None]
    x = np.linalg.solve(aw.T @ a + 1e-6 * np.eye(6), aw.T @ b)
    return rotation_from_vector(x[:3]), x[3:]


def icp_point_to_plane(model_pts: np.ndarray, model_normals: np.ndarray, scan: ScanSurface, pose: Pose,
                       iterations: int, trim: float) -> tuple[Pose, float]:
    """Trimmed point-to-plane ICP against the dense scan samples (matches beyond 10, later 5 mm are
    ignored: the coarse search got the pose that close, and a bounded KD-tree search is fast)."""
    score = np.inf
    for it in range(iterations):
        p = pose.apply(model_pts)
        dist, idx = scan.closest(p, PLANE_BOUND_MM if it < iterations // 2 else PLANE_BOUND_MM / 2)
        bound = PLANE_BOUND_MM if it < iterations // 2 else PLANE_BOUND_MM / 2
        keep = _trimmed(dist, np.isfinite(dist) & ~scan.border[idx]
                        & _facing(pose, model_normals, scan.normals[idx]), trim)
        if len(keep) < 6:
            return pose, np.inf
        score = _score(dist, keep, trim, bound)
        dR, v = point_to_plane_step(p[keep], scan.points[idx[keep]], scan.normals[idx[keep]], np.ones(len(keep)))
        pose = Pose(dR @ pose.R, dR @ pose.t + v)
    return pose, score


def landmark_pose(model_pts: np.ndarray, scan_pts: np.ndarray) -> Pose:
    """The rigid pose that maps the template's landmarks onto the scan's."""
    return kabsch(model_pts, scan_pts)


def start_rotations() -> list[np.ndarray]:
    """The 24 cube rotations, each also turned by +-30 degrees about each axis (168 in all): a head is
    nearly as deep as it is wide, so its principal axes in that plane are only known roughly."""
    turns = [np.eye(3)] + [rotation_from_vector(np.eye(3)[a] * s * np.pi / 6) for a in range(3) for s in (1, -1)]
    return [turn @ cube for cube in cube_rotations() for turn in turns]


def _coarse_search(model_pts: np.ndarray, model_normals: np.ndarray, scan_pts: np.ndarray, scan_normals: np.ndarray,
                   tree: cKDTree, border: np.ndarray, cfg: RigidConfig,
                   cancel: Callable[[], None] | None) -> list[tuple[float, Pose]]:
    """Trimmed ICP from every start rotation between the two PCA frames: a few steps each, then the
    most promising continued; best first."""
    cm, am = pca_frame(model_pts)
    cs, as_ = pca_frame(scan_pts)
    args = (model_pts, model_normals, scan_pts, scan_normals, tree, border)
    k = max(1, len(model_pts) // cfg.screen_points)
    screen = (model_pts[::k], model_normals[::k], scan_pts, scan_normals, tree, border)
    results = []
    for rot in start_rotations():
        if cancel:
            cancel()
        R = as_.T @ rot @ am
        results.append(icp_point_to_point(*screen, Pose(R, cs - R @ cm), cfg.screen_iterations, cfg.trim)[::-1])
    results.sort(key=lambda r: r[0])
    results = [icp_point_to_point(*args, pose, cfg.coarse_iterations, cfg.trim)[::-1]
               for _, pose in results[: cfg.screen_keep]]
    return sorted(results, key=lambda r: r[0])


def _same(a: Pose, b: Pose, mm: float = 2.0, deg: float = 2.0) -> bool:
    angle = np.degrees(np.arccos(np.clip((np.trace(a.R.T @ b.R) - 1) / 2, -1.0, 1.0)))
    return bool(np.linalg.norm(a.t - b.t) < mm and angle < deg)


def align(face: tuple[np.ndarray, np.ndarray], scan: ScanSurface, cfg: RigidConfig, start: Pose | None = None,
          cancel: Callable[[], None] | None = None, head: tuple[np.ndarray, np.ndarray] | None = None
          ) -> list[tuple[float, Pose]]:
    """Rigid poses of the face template ((points, normals), model frame) on the scan, best first
    (distinct ones only); see the module docstring.

    The coarse search runs with the face and, when given, the whole-head template (a head scan's
    centre is far from its face's); the best starts of each are refined on the face alone."""
    step = max(1, len(face[0]) // cfg.coarse_points)
    face_pts, face_normals = face[0][::step], face[1][::step]
    if start is not None:
        pose, score = icp_point_to_plane(face_pts, face_normals, scan, start, cfg.refine_iterations, cfg.trim)
        return [(score, pose)]
    sub = scan.subsample(cfg.coarse_scan_points)
    scan_pts, scan_normals, border = scan.points[sub], scan.normals[sub], scan.border[sub]
    tree = cKDTree(scan_pts)
    starts = []
    for template in (face, head):
        if template is not None:
            k = max(1, len(template[0]) // cfg.coarse_points)
            found = _coarse_search(template[0][::k], template[1][::k], scan_pts, scan_normals, tree, border, cfg,
                                   cancel)
            starts += [pose for _, pose in found[: cfg.refine_starts]]
    refined = sorted((icp_point_to_plane(face_pts, face_normals, scan, pose, cfg.refine_iterations, cfg.trim)[::-1]
                      for pose in starts), key=lambda r: r[0])
    distinct: list[tuple[float, Pose]] = []
    for score, pose in refined:
        if np.isfinite(score) and not any(_same(pose, p) for _, p in distinct):
            distinct.append((score, pose))
    return distinct or refined[:1]
