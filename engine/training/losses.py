"""The training losses of MIA: shape (eq. 2), texture (eq. 5) and their sum (eq. 6).

Normalisations, chosen so the paper's lambda_S = lambda_T = 100 balance the terms:
- shape: meshes come in mm and are compared in cm (mm / 10); per sample the squared Euclidean
  vertex error is averaged over the weighted vertices (sum of W_S^2 (S - S_hat)^2 / sum of W_S^2),
  then averaged over the batch. A 1 mm error everywhere costs 0.01, i.e. 1.0 after lambda_S = 100.
- code: ||z - z_hat||^2 summed over the latent dimensions (as in eq. 5), averaged over the batch;
  avatar codes are O(1) per dimension.
- texture: intensities in [0, 1] (divide 0..255 textures by 255); squared error averaged over the
  weighted texels and channels, averaged over the batch. An error of 0.1 costs 0.01, i.e. 1.0
  after lambda_T = 100.
Masks are multiplied inside the norm as in the paper; for 0/1 visibility masks that is the same
as selecting the visible vertices or texels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from engine.mia.shape import MM_PER_CM

LAMBDA_S = 100.0
LAMBDA_T = 100.0


def _weighted_mean(squared: Tensor, weights: Tensor | None) -> Tensor:
    """Per-sample mean of `squared` (N, ...) under W^2, then the batch mean."""
    if weights is None:
        return squared.flatten(1).mean(dim=1).mean()
    w2 = torch.broadcast_to(weights.to(squared.dtype) ** 2, squared.shape).flatten(1)
    total = (w2 * squared.flatten(1)).sum(dim=1)
    return (total / w2.sum(dim=1).clamp_min(torch.finfo(squared.dtype).eps)).mean()


def shape_loss(pred: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
    """Eq. 2: ||W_S * (S - S_hat)||^2 for meshes (N, V, 3) in mm; `weights` (N, V) or (V,)."""
    if pred.shape != target.shape or pred.dim() != 3 or pred.shape[2] != 3:
        raise ValueError(
            f"shape_loss needs predicted and target meshes both (N, V, 3), got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    squared = (((pred - target) / MM_PER_CM) ** 2).sum(dim=2)
    if weights is not None and weights.shape not in {squared.shape, squared.shape[1:]}:
        raise ValueError(
            f"shape_loss weights must be (N, V) or (V,) = {tuple(squared.shape)}, got "
            f"{tuple(weights.shape)}"
        )
    return _weighted_mean(squared, weights)


def code_loss(z_pred: Tensor, z_true: Tensor) -> Tensor:
    """The first term of eq. 5: ||z - z_hat||^2 over the latent, averaged over the batch."""
    if z_pred.shape != z_true.shape:
        raise ValueError(
            f"code_loss: predicted codes {tuple(z_pred.shape)} vs targets {tuple(z_true.shape)}"
        )
    return ((z_pred - z_true) ** 2).sum(dim=1).mean()


def texture_loss(
    z_pred: Tensor,
    z_true: Tensor,
    tex_pred: Tensor | None = None,
    tex_true: Tensor | None = None,
    w_tex: Tensor | None = None,
    lambda_t: float = LAMBDA_T,
) -> Tensor:
    """Eq. 5: code loss + lambda_T ||W_T * (T - T_hat)||^2.

    Textures (N, ...) in [0, 1] are optional: without a decoder in the loop only the code term is
    trained. `w_tex` broadcasts against the textures (e.g. (N, 1, H, W) for (N, 3, H, W)).
    """
    loss = code_loss(z_pred, z_true)
    if tex_pred is None and tex_true is None:
        return loss
    if tex_pred is None or tex_true is None or tex_pred.shape != tex_true.shape:
        raise ValueError(
            "texture_loss needs both predicted and target textures of the same shape, got "
            f"{None if tex_pred is None else tuple(tex_pred.shape)} and "
            f"{None if tex_true is None else tuple(tex_true.shape)}"
        )
    return loss + lambda_t * _weighted_mean((tex_pred - tex_true) ** 2, w_tex)


@dataclass
class LossTerms:
    """The total of eq. 6 and its parts, for logging (texture is 0 when no codes were given)."""

    total: Tensor
    shape: Tensor
    texture: Tensor


def total_loss(
    mesh_pred: Tensor,
    mesh_true: Tensor,
    shape_weights: Tensor | None = None,
    z_pred: Tensor | None = None,
    z_true: Tensor | None = None,
    tex_pred: Tensor | None = None,
    tex_true: Tensor | None = None,
    w_tex: Tensor | None = None,
    lambda_s: float = LAMBDA_S,
    lambda_t: float = LAMBDA_T,
) -> LossTerms:
    """Eq. 6: L_T + lambda_S L_S, the batch mean standing in for the sum over subjects.

    Samples of subjects without an avatar contribute only the shape term (pass z_pred=None).
    """
    l_shape = shape_loss(mesh_pred, mesh_true, shape_weights)
    l_texture = l_shape.new_zeros(())
    if z_pred is not None and z_true is not None:
        l_texture = texture_loss(z_pred, z_true, tex_pred, tex_true, w_tex, lambda_t)
    elif z_pred is not None or z_true is not None:
        raise ValueError("total_loss needs both z_pred and z_true, or neither")
    return LossTerms(total=l_texture + lambda_s * l_shape, shape=l_shape, texture=l_texture)
