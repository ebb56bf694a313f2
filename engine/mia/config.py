"""Model configuration for MIA (paper Sec. 3.1 and 4 "Implementation details").

One dataclass describes every size of the network, so a checkpoint that stores `to_dict()` is
enough to rebuild the model that wrote it. `latent_dim` and `pca_dim` are part of the data
contract (avatar codes on disk are `latent_dim` wide), so the tiny test config keeps them and only
shrinks the network.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

from engine.errors import ConfigError

CHOICES = {"norm": ("group", "instance"), "pool": ("flatten", "mean")}


@dataclass
class ModelConfig:
    """Sizes of the backbone B, the shape network G and the texture branch F.

    `convs_per_block` counts the 1x1 and 3x3 convolutions of one bottleneck block; they come in
    (1x1 reduce, 3x3) pairs wrapped by a shortcut, so it must be even. Channels start at
    `backbone_width`, double at every block and stop growing at
    `backbone_width * backbone_max_width_mult`.

    `norm` is the normalisation after each convolution ("group": 8 groups per layer, "instance":
    the paper's) and `pool` how the last feature map becomes a vector ("flatten": a fully connected
    layer over every position, "mean": the paper's global average pool). The defaults are
    group + flatten because the paper's instance norm + global mean pool keeps of each channel only
    the shape of its value distribution, not where on the image a feature is (a lip corner, an
    eyelid edge); docs/results.md has the measurements. Group norm, unlike batch norm, normalises
    each sample on its own, so a DDP step stays equal to one step on the union batch and adapting
    a new subject with B frozen cannot drift running statistics.
    """

    image_size: int = 64
    backbone_width: int = 32
    blocks: int = 2
    convs_per_block: int = 4
    embed_dim: int = 64
    neutral_dim: int = 64
    shape_hidden: int = 128
    latent_dim: int = 256
    pca_dim: int = 80
    vertex_count: int = 0
    backbone_max_width_mult: int = 8
    norm: str = "group"
    pool: str = "flatten"

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"ModelConfig.{name} must be one of {allowed}, got "
                                  f"{getattr(self, name)!r}")
        for f in fields(self):
            if f.name in CHOICES:
                continue
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"ModelConfig.{f.name} must be an int, got {value!r}")
            if value < 0 or (value == 0 and f.name != "vertex_count"):
                raise ConfigError(f"ModelConfig.{f.name} must be positive, got {value}")
        if self.convs_per_block % 2:
            raise ConfigError(
                "ModelConfig.convs_per_block must be even (the block is made of 1x1/3x3 conv "
                f"pairs with a shortcut each), got {self.convs_per_block}"
            )
        if self.pca_dim > self.latent_dim:
            raise ConfigError(
                f"ModelConfig.pca_dim ({self.pca_dim}) cannot exceed latent_dim ({self.latent_dim})"
            )
        final = math.ceil(self.image_size / 2 ** (2 + self.blocks))
        if final < 2:
            raise ConfigError(
                f"ModelConfig: image_size {self.image_size} with {self.blocks} blocks leaves a "
                f"{final}x{final} feature map; instance norm needs at least 2x2, so use "
                f"image_size > {2 ** (2 + self.blocks)} or fewer blocks"
            )

    @property
    def embedding_dim(self) -> int:
        """Size of e: the eyes and mouth branch embeddings concatenated."""
        return 2 * self.embed_dim

    def with_vertex_count(self, vertex_count: int) -> ModelConfig:
        """A copy for a given mesh topology (the vertex count is only known from the data)."""
        return dataclasses.replace(self, vertex_count=vertex_count)

    @classmethod
    def tiny(cls, **overrides: Any) -> ModelConfig:
        """Smallest useful network, for tests: same code sizes, small images and layers."""
        sizes: dict[str, Any] = dict(
            image_size=32,
            backbone_width=8,
            blocks=2,
            convs_per_block=2,
            embed_dim=16,
            neutral_dim=16,
            shape_hidden=32,
        )
        return cls(**{**sizes, **overrides})

    @classmethod
    def paper(cls, **overrides: Any) -> ModelConfig:
        """The sizes of the paper: 192 px crops, five bottleneck blocks of ten convolutions."""
        sizes: dict[str, Any] = dict(
            image_size=192,
            backbone_width=32,
            blocks=5,
            convs_per_block=10,
            embed_dim=64,
            neutral_dim=64,
            shape_hidden=256,
            norm="instance",
            pool="mean",
        )
        return cls(**{**sizes, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from `to_dict()`; unknown keys are an error so a stale checkpoint is noticed."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"ModelConfig.from_dict: unknown keys {unknown}; "
                f"expected a subset of {sorted(known)}"
            )
        return cls(**data)
