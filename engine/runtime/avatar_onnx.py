"""An avatar decoder D_i run in onnxruntime, for InferenceEngine's onnx backend.

Why: the frame worker decodes one texture per textured subject per frame. In torch (one thread)
D_i took 3.6 ms a frame on this 2-core machine, in onnxruntime 1.3 ms for the same graph, and the
studio pays it once for the driven subject and again for every textured retarget subject. The
graph exported is what ``AvatarDecoder.decode`` computes: (z, unit view) -> texture clamped to
[0, 1] and masked to the face. It is written once per avatar file into the export cache (keyed by
the file's hash, written atomically), checked against torch on random codes and views, and loaded
from there afterwards. An avatar that is not a file, will not export or disagrees with torch stays
in torch: ``onnx_avatar`` then returns it unchanged and says why in the log.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from engine.avatar import FRONTAL_VIEW, AvatarDecoder
from engine.errors import ExportError
from engine.io.atomic import atomic_path
from engine.runtime.export import cache_root, file_sha256
from engine.runtime.onnx_io import export_module, max_error, ort_session

LOG = logging.getLogger(__name__)
TOLERANCE = 1e-4  # texture values are in [0, 1]


class DecoderGraph(nn.Module):
    """``AvatarDecoder.masked_textures`` as a module to export: views normalised by the caller."""

    def __init__(self, avatar: AvatarDecoder) -> None:
        super().__init__()
        self.model = avatar.model  # registered, so its weights are the graph's parameters
        self.avatar = avatar

    def forward(self, z: Tensor, view: Tensor) -> Tensor:
        return self.avatar.masked_textures(z, view)


class OnnxAvatar:
    """An AvatarDecoder whose ``decode`` runs in onnxruntime; every other attribute is the torch one's
    (``model`` for gradients, ``encode``, ``uv_mask``, ``path``...)."""

    def __init__(self, avatar: AvatarDecoder, path: Path, threads: int) -> None:
        self.avatar = avatar
        self.onnx_path = path
        self._session = ort_session(path, threads)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["avatar"], name)

    @torch.no_grad()
    def decode(self, z: np.ndarray | Tensor, view: np.ndarray | Tensor = FRONTAL_VIEW) -> np.ndarray:
        """Codes (N, latent) and views (N, 3) or (3,) -> textures (N, S, S) float32, as AvatarDecoder.decode
        (the same checks and view normalisation)."""
        z, views = self.avatar.decode_inputs(z, view)
        feed = {name: np.ascontiguousarray(t.detach().cpu().numpy(), np.float32) for name, t in (("z", z), ("view", views))}
        return self._session.run(["texture"], feed)[0]


def _error_against_torch(avatar: AvatarDecoder, graph: DecoderGraph, path: Path) -> float:
    """Max abs difference of the ONNX file from torch on random codes and views, 1 and 3 at a time."""
    rng = np.random.default_rng(0)
    session = ort_session(path, threads=1)
    error = 0.0
    for n in (1, 3):
        z = rng.normal(0, 1, (n, avatar.latent_dim)).astype(np.float32)
        view = rng.normal(0, 0.3, (n, 3)).astype(np.float32) + FRONTAL_VIEW
        view /= np.linalg.norm(view, axis=1, keepdims=True)
        with torch.inference_mode():
            want = graph(torch.from_numpy(z), torch.from_numpy(view))
        error = max(error, max_error(want, session.run(["texture"], {"z": z, "view": view})[0]))
    return error


def export_avatar(avatar: AvatarDecoder, path: Path) -> float:
    """Write D_i's ONNX graph to ``path`` (atomically); returns the max abs error against torch,
    raising ExportError above TOLERANCE."""
    graph = DecoderGraph(avatar).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        export_module(graph, (torch.zeros(1, avatar.latent_dim), torch.from_numpy(FRONTAL_VIEW)[None]), tmp,
                ["z", "view"], ["texture"], {"z": {0: "frames"}, "view": {0: "frames"}, "texture": {0: "frames"}})
        error = _error_against_torch(avatar, graph, tmp)
        if error > TOLERANCE:
            raise ExportError(f"{avatar.path}: the ONNX avatar decoder differs from torch by {error:.1e} "
                              f"(tolerance {TOLERANCE:.0e})")
    return error


def onnx_avatar(avatar: Any, threads: int) -> Any:
    """``avatar`` (an AvatarDecoder loaded from a file) with ``decode`` in onnxruntime, exporting it
    into the cache the first time; anything else, or a decoder that cannot be exported, unchanged."""
    if not isinstance(avatar, AvatarDecoder) or avatar.path is None:
        return avatar
    try:
        path = cache_root() / "onnx-avatars" / f"{file_sha256(avatar.path)[:16]}.onnx"
        if not path.is_file():
            export_avatar(avatar, path)
        return OnnxAvatar(avatar, path, threads)
    except Exception as err:  # a decoder that will not export still decodes in torch
        LOG.warning("%s: avatar decoder stays in torch (%s)", avatar.path, err)
        return avatar
