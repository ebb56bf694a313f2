"""Scans made from the kit's identities but not in its topology, for tests and the benchmark.

A synthetic identity's true neutral is known exactly, so registration error can be measured. The
scan is the identity's outer skin (the kit's face and head/neck, no eyes or mouth interior, as a
scanner sees a person with a closed mouth) made unlike the model mesh on purpose:

- ``subdivide``: every triangle split in four (midpoint), ~4x the vertices;
- ``decimate``: vertex clustering on a ``cell_mm`` grid (new vertices at cluster means, new triangles);
- ``retriangulate``: subdivided, then clustered on a rotated grid: every vertex and triangle is new;
- ``crop_front``: only the front of the face (nothing behind ``crop_z_mm`` in the model frame);
- ``noise_mm``: Gaussian noise on every vertex; ``units``: written in cm, m or inches;
- ``pose``: a random rotation and translation (seeded).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from engine.facemodel import FaceModel, _subset_faces
from engine.registration.units import unit_factor

SKIN_RANGES = ("face", "head_neck")


@dataclass
class ScanSpec:
    remesh: str = "retriangulate"   # none | subdivide | decimate | retriangulate
    cell_mm: float = 2.0
    subdivisions: int = 1           # midpoint splits before re-triangulating (more: denser scans)
    crop_front: bool = False
    crop_z_mm: float = 70.0
    noise_mm: float = 0.0
    units: str = "mm"
    pose: bool = True
    seed: int = 0


def skin_mesh(model: FaceModel, full_verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The outer skin of a full-kit mesh (face + head and neck) as its own mesh."""
    keep = np.concatenate([model.vertex_range(n) for n in SKIN_RANGES])
    faces = _subset_faces(model.faces, keep, model.vertex_count)
    return full_verts[keep].astype(np.float64), faces.astype(np.int64)


def subdivide(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split every triangle into four at its edge midpoints."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    mids = len(verts) + inverse.reshape(3, -1).T  # (F, 3): midpoints of edges 01, 12, 20
    new_verts = np.vstack([verts, 0.5 * (verts[unique[:, 0]] + verts[unique[:, 1]])])
    a, b, c = faces.T
    ab, bc, ca = mids.T
    new_faces = np.concatenate([np.stack(t, 1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))])
    return new_verts, new_faces


def cluster(verts: np.ndarray, faces: np.ndarray, cell: float, rotation: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering on a (rotated) grid: a new mesh with roughly one vertex per cell."""
    grid = verts if rotation is None else verts @ rotation.T
    keys = np.floor((grid - grid.min(0)) / cell).astype(np.int64)
    _, label = np.unique(keys, axis=0, return_inverse=True)
    label = label.ravel()
    count = np.bincount(label)
    new_verts = np.stack([np.bincount(label, verts[:, k]) for k in range(3)], 1) / count[:, None]
    f = label[faces]
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])]
    f = np.unique(f, axis=0)
    return new_verts, f


def make_scan(model: FaceModel, identity: np.ndarray, spec: ScanSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scan vertices in spec.units, scan triangles, true neutral on the model topology in mm)."""
    rng = np.random.default_rng(spec.seed)
    full = model.identity_shape(identity)
    truth = model.to_topology(full).astype(np.float64)
    verts, faces = skin_mesh(model, full)
    if spec.crop_front:
        faces = faces[(verts[faces][:, :, 2] > spec.crop_z_mm).all(1)]
    for _ in range(spec.subdivisions if spec.remesh in ("subdivide", "retriangulate") else 0):
        verts, faces = subdivide(verts, faces)
    if spec.remesh == "decimate":
        verts, faces = cluster(verts, faces, spec.cell_mm)
    elif spec.remesh == "retriangulate":
        verts, faces = cluster(verts, faces, spec.cell_mm, Rotation.random(random_state=spec.seed).as_matrix())
    used = np.unique(faces)
    remap = np.full(len(verts), -1)
    remap[used] = np.arange(len(used))
    verts, faces = verts[used], remap[faces]
    if spec.noise_mm > 0:
        verts = verts + rng.normal(0.0, spec.noise_mm, verts.shape)
    if spec.pose:
        R = Rotation.random(random_state=rng).as_matrix()
        verts = verts @ R.T + rng.uniform(-200, 200, 3)
    return verts / unit_factor(spec.units), faces, truth
