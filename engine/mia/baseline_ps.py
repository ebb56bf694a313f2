"""The person-specific (PS) encoder of Wei et al. [49], the paper's baseline (Sec. 4).

It is trained on one subject's capture and regresses that subject's avatar code z directly from the
three HMC images, with no shared embedding, no neutral-mesh input and no PCA. For a fair
comparison the paper gives it the same number of parameters as MIA; `matched_to` picks its sizes
so. Each camera gets its own convolutional branch (built from the same residual blocks as MIA's
backbone); the concatenated branch features go through one hidden layer, then a linear head to z
and a linear head to the mesh offsets from that same hidden feature.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from engine.errors import ConfigError
from engine.mia.backbone import BackboneBranch, normalise_images
from engine.mia.config import ModelConfig
from engine.mia.model import MIA, MIAOutput, count_parameters
from engine.mia.shape import MM_PER_CM, check_mesh


class PersonSpecificEncoder(nn.Module):
    """PS encoder for `subject`: images (N, 3, H, W) -> its code z and its mesh (MIAOutput)."""

    def __init__(
        self, cfg: ModelConfig, subject: str = "subject", hidden: int | None = None
    ) -> None:
        super().__init__()
        if cfg.vertex_count <= 0:
            raise ConfigError("PersonSpecificEncoder needs ModelConfig.vertex_count set (> 0)")
        self.cfg = cfg
        self.subject = subject
        self.hidden = hidden or cfg.shape_hidden
        self.cameras = nn.ModuleList(BackboneBranch(1, cfg) for _ in range(3))
        self.fc = nn.Sequential(nn.Linear(3 * cfg.embed_dim, self.hidden), nn.LeakyReLU(0.2))
        self.code_head = nn.Linear(self.hidden, cfg.latent_dim)
        self.mesh_head = nn.Linear(self.hidden, cfg.vertex_count * 3)
        nn.init.zeros_(self.mesh_head.weight)
        nn.init.zeros_(self.mesh_head.bias)

    @classmethod
    def matched_to(
        cls, mia: MIA, subject: str = "subject", tolerance: float = 0.1
    ) -> PersonSpecificEncoder:
        """A PS encoder whose size is that of `mia` with one identity (B + G + one F_i).

        The backbone width is the coarse knob (the largest width that still fits with a hidden layer
        as wide as G's), the hidden width the fine one; sizes are searched on the meta device, so
        nothing is allocated until the chosen model is built.
        """
        cfg = mia.cfg
        counts = mia.parameter_count()
        target = counts["backbone"] + counts["shape"] + cfg.embedding_dim * cfg.pca_dim

        def size(width: int, hidden: int) -> int:
            with torch.device("meta"):
                model = cls(dataclasses.replace(cfg, backbone_width=width), subject, hidden)
            return count_parameters(model)

        floor = cfg.shape_hidden
        width = 1
        while size(width + 1, floor) <= target and width < 4096:
            width += 1
        base, per_hidden = size(width, floor), size(width, floor + 1) - size(width, floor)
        hidden = max(1, floor + round((target - base) / per_hidden))
        model = cls(dataclasses.replace(cfg, backbone_width=width), subject, hidden)
        got = count_parameters(model)
        if abs(got - target) > tolerance * target:
            raise ValueError(
                f"PersonSpecificEncoder.matched_to: closest size {got} parameters is not within "
                f"{tolerance:.0%} of MIA's {target}"
            )
        return model

    def forward(
        self, images: Tensor, neutral: Tensor, identity_names: list[str] | None = None
    ) -> MIAOutput:
        """Same call as MIA. The code is None if any sample names a subject other than its own."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"PersonSpecificEncoder expects HMC images (N, 3, H, W), got {tuple(images.shape)}"
            )
        x = normalise_images(images)
        features = torch.cat([branch(x[:, i : i + 1]) for i, branch in enumerate(self.cameras)], 1)
        h = self.fc(features)
        neutral = check_mesh(neutral, self.cfg.vertex_count, "neutral mesh")
        offsets_cm = self.mesh_head(h).view(h.shape[0], -1, 3)
        mesh = neutral + offsets_cm * MM_PER_CM
        own = identity_names is None or all(n == self.subject for n in identity_names)
        return MIAOutput(embedding=h, mesh=mesh, code=self.code_head(h) if own else None)
