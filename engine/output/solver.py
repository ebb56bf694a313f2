"""Per-frame ARKit-52 weights (and eye gaze) from a driven mesh: a bounded least-squares fit.

The shape network G predicts a mesh, not blendshape weights. The face model's expression modes are
the same for every identity (a subject's face is its neutral plus weights x modes), so the weights
that best explain ``mesh - neutral`` in the modes, bounded to [0, 1], are that subject's blendshape
weights, for the driven subject and every retarget target alike, with no training. The corneas are
left out of the fit: gaze rotates them, not the modes; gaze is read from them separately.

The fit is made cheap by factoring once: with A the (3V, E) basis and R the Cholesky factor of
AᵀA + λI = RᵀR, min ||Aw - d||² + λ||w||² equals min ||Rw - y||² with Rᵀy = Aᵀd, an E x E system:
a frame costs one (E x 3V) product plus a tiny bounded solve (NNLS, or BVLS when 1 binds).
That product runs on one BLAS thread: split over both cores of a busy 2-core machine, OpenBLAS
made it ~9 ms instead of ~1 ms a frame and its spinning threads slowed the rest of the frame loop
(`mia stream` of the demo capture: 35 -> 83 fps, measured).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, solve_triangular
from scipy.optimize import lsq_linear, nnls

from engine.output.arkit import IctToArkit
from engine.registration.blas import single_threaded_blas


@dataclass(frozen=True)
class SolverConfig:
    """ridge: Tikhonov weight relative to the basis' mean squared norm (keeps correlated modes such as
    mouthPucker/mouthFunnel from trading off wildly); exclude_corneas: leave gaze-moved vertices out."""

    ridge: float = 1e-3
    exclude_corneas: bool = True


class BlendshapeSolver:
    """Fits model expression weights (E,) and ARKit-52 weights to meshes on the model topology."""

    def __init__(self, face_model: object | None = None, config: SolverConfig = SolverConfig()) -> None:
        if face_model is None:
            from engine.facemodel import load_face_model
            face_model = load_face_model()
        fm = face_model
        self.config = config
        self.expression_names: list[str] = list(fm.expression_names)  # type: ignore[attr-defined]
        kit = fm.topology.kit_index  # type: ignore[attr-defined]
        self.vertex_count = len(kit)
        keep = np.ones(len(kit), bool)
        self._cornea = {}
        for side in ("left", "right"):
            where = np.isin(kit, fm.cornea(side))  # type: ignore[attr-defined]
            self._cornea[side] = np.flatnonzero(where)
            if config.exclude_corneas:
                keep &= ~where
        self.fit_vertices = np.flatnonzero(keep)
        modes = fm.expression_modes[:, kit][:, self.fit_vertices]  # type: ignore[attr-defined]
        self._basis = np.ascontiguousarray(modes.reshape(len(self.expression_names), -1), np.float32)  # (E, 3V')
        gram = (self._basis.astype(np.float64) @ self._basis.T.astype(np.float64))
        gram += np.eye(len(gram)) * config.ridge * float(np.trace(gram) / len(gram))
        self._chol = cho_factor(gram, lower=True)[0]
        self._r = np.tril(self._chol).T  # upper: gram = RᵀR
        self.to_arkit = IctToArkit(self.expression_names)
        self._kit_gaze_ref = {s: _cornea_direction(fm.neutral[fm.cornea(s)].mean(0) - fm.eye_centre(s))  # type: ignore[attr-defined]
                              for s in ("left", "right")}
        self._kit_offset = {s: fm.neutral[fm.cornea(s)].mean(0) - fm.eye_centre(s)  # type: ignore[attr-defined]
                            for s in ("left", "right")}

    @property
    def expression_dim(self) -> int:
        return len(self.expression_names)

    def expression_weights(self, meshes: np.ndarray, neutrals: np.ndarray) -> np.ndarray:
        """(N, V, 3) meshes and their (N, V, 3) or (V, 3) neutrals (mm) -> (N, E) weights in [0, 1]."""
        meshes = np.asarray(meshes, np.float32)
        single = meshes.ndim == 2
        meshes = meshes[None] if single else meshes
        d = (meshes - np.asarray(neutrals, np.float32))[:, self.fit_vertices].reshape(len(meshes), -1)
        with single_threaded_blas():
            rhs = (d @ self._basis.T).astype(np.float64)  # (N, E) = Aᵀd
        out = np.empty((len(meshes), self.expression_dim), np.float32)
        for k, b in enumerate(rhs):
            y = solve_triangular(self._r, b, trans="T")  # Rᵀy = Aᵀd, so ||Rw - y||² is the fit
            w = solve_triangular(self._r, y)
            if w.min() < 0.0 or w.max() > 1.0:  # a bound is active: NNLS (fast), BVLS if 1 binds too
                w = nnls(self._r, y)[0]
                if w.max() > 1.0:
                    w = lsq_linear(self._r, y, bounds=(0.0, 1.0), method="bvls", tol=1e-10).x
            out[k] = np.clip(w, 0.0, 1.0)
        return out[0] if single else out

    def arkit(self, meshes: np.ndarray, neutrals: np.ndarray) -> np.ndarray:
        """(N, V, 3) or (V, 3) meshes -> (N, 52) or (52,) ARKit weights."""
        return self.to_arkit(self.expression_weights(meshes, neutrals))

    def gaze(self, mesh: np.ndarray, neutral: np.ndarray) -> np.ndarray:
        """(2, 2) yaw/pitch radians of the left and right eye, read from where the corneas point.

        The eyeball centre of a subject is not in the model topology; it is placed behind the
        subject's neutral cornea at the kit's offset (identity changes eye size little)."""
        out = np.zeros((2, 2), np.float32)
        for eye, side in enumerate(("left", "right")):
            idx = self._cornea[side]
            if len(idx) == 0:
                continue
            centre = neutral[idx].mean(0) - self._kit_offset[side]
            yaw, pitch = _cornea_direction(mesh[idx].mean(0) - centre)
            out[eye] = (yaw - self._kit_gaze_ref[side][0], pitch - self._kit_gaze_ref[side][1])
        return out


def _cornea_direction(v: np.ndarray) -> np.ndarray:
    """Yaw (about y) and pitch (about x) of a vector from the eyeball centre, as FaceModel.rotate_eyes
    turns the +z axis: v = (sin yaw cos pitch, -sin pitch, cos yaw cos pitch)."""
    v = np.asarray(v, np.float64)
    return np.array([np.arctan2(v[0], v[2]), np.arctan2(-v[1], np.hypot(v[0], v[2]))])
