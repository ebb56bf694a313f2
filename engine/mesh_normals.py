"""Smooth vertex normals of a fixed triangle topology, as one sparse product per mesh.

Both the headless renderer and the studio's frame worker light meshes of one topology frame after
frame: the face -> vertex incidence is built once, and each frame costs a cross product per face
and one sparse matrix product (numpy + scipy, no GL), so it can run on whichever thread has time.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def vertex_normal_operator(faces: np.ndarray, n_verts: int) -> sp.csr_matrix:
    """Sparse (V, F) incidence so that vertex normals are one matrix product per frame."""
    rows = np.asarray(faces).ravel()
    cols = np.repeat(np.arange(len(faces)), 3)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_verts, len(faces)))


def vertex_normals(verts: np.ndarray, faces: np.ndarray, op: sp.csr_matrix) -> np.ndarray:
    """(V, 3) unit normals: the area-weighted sum of each vertex's face normals."""
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    fn = np.cross(v1 - v0, v2 - v0)  # area-weighted
    n = op @ fn
    return (n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-8)).astype(np.float32)


class TopologyNormals:
    """Normals for meshes of one topology: ``normals(verts)`` for (V', 3) with V' >= V; None
    for a mesh of fewer vertices (not this topology)."""

    def __init__(self, faces: np.ndarray) -> None:
        self.faces = np.ascontiguousarray(faces, np.int64)
        self.n_verts = int(self.faces.max()) + 1 if self.faces.size else 0
        self.op = vertex_normal_operator(self.faces, self.n_verts)

    def __call__(self, verts: np.ndarray | None) -> np.ndarray | None:
        if verts is None or len(verts) < self.n_verts:
            return None
        return vertex_normals(np.asarray(verts[: self.n_verts], np.float32), self.faces, self.op)
