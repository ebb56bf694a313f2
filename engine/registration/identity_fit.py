"""Fit of the face model's identity coefficients (and the rigid pose) to the scan.

The kit's identity modes span plausible faces, so fitting their coefficients first gives a complete,
well-formed face with the model's correspondence everywhere — including where the scan has nothing
(sides of a front crop, inside the lips, the eyes). Each iteration matches model vertices to the scan
(see ``correspond.py``), solves the coefficients in closed form from point-to-plane residuals with a
small Tikhonov prior together with a linearised rigid step (one Gauss-Newton step on 6 + K unknowns,
a dense least-squares problem of V x (6 + K), tiny). Pose and coefficients are solved together, not in
turn, because the kit's identity modes are partly rigid motions (up to ~70% of a mode's displacement
is a translation or rotation of the face); alternating between them crawls along that valley and
stops with the face shifted by millimetres. The match radius shrinks from ``max_distance_mm`` to
3 mm as the fit settles so that far outliers stop pulling on it.

The prior is scheduled: ``iterations`` steps with the strong ``prior_start`` find the right basin and
a plausible face (a half face or a sphere would otherwise pull unconstrained modes to 10+ standard
deviations), then ``iterations`` more relax it geometrically to the weak ``prior`` so that detail the
data supports is fitted; the last iterate whose coefficients stay within ``plausible_sigma`` is kept.

In the weak-prior steps the residuals run the other way (``measured_vertices``): from the scan's own
vertices to the model's surface (``correspond.match_measured``), not from model vertices to the scan's
triangles. A coarse scan's triangles are chords that cut curved skin, and the weakly held modes
followed them by sliding the face along itself; the measured vertices lie on the skin (2.5 mm
front crops: 0.38 -> 0.14 mm mean error, docs/registration.md, "Measured vertices"). The strong-prior
steps, which find the basin and judge the pose, keep the model -> scan matches. With measured vertices
the relaxation ends at the MAP weight for unit-variance coefficients under the scan's estimated noise
(``relaxed_prior``) rather than the fixed weak ``prior``: 0.14 -> 0.095 mm on the same crops.

On a noisy scan (estimated vertex noise above ``model_normals_noise_mm``) the point-to-plane residual
is taken along the model's normals, not the scan's: 0.5 mm vertex noise tilts a 2.5 mm scan's normals
by ~7 degrees, and with them the residuals; the model's normals are clean (measured in
docs/registration.md, together with the wider border margin in ``scan.py`` that goes with it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from engine.registration.config import IdentityFitConfig
from engine.registration.correspond import Matches, MeasuredMatches, match, match_measured
from engine.registration.rigid import Pose, rotation_from_vector
from engine.registration.template import Template

FINAL_RADIUS_MM = 3.0


@dataclass
class IdentityFit:
    coefficients: np.ndarray  # (K,)
    pose: Pose
    verts: np.ndarray         # (V, 3) model frame
    matches: Matches
    strong: IdentityFit | None = None  # the strong-prior fit, which judges whether this is a face


def joint_step(template: Template, m: Matches, pose: Pose, beta: np.ndarray, prior: float,
               measured: MeasuredMatches | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Gauss-Newton step on pose and coefficients together: (dR, dt, new beta).

    Residual per valid vertex, in the scan frame: n . (R (mean + B beta) + t - c), linearised in a
    small rotation w and translation v applied after the current pose and in the coefficients. With
    ``measured`` the rows are those instead: per measured scan vertex s, n . (s - q) where q is the
    nearest model-surface point, a fixed blend of three model vertices. The prior is weighted by the
    number of rows either way."""
    k = len(beta)
    if measured is None:
        v = np.flatnonzero(m.valid)
        n = m.normals[v] @ pose.R.T                      # scan-frame normals
        p = pose.apply(template.shape(beta)[v])          # scan-frame vertices
        c = pose.apply(m.points[v])
        modes = template.modes_v[v, :, :k]                               # (n, 3, k) model frame
    else:
        n, p, c = measured.normals, measured.model_points, measured.scan_points
        modes = np.einsum("mc,mcdk->mdk", measured.weights, template.modes_v[measured.corners][..., :k])
    a_beta = np.einsum("nd,nde->ne", n @ pose.R, modes)             # n . R B_i
    a = np.hstack([np.cross(p, n), n, a_beta])
    b = np.einsum("ij,ij->i", n, c - p)
    reg = np.zeros(6 + k)
    reg[6:] = prior * max(len(b), 1)
    lhs = a.T @ a + np.diag(reg + 1e-9)
    rhs = a.T @ b
    rhs[6:] -= reg[6:] * beta
    x = np.linalg.solve(lhs, rhs)
    return rotation_from_vector(x[:3]), x[3:6], beta + x[6:]


def relaxed_prior(cfg: IdentityFitConfig, noise_mm: float, rows: int, step: int) -> float:
    """Per-row prior weight of relaxing step ``step``: geometric from ``prior_start`` to the MAP weight of
    unit-variance coefficients under the scan's estimated vertex noise, noise^2 / rows (so the summed
    prior is noise^2), held within [prior_floor, prior_start]."""
    end = float(np.clip(noise_mm ** 2 / max(rows, 1), cfg.prior_floor, cfg.prior_start))
    fraction = step / max(cfg.iterations - 1, 1)
    return float(cfg.prior_start * (end / cfg.prior_start) ** fraction)


def along_model_normals(m: Matches, verts: np.ndarray, normals: np.ndarray) -> Matches:
    """The matches with the model's own normals in place of the scan's (which noise tilts)."""
    plane = np.einsum("ij,ij->i", normals, verts - m.points)
    return Matches(m.points, normals, m.distance, plane, m.valid)


def fit_identity(template: Template, scan, pose: Pose, cfg: IdentityFitConfig,
                 progress: Callable[[int, int], None] | None = None, strong_only: bool = False) -> IdentityFit:
    """Strong-prior fit (finds the basin; judged by ``assess``), then a continuation to the weak prior
    that keeps the last iterate whose coefficients stay plausible."""
    k = min(cfg.modes, template.modes.shape[0])
    beta = np.zeros(k)
    verts = template.mean.copy()
    radii = np.geomspace(cfg.max_distance_mm, FINAL_RADIUS_MM, max(cfg.iterations // 2, 1))
    priors = np.geomspace(cfg.prior_start, cfg.prior, cfg.iterations)
    total = cfg.iterations if strong_only else 2 * cfg.iterations
    strong: IdentityFit | None = None
    kept: tuple[np.ndarray, Pose] | None = None
    for it in range(total):
        radius = radii[min(it, len(radii) - 1)]
        prior = cfg.prior_start if it < cfg.iterations else priors[it - cfg.iterations]
        normals = template.normals(verts)
        m = match(verts, normals, scan, pose, radius, cfg.min_normal_dot, template.fit)
        if scan.noise_mm > cfg.model_normals_noise_mm:
            m = along_model_normals(m, verts, normals)
        if it == cfg.iterations:
            strong = IdentityFit(beta, pose, verts, m)
        if m.valid.sum() < 50:
            break
        measured = None
        if cfg.measured_vertices and it >= cfg.iterations:
            measured = match_measured(verts, normals, template.faces, template.measured_faces, scan, pose, radius,
                                      cfg.min_normal_dot, cfg.measured_limit)
            if len(measured.scan_points) < 50:
                measured = None  # too few measured vertices near the face: keep the model -> scan rows
            elif cfg.prior_from_noise:
                prior = relaxed_prior(cfg, scan.noise_mm, len(measured.scan_points), it - cfg.iterations)
        dR, dt, beta = joint_step(template, m, pose, beta, prior, measured)
        pose = Pose(dR @ pose.R, dR @ pose.t + dt)
        verts = template.shape(beta)
        if it >= cfg.iterations and np.abs(beta).max() <= cfg.plausible_sigma:
            kept = (beta, pose)
        if progress:
            progress(it + 1, total)
    if kept is not None:
        beta, pose = kept
    verts = template.shape(beta)
    m = match(verts, template.normals(verts), scan, pose, FINAL_RADIUS_MM, cfg.min_normal_dot, template.fit)
    final = IdentityFit(beta, pose, verts, m)
    final.strong = strong or final
    return final
