"""Compact ground truth of synthetic captures: meshes recomputed from the face model's coefficients.

A synthetic frame's mesh is the identity's neutral (kit neutral + identity modes x weights) plus the
person's blendshape weights times the expression modes, with the eyeballs turned by the gaze. So a
capture needs to store only the identity weights (once, in capture.json), the blendshape weights
(T, E) and the gaze (T, 2, 2): ~250 bytes a frame instead of ~90 KB of mesh. That is what lets a
training world of thousands of identities fit on this machine's disk (`SynthConfig.store_meshes`
False). `CompactMeshes` recomputes meshes on access through the very code path the renderer used,
so they equal what meshes.npy would hold bit for bit (tests/test_synth.py checks it).
"""
from __future__ import annotations

from typing import Any

import numpy as np

IDENTITY_FIELD = "identity_weights"  # capture.json provenance field holding the identity weights


class CompactMeshes:
    """(T, V, 3) float32 meshes in mm on the model topology, computed on indexing.

    Indexes like the memory-mapped meshes.npy it replaces: an int gives (V, 3), a slice, list or
    index array gives (N, V, 3), and `np.asarray` gives the whole (T, V, 3).
    """

    def __init__(self, identity_weights: np.ndarray, blendshapes: np.ndarray, gaze: np.ndarray) -> None:
        from engine.facemodel import load_face_model
        if len(blendshapes) != len(gaze):
            raise ValueError(f"compact ground truth: {len(blendshapes)} blendshape rows but "
                             f"{len(gaze)} gaze rows")
        self.model = load_face_model()
        self.neutral_full = self.model.identity_shape(np.asarray(identity_weights, np.float32))
        self.blendshapes, self.gaze = blendshapes, gaze
        self.shape = (len(blendshapes), self.model.topology.vertex_count, 3)
        self.dtype = np.dtype(np.float32)
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def mesh(self, t: int) -> np.ndarray:
        """Frame t's mesh, exactly as the synthetic world rendered it."""
        full = self.model.expressed(self.neutral_full, np.asarray(self.blendshapes[t], np.float32),
                                    np.asarray(self.gaze[t], np.float32))
        return self.model.to_topology(full).astype(np.float32)

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            t = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= t < len(self):
                raise IndexError(f"frame {index} out of range for {len(self)} frames")
            return self.mesh(t)
        frames = np.arange(len(self))[index]
        out = np.empty((len(frames), *self.shape[1:]), np.float32)
        for k, t in enumerate(frames):
            out[k] = self.mesh(int(t))
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)
