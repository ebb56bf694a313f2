"""The whole multi-identity architecture (paper Fig. 4): backbone B, shape network G, texture F.

B and G are shared by all subjects; the texture branch holds one adaptation layer per subject that
has an avatar. A subject without an avatar is still driven: only its neutral mesh is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from engine.mia.backbone import Backbone
from engine.mia.config import ModelConfig
from engine.mia.shape import ShapeNetwork
from engine.mia.texture import AdaptationLayer, TextureBranch


@dataclass
class MIAOutput:
    """What one forward pass predicts for a batch of HMC frames.

    `embedding`: e (N, 2*embed_dim); `mesh`: (N, V, 3) mm; `code`: avatar codes (N, latent_dim),
    or None when the batch's subjects are not given or not all have an adaptation layer.
    """

    embedding: Tensor
    mesh: Tensor
    code: Tensor | None = None


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class MIA(nn.Module):
    """MIA(cfg, template): `template` is the (V, 3) mm mean mesh of the topology in use."""

    def __init__(self, cfg: ModelConfig, template: Tensor) -> None:
        super().__init__()
        if cfg.vertex_count == 0:
            cfg = cfg.with_vertex_count(template.shape[0])
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        self.shape_network = ShapeNetwork(cfg, template)
        self.texture = TextureBranch(cfg)

    @property
    def identities(self) -> list[str]:
        return self.texture.identities

    def add_identity(self, name: str, codes: Tensor | None = None) -> AdaptationLayer:
        """Add a subject with an avatar; see `TextureBranch.add_identity`."""
        device = self.shape_network.neutral_encoder.template.device
        return self.texture.add_identity(name, codes, device=device)

    def forward(
        self, images: Tensor, neutral: Tensor, identity_names: list[str] | None = None
    ) -> MIAOutput:
        """images (N, 3, H, W); neutral (N, V, 3) or (V, 3) mm; one subject name per sample.

        The code is None rather than an error for unknown subjects, so a viewer can drive the mesh
        of anyone; call `self.texture` directly to get the error instead.
        """
        e = self.backbone(images)
        mesh = self.shape_network(e, neutral)
        code = None
        if identity_names is not None and set(identity_names) <= set(self.identities):
            code = self.texture(e, identity_names)
        return MIAOutput(embedding=e, mesh=mesh, code=code)

    def freeze_shared(self, frozen: bool = True) -> None:
        """Stop (or restart) training B and G, for adapting a new subject's F only (Table 3)."""
        for part in (self.backbone, self.shape_network):
            part.requires_grad_(not frozen)

    def parameter_count(self) -> dict[str, int]:
        """Trainable-parameter sizes by part (buffers such as P_i and the template excluded)."""
        counts = {
            "backbone": count_parameters(self.backbone),
            "shape": count_parameters(self.shape_network),
            "texture": count_parameters(self.texture),
        }
        counts["total"] = sum(counts.values())
        return counts
