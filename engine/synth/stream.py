"""A live synthetic HMC source: renders frames on demand, for demos without a headset.

It behaves like a camera (frames arrive at ``fps``, forever) but also knows the ground-truth mesh,
so the viewer can show errors live. Performances are drawn in chunks so memory stays flat.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.facemodel import FaceModel, load_face_model
from engine.synth.config import SynthConfig
from engine.synth.generate import CaptureSpec, make_world
from engine.synth.headset import make_slop, session_poses
from engine.synth.identity import make_identity
from engine.synth.performance import make_performance

CHUNK_FRAMES = 600


@dataclass
class SyntheticFrame:
    index: int
    timestamp: float
    images: np.ndarray   # (3, H, W) uint8
    mesh: np.ndarray     # (V, 3) ground truth, model topology, mm
    intent: np.ndarray   # (E,) expression intent


class SyntheticStream:
    """Endless frames of synthetic identity ``identity`` (index into the seeded identity draw)."""

    def __init__(self, identity: int = 0, seed: int = 0, cfg: SynthConfig | None = None,
                 headset: str = "hs00", model: FaceModel | None = None,
                 segments: tuple[str, ...] = ("conversation", "speech", "peaks")):
        self.cfg = cfg or SynthConfig()
        self.model = model or load_face_model()
        self.identity = make_identity(self.model, identity, self.cfg.seed, self.cfg.identity)
        self.spec = CaptureSpec(identity, 0, headset, environment_seed=seed, session_seed=seed,
                                performance_seed=seed, frames=CHUNK_FRAMES, segments=segments)
        self.world, self.headset = make_world(self.model, self.cfg, self.identity, self.spec)
        self.rng = np.random.default_rng([seed, 23])
        self.slop = make_slop(self.rng, self.cfg.session)
        self.index = 0
        self._chunk = 0
        self._load_chunk()

    @property
    def subject_id(self) -> str:
        return self.identity.name

    @property
    def neutral(self) -> np.ndarray:
        return self.identity.neutral(self.model)

    def _load_chunk(self) -> None:
        rng = np.random.default_rng([self.spec.performance_seed, 29, self._chunk])
        self.perf = make_performance(self.model.expression_names, CHUNK_FRAMES, self.cfg.fps, rng,
                                     self.cfg.performance, self.spec.segments)
        self.poses = session_poses(self.slop, CHUNK_FRAMES, self.cfg.fps, rng, self.cfg.session)

    def next(self) -> SyntheticFrame:
        k = self.index % CHUNK_FRAMES
        if k == 0 and self.index > 0:
            self._chunk += 1
            self._load_chunk()
        r = self.world.render(self.perf.intents[k], self.perf.gaze[k], self.poses[k], self.rng)
        frame = SyntheticFrame(self.index, self.index / self.cfg.fps, r.images, r.mesh, self.perf.intents[k])
        self.index += 1
        return frame

    def close(self) -> None:
        self.world.renderer.release()
