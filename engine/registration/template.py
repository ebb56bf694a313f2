"""The face model as a registration template: mean shape, identity modes and masks on the model topology.

Registration produces a neutral in the model topology (``ict-narrow-iris``: the kit's narrow face plus
the front caps of the eyes) in the model's own frame and units (mm), which is what the shape network
G was trained on. Two masks decide what the scan may move:

- ``fit``: skin a scan sees. The corneas are left out (a scan of an eye is unreliable and G expects
  the model's eyes) and so are vertices whose normal faces back into the head in the mean face
  (the inner lips and mouth corners, nostril and eyelid linings), which a scan of a closed mouth
  cannot see; those vertices are kept from the model fit.
- ``eyes``: the cornea caps, which follow the identity fit only.
- ``measured_faces``: the triangles a measured scan vertex may be matched to (``correspond.match_measured``):
  visible skin not touching the model's open border, beyond which a scan goes on (scalp, neck) where
  the model has nothing to match it with.

``head`` (the kit's whole outer skin: face, scalp, ears, neck) is a second alignment template for
scans of a whole head, whose centre lies far behind the face's.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from engine.facemodel import FaceModel, _subset_faces, load_face_model
from engine.registration.scan import boundary_vertices, vertex_normals

BACK_FACING_Z = -0.05
HEAD_RANGES = ("face", "head_neck")


@dataclass(frozen=True)
class Template:
    """Mean face, identity modes, triangles, masks and landmarks on the model topology (model frame, mm)."""

    mean: np.ndarray          # (V, 3) float64
    modes: np.ndarray         # (K, V, 3) float64
    modes_v: np.ndarray       # (V, 3, K) the same, vertex-major for the fits
    faces: np.ndarray         # (F, 3) int64
    uvs: np.ndarray           # (V, 2)
    fit: np.ndarray           # (V,) bool, see the module docstring
    eyes: np.ndarray          # (V,) bool, cornea caps
    landmarks68: np.ndarray   # (68,) vertex indices
    laplacian: sp.csr_matrix  # (V, V) graph Laplacian D - A of the triangles
    topology_name: str
    topology_hash: str
    kit_index: np.ndarray     # (V,) into the full kit
    head: np.ndarray          # (H, 3) mean outer skin of the whole head (face, scalp, neck), for alignment
    head_normals: np.ndarray  # (H, 3)
    measured_faces: np.ndarray  # (F,) bool, see the module docstring

    @property
    def vertex_count(self) -> int:
        return int(self.mean.shape[0])

    def shape(self, coefficients: np.ndarray) -> np.ndarray:
        """Mean + identity modes weighted by ``coefficients`` (the first len(coefficients) modes)."""
        k = len(coefficients)
        return self.mean + self.modes_v[:, :, :k] @ coefficients

    @property
    def skin(self) -> tuple[np.ndarray, np.ndarray]:
        """(points, normals) of the mean face's visible skin, the rigid template."""
        return self.mean[self.fit], self.normals(self.mean)[self.fit]

    def normals(self, verts: np.ndarray) -> np.ndarray:
        return vertex_normals(verts, self.faces)


def graph_laplacian(faces: np.ndarray, n: int) -> sp.csr_matrix:
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    adj = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    adj = ((adj + adj.T) > 0).astype(np.float64)
    return (sp.diags(np.asarray(adj.sum(1)).ravel()) - adj).tocsr()


def build_template(model: FaceModel) -> Template:
    topo = model.topology
    kit = topo.kit_index
    mean = model.neutral[kit].astype(np.float64)
    faces = topo.faces.astype(np.int64)
    eyes = np.zeros(len(kit), bool)
    kit_pos = {int(k): i for i, k in enumerate(kit)}
    for side in ("left", "right"):
        eyes[[kit_pos[int(k)] for k in model.cornea(side)]] = True
    normals = vertex_normals(mean, faces)
    fit = ~eyes & (normals[:, 2] > BACK_FACING_Z)
    measured_faces = fit[faces].all(1) & ~boundary_vertices(faces, len(kit))[faces].any(1)
    landmarks = np.array([kit_pos[int(k)] for k in model.landmarks68], np.int64)
    modes = model.identity_modes[:, kit].astype(np.float64)
    head_index = np.concatenate([model.vertex_range(n) for n in HEAD_RANGES])
    head = model.neutral[head_index].astype(np.float64)
    head_faces = _subset_faces(model.faces, head_index, model.vertex_count).astype(np.int64)
    head_normals = vertex_normals(head, head_faces)
    return Template(mean, modes, np.ascontiguousarray(modes.transpose(1, 2, 0)), faces, topo.uvs, fit, eyes,
                    landmarks, graph_laplacian(faces, len(kit)), topo.name, topo.hash, kit, head, head_normals,
                    measured_faces)


@lru_cache(maxsize=1)
def load_template() -> Template:
    """The shipped face model as a template (built once per process, ~1 s)."""
    return build_template(load_face_model())
