"""Non-rigid refinement: what the identity modes cannot express, as a smooth displacement along the normals.

A real face differs from its best identity-mode fit by a few millimetres here and there. Each
vertex of the fitted face moves along its own normal by d_i, found from one sparse linear system:

    sum_valid w_i (a_i d_i - b_i)^2 + smoothness * sum_edges (d_i - d_j)^2 + anchor * sum_i d_i^2

with the point-to-plane residual of the vertex's scan match (a_i = n_scan . n_vertex,
b_i = n_scan . (c_i - x_i)) as data. This is Laplacian (membrane) deformation towards the closest
points, solved with scipy's sparse LU; moving along the normal only means the model's correspondence
(which vertex is the nose tip) is not dragged sideways across the surface, which plain
closest-point deformation would do. Vertices the scan does not cover (and the eyes and the hidden
inner lips, see ``template.py``) get no data term: the smoothness carries nearby displacement a
little way into them and the anchor brings them back to the model fit. Three rounds re-match the
moved surface. Displacements are clipped to ``max_displacement_mm``. On a noisy scan (estimated vertex
noise above ``model_normals_noise_mm``, see ``scan.estimate_noise``) the residual is taken along the
fitted face's own normal instead of the scan's, which the noise tilts, and the smoothness grows with the
noise's variance (``noisy_smoothness``): at 0.5 mm of noise the membrane at the clean-scan weight followed
the noise and left the face ~0.013 mm worse than the identity fit alone (docs/registration.md).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from engine.registration.config import RefineConfig
from engine.registration.correspond import match
from engine.registration.rigid import Pose
from engine.registration.scan import ScanSurface
from engine.registration.template import Template

EYE_ANCHOR = 1e3


def noisy_smoothness(cfg: RefineConfig, noise_mm: float) -> float:
    """The membrane weight for a scan with this estimated vertex noise: ``smoothness`` up to
    ``model_normals_noise_mm``, then growing with the noise's variance (x11 at 0.5 mm)."""
    return cfg.smoothness * max(1.0, (noise_mm / cfg.model_normals_noise_mm) ** 2)


def refine(template: Template, scan: ScanSurface, pose: Pose, fitted: np.ndarray, cfg: RefineConfig) -> np.ndarray:
    """The fitted face (model frame) displaced along its normals towards the scan."""
    normals = template.normals(fitted)
    anchor = np.full(template.vertex_count, cfg.anchor)
    anchor[template.eyes] = EYE_ANCHOR
    system = noisy_smoothness(cfg, scan.noise_mm) * template.laplacian + sp.diags(anchor)
    d = np.zeros(template.vertex_count)
    for _ in range(cfg.iterations):
        verts = fitted + d[:, None] * normals
        m = match(verts, template.normals(verts), scan, pose, cfg.max_distance_mm, cfg.min_normal_dot, template.fit)
        v = m.valid
        n = normals if scan.noise_mm > cfg.model_normals_noise_mm else m.normals
        a = np.where(v, np.einsum("ij,ij->i", n, normals), 0.0)
        b = np.where(v, np.einsum("ij,ij->i", n, m.points - fitted), 0.0)
        lhs = (system + sp.diags(a * a)).tocsc()
        d = np.clip(spsolve(lhs, a * b), -cfg.max_displacement_mm, cfg.max_displacement_mm)
    return fitted + d[:, None] * normals
