"""Loss routing: which sample of a mixed batch feeds which term of eq. 6, through whose F_i and D_i.

Loss per sample i of subject s (the batch mean stands in for eq. 6's sum over subjects):
    lambda_S * L_S(i) + L_T(i),  L_T(i) = ||z - z_hat||^2 + lambda_T ||W_T (T - T_hat)||^2
where L_T is 0 for subjects without avatar codes (they train B and G only, the paper's untrained
subjects) and the texture term is present only when a decoder D_s is given (`texture_decoders`).
Normalising every term by the local batch size keeps a DDP step (gradients averaged over ranks)
equal to one step on the union of the ranks' batches. The equations themselves are in
engine.training.losses.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from engine.mia.model import MIA
from engine.training.config import TrainConfig
from engine.io.layout import avatar_folder, subjects_dir
from engine.training.dataset import HMCDataset
from engine.training.losses import LossTerms, shape_loss, texture_loss

TextureDecoder = Callable[[Tensor, Tensor], Tensor]
"""D_i(z (N, 256), view (N, 3)) -> texture (N, S, S) or (N, C, S, S) in [0, 1]. A decoder may carry
a `texel_weights` tensor broadcastable to its output: the W_T mask of eq. 5."""


class TrainStep(nn.Module):
    """The model plus the routing of a mixed batch, as one module so DDP sees a single forward.

    Returns meshes for every sample and codes z_hat for the rows that have targets (`rows`).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor, neutral: Tensor, names: list[str],
                rows: Tensor) -> tuple[Tensor, Tensor | None]:
        if isinstance(self.model, MIA):
            e = self.model.backbone(images)
            mesh = self.model.shape_network(e, neutral)
            if rows.numel() == 0:
                return mesh, None
            return mesh, self.model.texture(e[rows], [names[i] for i in rows.tolist()])
        out = self.model(images, neutral, names)
        return out.mesh, None if out.code is None or rows.numel() == 0 else out.code[rows]


def code_rows(model: nn.Module, batch: dict) -> Tensor:
    """Rows with an avatar-code target whose subject the model has a code branch for."""
    known = set(model.identities) if isinstance(model, MIA) else {model.subject}
    ok = [bool(h) and s in known for h, s in zip(batch["has_code"].tolist(), batch["subject"])]
    return torch.tensor([i for i, x in enumerate(ok) if x], dtype=torch.long)


class AvatarTexture(nn.Module):
    """D_i(z, v) of a subject's avatar as a frozen module, with its UV validity mask as W_T."""

    def __init__(self, avatar: Any) -> None:
        super().__init__()
        self.avatar = avatar.model
        self.register_buffer("texel_weights", torch.from_numpy(np.asarray(avatar.uv_mask, np.float32)))

    def forward(self, z: Tensor, view: Tensor) -> Tensor:
        return self.avatar.decode_texture(z, view)


def dataset_avatars(dataset: HMCDataset) -> dict[str, AvatarTexture]:
    """Texture decoders of the dataset's coded subjects that have ``subjects/<id>/avatar/avatar.pt``."""
    from engine.avatar import load_avatar
    out = {}
    for c in dataset.captures:
        if c.subject in out or dataset.subject_codes(c.subject) is None:
            continue
        folder = subjects_dir(c.path) / c.subject
        if avatar_folder(folder) is not None:
            out[c.subject] = AvatarTexture(load_avatar(folder))
    return out


def texture_term(z_pred: Tensor, z_true: Tensor, names: list[str], views: Tensor, batch_size: int,
                 decoders: dict[str, TextureDecoder] | None, lambda_t: float) -> Tensor:
    """Sum over subjects of eq. 5 (its per-subject mean times the subject's share of the batch).

    The target texture is the decoder applied to the ground-truth code (the paper's T^v_i).
    """
    total = z_pred.new_zeros(())
    for subject in dict.fromkeys(names):
        sel = torch.tensor([i for i, n in enumerate(names) if n == subject], device=z_pred.device)
        zp, zt = z_pred[sel], z_true[sel]
        tex_pred = tex_true = weights = None
        decoder = (decoders or {}).get(subject)
        if decoder is not None:
            tex_pred = decoder(zp, views[sel])
            with torch.no_grad():
                tex_true = decoder(zt, views[sel])
            weights = getattr(decoder, "texel_weights", None)
        total = total + texture_loss(zp, zt, tex_pred, tex_true, weights, lambda_t) * (
            len(sel) / batch_size)
    return total


def batch_loss(step_module: nn.Module, model: nn.Module, batch: dict, cfg: TrainConfig,
               device: torch.device, decoders: dict[str, TextureDecoder] | None = None) -> LossTerms:
    """Eq. 6 on one batch: lambda_S L_S (every sample) + L_T (samples with codes)."""
    def to(key: str) -> Tensor:
        return batch[key].to(device, non_blocking=True)

    rows = code_rows(model, batch)
    mesh, z = step_module(to("images"), to("neutral"), batch["subject"], rows.to(device))
    l_shape = shape_loss(mesh, to("mesh"), to("shape_weights"))
    l_tex = l_shape.new_zeros(())
    if z is not None:
        r = rows.to(device)
        names = [batch["subject"][i] for i in rows.tolist()]
        l_tex = texture_term(z, to("code")[r], names, to("view")[r], mesh.shape[0], decoders,
                             cfg.lambda_t)
    return LossTerms(total=l_tex + cfg.lambda_s * l_shape, shape=l_shape, texture=l_tex)
