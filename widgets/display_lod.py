"""A coarser display mesh over the same vertices, for faces drawn small (the retarget thumbnails).

Why: with software GL each drawn face costs GUI-thread vertex work and rasteriser triangle set-up
in proportion to its triangles. Drawing the four retarget thumbnails with about half of them took
the studio from 27-28 to 32-33 fps with the ground truth shown (`benchmarks/studio_fps.py
--targets 4`, docs/studio_speed.md).

How: rounds of half-edge collapses. Each round picks an independent set of interior vertices (no
two adjacent) and moves each onto its nearest neighbour, which removes the two triangles on that
edge. The coarse faces index the *original* vertices (a subset of them), so per-frame vertex
positions, the worker's smooth normals and the UVs are used as they are: only the index buffer
differs. Guards keep the surface: border vertices (the eye and mouth openings, the mesh's rim,
UV seams), their one-ring and small parts (the irises) are never removed; a collapse must keep the edge's link (exactly two shared
neighbours), must not turn a triangle by more than `max_turn_deg`, and must not use an edge longer
than `max_edge_factor` x the median edge; a round that still makes an edge non-manifold undoes
the collapses involved. numpy and scipy only: the kit's face takes ~0.26 s, once per topology.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def coarse_faces(vertices: np.ndarray, faces: np.ndarray, rounds: int = 2, max_turn_deg: float = 15.0,
                 max_edge_factor: float = 1.5, min_component: int = 1000, border_rings: int = 1) -> np.ndarray:
    """(F', 3) faces over a subset of `vertices`' indices, F' ~ F x 0.75 per round.

    Pinned (never removed): vertices of connected parts smaller than `min_component` vertices
    (the irises: small, and what a viewer looks at) and those within `border_rings` edges of a
    border (the lip and eyelid contours keep their shape)."""
    vertices = np.asarray(vertices, np.float64)
    out = np.asarray(faces, np.int64)
    pinned = _pinned(out, len(vertices), min_component, border_rings)
    limit = max_edge_factor * float(np.median(_edge_lengths(vertices, _edges(out)))) if len(out) else 0.0
    for _ in range(max(0, rounds)):
        out = _collapse_round(vertices, out, np.cos(np.radians(max_turn_deg)), limit, pinned)
    return out.astype(np.asarray(faces).dtype, copy=False)


def _adjacency(faces: np.ndarray, n: int) -> sp.csr_matrix:
    e = _edges(faces)
    a = sp.coo_matrix((np.ones(2 * len(e)), (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(n, n)).tocsr()
    a.data[:] = 1.0
    return a


def _pinned(faces: np.ndarray, n: int, min_component: int, border_rings: int) -> np.ndarray:
    from scipy.sparse.csgraph import connected_components
    pinned = np.zeros(n, bool)
    if not len(faces):
        return pinned
    adjacency = _adjacency(faces, n)
    _, label = connected_components(adjacency, directed=False)
    pinned |= np.bincount(label)[label] < min_component
    unique, counts = np.unique(_edges(faces), axis=0, return_counts=True)
    ring = np.zeros(n, bool)
    ring[unique[counts != 2].ravel()] = True
    for _ in range(max(0, border_rings)):
        ring |= (adjacency @ ring.astype(np.float64)) > 0
    return pinned | ring


def _edges(faces: np.ndarray) -> np.ndarray:
    """(3F, 2) undirected edges, smaller index first, one per face side."""
    e = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    return np.sort(e, axis=1)


def _edge_lengths(vertices: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1)


def _normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return np.cross(b - a, c - a)


def _collapse_round(vertices: np.ndarray, faces: np.ndarray, cos_limit: float, max_len: float,
                    pinned_before: np.ndarray) -> np.ndarray:
    n = len(vertices)
    sides = _edges(faces)
    unique, counts = np.unique(sides, axis=0, return_counts=True)
    pinned = pinned_before.copy()
    pinned[unique[counts != 2].ravel()] = True  # border and non-manifold edges keep their ends
    used = np.zeros(n, bool)
    used[faces.ravel()] = True
    adjacency = _adjacency(faces, n)

    # each vertex's candidate target: its nearest neighbour
    directed = np.r_[unique, unique[:, ::-1]]
    length = _edge_lengths(vertices, directed)
    order = np.lexsort((length, directed[:, 0]))
    directed, length = directed[order], length[order]
    first = np.r_[True, directed[1:, 0] != directed[:-1, 0]]
    target = np.full(n, -1, np.int64)
    target[directed[first, 0]] = directed[first, 1]
    nearest = np.full(n, np.inf)
    nearest[directed[first, 0]] = length[first]

    candidate = used & ~pinned & (target >= 0) & (nearest <= max_len)
    v = np.flatnonzero(candidate)
    shared = np.asarray(adjacency[v].multiply(adjacency[target[v]]).sum(axis=1)).ravel()
    candidate[v[shared != 2]] = False  # the link condition: the edge's two opposite vertices only

    # no triangle around v may turn by more than the limit or collapse to a sliver
    before = _normals(vertices, faces)
    ok = np.ones(n, bool)
    for k in range(3):
        corner = faces[:, k]
        moving = candidate[corner] & ~np.any(faces == target[corner][:, None], axis=1)
        if not moving.any():
            continue
        moved = faces[moving].copy()
        moved[:, k] = target[corner[moving]]
        after = _normals(vertices, moved)
        b = before[moving]
        cos = np.einsum("ij,ij->i", b, after) / np.maximum(np.linalg.norm(b, axis=1) * np.linalg.norm(after, axis=1), 1e-20)
        bad = (cos < cos_limit) | (np.linalg.norm(after, axis=1) < 1e-3 * np.linalg.norm(b, axis=1))
        ok[corner[moving][bad]] = False
    candidate &= ok

    # an independent set, shortest collapses first
    removed = np.zeros(n, bool)
    blocked = np.zeros(n, bool)
    indptr, indices = adjacency.indptr, adjacency.indices
    for vertex in np.flatnonzero(candidate)[np.argsort(nearest[candidate], kind="stable")]:
        if blocked[vertex]:
            continue
        removed[vertex] = True
        blocked[vertex] = True
        blocked[indices[indptr[vertex]:indptr[vertex + 1]]] = True

    while True:
        mapped = np.where(removed[faces], target[faces], faces)
        keep = (mapped[:, 0] != mapped[:, 1]) & (mapped[:, 1] != mapped[:, 2]) & (mapped[:, 0] != mapped[:, 2])
        result = mapped[keep]
        sides = _edges(result)
        unique, inverse, counts = np.unique(sides, axis=0, return_inverse=True, return_counts=True)
        bad_edges = counts[inverse.ravel()] > 2
        if not bad_edges.any():
            return result
        # undo every collapse that touched a face on a non-manifold edge
        bad_faces = np.flatnonzero(keep)[np.unique(np.flatnonzero(bad_edges) // 3)]
        involved = faces[bad_faces].ravel()
        removed[involved[removed[involved]]] = False
