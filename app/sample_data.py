"""A tiny model, avatars and synthetic captures for tests, benchmarks and first runs.

The shipped ``resources/default_model.pt`` and demo capture take real training; the studio's own
tests and its fps benchmark must not wait for them, so this builds a self-consistent stand-in in
seconds: an untrained tiny MIA on the face-model topology, a short synthetic dataset in the usual
layout (``captures/``, ``subjects/``), and for the subjects with an adaptation layer a small
untrained avatar decoder, so textured driving and retargeting run end to end.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SampleData:
    """Where the pieces were written."""

    root: Path
    model: Path
    captures: list[Path]
    subjects: list[str]

    @property
    def capture(self) -> Path:
        return self.captures[0]

    def subject_dir(self, name: str) -> Path:
        return self.root / "subjects" / name


def make_sample_data(root: str | os.PathLike, identities: int = 2, frames: int = 20, image_size: int = 48,
                     textured: int = 1, seed: int = 0, model_size: str = "tiny") -> SampleData:
    """Dataset + untrained model under ``root``; the first ``textured`` identities get F_i and an avatar.

    ``model_size``: "tiny" (ModelConfig.tiny(), for tests) or "default" (ModelConfig(), the sizes a
    shipped model has, for timing)."""
    import torch

    from engine.io.checkpoint import save_checkpoint
    from engine.facemodel import load_face_model
    from engine.io.mesh import load_mesh
    from engine.mia.config import ModelConfig
    from engine.mia.model import MIA
    from engine.synth.config import SynthConfig
    from engine.synth.generate import generate_dataset

    root = Path(root)
    cfg = SynthConfig(identities=identities, captures_per_identity=1, frames_per_capture=frames,
                      image_size=image_size, seed=seed)
    captures = generate_dataset(root, cfg)
    fm = load_face_model()
    template = fm.to_topology(fm.neutral).astype(np.float32)
    names = sorted(p.name for p in (root / "subjects").iterdir() if p.is_dir())
    neutrals = {n: load_mesh(root / "subjects" / n / "neutral.obj")[0] for n in names}
    torch.manual_seed(seed)
    config = ModelConfig.tiny() if model_size == "tiny" else ModelConfig()
    model = MIA(config, torch.from_numpy(template))
    with_avatar = names[:textured]
    for name in with_avatar:
        model.add_identity(name, torch.randn(40, model.cfg.latent_dim))
        _write_avatar(root / "subjects" / name, name, neutrals[name], model.cfg.latent_dim, seed)
    path = save_checkpoint(root / ("tiny_model.pt" if model_size == "tiny" else "default_size_model.pt"), model, topology=fm.topology.describe(), template=template,
                           identities={n: {"neutral": neutrals[n]} for n in with_avatar},
                           subjects={n: {"neutral": neutrals[n]} for n in names},
                           provenance={"made_by": "app.sample_data (untrained, for tests)"})
    return SampleData(root, path, list(captures), names)


def _write_avatar(subject_dir: Path, name: str, neutral: np.ndarray, latent_dim: int, seed: int) -> None:
    """An untrained small avatar decoder D_i: enough to exercise the textured path."""
    import torch

    from engine.avatar import AvatarAutoencoder, AvatarConfig, save_avatar
    from engine.io.layout import avatar_path
    from engine.facemodel import load_face_model

    cfg = AvatarConfig(latent_dim=latent_dim, texture_size=64, geometry=False, width=8, max_width=16)
    torch.manual_seed(seed + 1)
    net = AvatarAutoencoder(cfg, len(neutral))
    save_avatar(avatar_path(subject_dir), net, subject_id=name, neutral=neutral,
                mask=np.ones((cfg.texture_size,) * 2, bool), topology=load_face_model().topology.describe())
