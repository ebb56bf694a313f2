"""Rigid alignment of the face template to a scan in any pose, with or without landmarks.

Without landmarks the pose is found from geometry alone, by two searches whose best starts are
refined together:

- PCA starts: the principal axes of the scan and of the mean face give a frame each, and the 24
  rotations of a cube between them (each also turned +-30 degrees about each axis) cover every way
  the axes can pair up and point. This finds a front crop, whose axes are the face's.
- Nose-tip starts: for 200 directions the scan's extreme point along the direction is taken and
  scored by how far it protrudes above the surface 20-35 mm around it. Seen from the front the nose
  tip stands 20-30 mm above cheeks and eyes; the extreme point of a round skull, a chin or a crop's
  edge stands a few mm. The model's nose tip is put on the few most protruding tips, looking along
  their direction, at 12 turns about it. This finds the face on a whole-head scan, whose overall
  shape (nearly as deep as wide) says little about which way the face looks: the PCA search alone
  put the face on the back of the head for 2 of 5 such scans.

A few steps of trimmed point-to-point ICP screen every start on ~200 template points and the most
promising are continued; the few best are refined with point-to-plane ICP on the dense scan (the
pipeline then judges the best three by a strong-prior identity fit). Trimming (only the closest
``trim`` fraction of template points count) lets a scan cover less than the template (a front crop)
and matches on the scan's open border are ignored. An optional third search uses the kit's
whole-head skin as template (``RigidConfig.head_search``, off: the nose search made it redundant).
With three or more landmarks the pose comes from a Kabsch fit of those points instead and only the
refinement runs.

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


def fibonacci_directions(count: int) -> np.ndarray:
    """``count`` unit vectors spread evenly over the sphere (deterministic)."""
    i = np.arange(count) + 0.5
    z = 1.0 - 2.0 * i / count
    phi = np.pi * (1.0 + 5 ** 0.5) * i
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


def _turn_z_to(d: np.ndarray) -> np.ndarray:
    """A rotation taking +z onto the unit vector ``d``."""
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, d)
    s, c = np.linalg.norm(axis), float(z @ d)
    if s < 1e-9:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    return rotation_from_vector(axis / s * np.arctan2(s, c))


def nose_candidates(scan_pts: np.ndarray, scan_normals: np.ndarray, border: np.ndarray, cfg: RigidConfig
                    ) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Where the nose tip may be: [(protrusion mm, tip point, forward direction)], most protruding first.

    For each of ``cfg.nose_directions`` directions d the scan's extreme point along d is taken, and its
    protrusion is how far it stands out along d above the surface 20-35 mm around it (sideways to d,
    facing d). Seen from the front, the nose tip stands 20-30 mm above the cheeks and eyes; the
    extreme point of a round skull, a chin or a crop's open edge stands much less (a few mm), so the
    tip and the direction the face looks are found without relying on the head's overall shape."""
    dirs = fibonacci_directions(cfg.nose_directions)
    along = scan_pts @ dirs.T                                   # (S, D)
    out = []
    for j, d in enumerate(dirs):
        tip = int(np.argmax(along[:, j]))
        if border[tip]:
            continue
        depth = along[tip, j] - along[:, j]
        rel = scan_pts - scan_pts[tip]
        lateral = np.sqrt(np.maximum((rel * rel).sum(1) - depth ** 2, 0.0))
        ring = (lateral > 20.0) & (lateral < 35.0) & (depth < 60.0) & (scan_normals @ d > 0.2)
        if ring.sum() < 10:
            continue
        out.append((float(np.median(depth[ring])), scan_pts[tip], d))
    out.sort(key=lambda c: -c[0])
    distinct: list[tuple[float, np.ndarray, np.ndarray]] = []
    for c in out:
        if not any(np.linalg.norm(c[1] - o[1]) < 15.0 for o in distinct):
            distinct.append(c)
    return distinct[: cfg.nose_tips]


def nose_starts(nose_model: np.ndarray, scan_pts: np.ndarray, scan_normals: np.ndarray, border: np.ndarray,
                cfg: RigidConfig) -> list[Pose]:
    """Face poses with the model's nose tip on a candidate tip, looking along its direction (model +z),
    at ``cfg.nose_rolls`` turns about it."""
    starts = []
    for _, tip, d in nose_candidates(scan_pts, scan_normals, border, cfg):
        base = _turn_z_to(d)
        for roll in np.arange(cfg.nose_rolls) * 2 * np.pi / cfg.nose_rolls:
            R = rotation_from_vector(d * roll) @ base
            starts.append(Pose(R, tip - R @ nose_model))
    return starts


def _coarse_search(model_pts: np.ndarray, model_normals: np.ndarray, scan_pts: np.ndarray, scan_normals: np.ndarray,
                   tree: cKDTree, border: np.ndarray, cfg: RigidConfig,
                   cancel: Callable[[], None] | None, starts: list[Pose] | None = None) -> list[tuple[float, Pose]]:
    """Trimmed ICP from every start (by default every start rotation between the two PCA frames): a
    few steps each, then the most promising continued; best first."""
    if starts is None:
        cm, am = pca_frame(model_pts)
        cs, as_ = pca_frame(scan_pts)
        starts = [Pose(R, cs - R @ cm) for R in (as_.T @ rot @ am for rot in start_rotations())]
    args = (model_pts, model_normals, scan_pts, scan_normals, tree, border)
    k = max(1, len(model_pts) // cfg.screen_points)
    screen = (model_pts[::k], model_normals[::k], scan_pts, scan_normals, tree, border)
    results = []
    for pose in starts:
        if cancel:
            cancel()
        results.append(icp_point_to_point(*screen, pose, cfg.screen_iterations, cfg.trim)[::-1])
    results.sort(key=lambda r: r[0])
    results = [icp_point_to_point(*args, pose, cfg.coarse_iterations, cfg.trim)[::-1]
               for _, pose in results[: cfg.screen_keep]]
    return sorted(results, key=lambda r: r[0])


def _same(a: Pose, b: Pose, mm: float = 2.0, deg: float = 2.0) -> bool:
    angle = np.degrees(np.arccos(np.clip((np.trace(a.R.T @ b.R) - 1) / 2, -1.0, 1.0)))
    return bool(np.linalg.norm(a.t - b.t) < mm and angle < deg)


def align(face: tuple[np.ndarray, np.ndarray], scan: ScanSurface, cfg: RigidConfig, start: Pose | None = None,
          cancel: Callable[[], None] | None = None, head: tuple[np.ndarray, np.ndarray] | None = None,
          nose: np.ndarray | None = None) -> list[tuple[float, Pose]]:
    """Rigid poses of the face template ((points, normals), model frame) on the scan, best first
    (distinct ones only); see the module docstring.

    The coarse search runs with the face from the PCA starts, with the face from the nose-tip starts
    (when the model's nose tip ``nose`` is given) and, when given, with the whole-head template; the
    best starts of each are refined on the face alone."""
    step = max(1, len(face[0]) // cfg.coarse_points)
    face_pts, face_normals = face[0][::step], face[1][::step]
    if start is not None:
        pose, score = icp_point_to_plane(face_pts, face_normals, scan, start, cfg.refine_iterations, cfg.trim)
        return [(score, pose)]
    sub = scan.subsample(cfg.coarse_scan_points)
    scan_pts, scan_normals, border = scan.points[sub], scan.normals[sub], scan.border[sub]
    tree = cKDTree(scan_pts)
    searches = [(face, None)]
    if nose is not None:
        searches.append((face, nose_starts(nose, scan_pts, scan_normals, border, cfg)))
    if head is not None:
        searches.append((head, None))
    starts = []
    for template, given in searches:
        if given is not None and not given:
            continue
        k = max(1, len(template[0]) // cfg.coarse_points)
        found = _coarse_search(template[0][::k], template[1][::k], scan_pts, scan_normals, tree, border, cfg,
                               cancel, given)
        starts += [pose for _, pose in found[: cfg.refine_starts]]
    refined = sorted((icp_point_to_plane(face_pts, face_normals, scan, pose, cfg.refine_iterations, cfg.trim)[::-1]
                      for pose in starts), key=lambda r: r[0])
    distinct: list[tuple[float, Pose]] = []
    for score, pose in refined:
        if np.isfinite(score) and not any(_same(pose, p) for _, p in distinct):
            distinct.append((score, pose))
    return distinct or refined[:1]
