"""The 3D shape network G of MIA (paper eq. 1): S_hat = S_N + G(e, S_N).

The backbone factors identity out of e; the neutral mesh S_N puts it back (for instance how open a
subject's eyes are at rest), which is why any subject with a neutral mesh can be driven without
training. Meshes are in millimetres; internally offsets and neutral encodings work in centimetres
so activations stay O(1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from engine.errors import ConfigError
from engine.mia.config import ModelConfig

MM_PER_CM = 10.0


def check_mesh(mesh: Tensor, vertex_count: int, what: str) -> Tensor:
    """Return `mesh` as (N, V, 3); a single (V, 3) mesh becomes a batch of one."""
    if mesh.dim() == 2:
        mesh = mesh.unsqueeze(0)
    if mesh.dim() != 3 or mesh.shape[1:] != (vertex_count, 3):
        raise ValueError(
            f"{what} must be shaped (N, {vertex_count}, 3) or ({vertex_count}, 3) in mm for this "
            f"model's topology, got {tuple(mesh.shape)}"
        )
    return mesh


class NeutralEncoder(nn.Module):
    """Fixed-size encoding of the neutral mesh: one linear map of its offset from the template.

    Subtracting the registered template mean (a buffer, saved with the model) leaves only what
    makes this subject's face differ from the average, in cm.
    """

    def __init__(self, template: Tensor, out_dim: int) -> None:
        super().__init__()
        if template.dim() != 2 or template.shape[1] != 3:
            raise ValueError(f"template must be shaped (V, 3) in mm, got {tuple(template.shape)}")
        self.register_buffer("template", template.detach().float().clone())
        self.fc = nn.Linear(template.numel(), out_dim)

    @property
    def vertex_count(self) -> int:
        return self.template.shape[0]

    def forward(self, neutral: Tensor) -> Tensor:
        neutral = check_mesh(neutral, self.vertex_count, "neutral mesh")
        offset_cm = (neutral - self.template) / MM_PER_CM
        return self.fc(offset_cm.flatten(1))


def domain_groups(a: int, b: int) -> int:
    """Group count for GroupNorm over concat(a features, b features) whose groups never straddle
    the two parts, so image and mesh features are normalised separately (paper Sec. 4)."""
    return (a + b) // math.gcd(a, b)


class ShapeNetwork(nn.Module):
    """G: concat(e, neutral encoding) -> GroupNorm -> 4 FC (LeakyReLU 0.2 on the first three).

    The output layer starts at zero, so an untrained G returns the neutral mesh exactly: training
    starts from "no expression", not from a random face.
    """

    def __init__(self, cfg: ModelConfig, template: Tensor) -> None:
        super().__init__()
        if cfg.vertex_count and cfg.vertex_count != template.shape[0]:
            raise ConfigError(
                f"ModelConfig.vertex_count is {cfg.vertex_count} but the template mesh has "
                f"{template.shape[0]} vertices"
            )
        self.neutral_encoder = NeutralEncoder(template, cfg.neutral_dim)
        width = cfg.embedding_dim + cfg.neutral_dim
        hidden = cfg.shape_hidden
        self.norm = nn.GroupNorm(domain_groups(cfg.embedding_dim, cfg.neutral_dim), width)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, template.numel()),
        )
        nn.init.zeros_(self.output_layer.weight)
        nn.init.zeros_(self.output_layer.bias)

    @property
    def output_layer(self) -> nn.Linear:
        layer = self.mlp[-1]
        assert isinstance(layer, nn.Linear)
        return layer

    @property
    def vertex_count(self) -> int:
        return self.neutral_encoder.vertex_count

    def forward(self, e: Tensor, neutral: Tensor) -> Tensor:
        """`e`: (N, 2*embed_dim); `neutral`: (N, V, 3) or (V, 3) mm -> mesh (N, V, 3) mm."""
        neutral = check_mesh(neutral, self.vertex_count, "neutral mesh")
        if neutral.shape[0] == 1 and e.shape[0] != 1:
            neutral = neutral.expand(e.shape[0], -1, -1)
        if neutral.shape[0] != e.shape[0]:
            raise ValueError(
                f"ShapeNetwork: {e.shape[0]} embeddings but {neutral.shape[0]} neutral meshes"
            )
        features = self.norm(torch.cat([e, self.neutral_encoder(neutral)], dim=1))
        offsets_cm = self.mlp(features).view_as(neutral)
        return neutral + offsets_cm * MM_PER_CM
