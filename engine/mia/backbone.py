"""The backbone B of MIA: HMC images -> identity-free expression embedding e (paper Sec. 3.1, 4).

Two residual networks, one for the two eye cameras stacked as channels and one for the mouth
camera; each is a ResNet head, `blocks` bottleneck blocks and a 64-way fully connected layer after
global average pooling. Every convolution is followed by ReLU and a normalisation.

The paper uses instance norm and a global average pool (`ModelConfig.paper()` keeps that). Our
default is group norm and a fully connected layer over the last (4x4) feature map: with instance
norm every channel's spatial mean is a constant, so after the pool each channel reports only the
shape of its value distribution, and *where* an eyelid or lip edge lies is lost. Measured on the
synthetic world (docs/results.md), that variant fitted its training captures more slowly and read
no expression of a new person; flatten + group norm keeps the layout and still normalises each
image on its own (contrast and LED power differ between captures).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from engine.mia.config import ModelConfig


GROUPS = 8


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The per-sample normalisation after a convolution (see the module docstring)."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.GroupNorm(math.gcd(GROUPS, channels), channels)


def conv_relu_norm(in_ch: int, out_ch: int, kernel: int, stride: int = 1,
                   norm: str = "instance") -> nn.Sequential:
    """One paper layer: convolution, then ReLU, then normalisation."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.ReLU(inplace=True),
        norm_layer(norm, out_ch),
    )


class BottleneckUnit(nn.Module):
    """A 1x1 reduce + 3x3 convolution pair with a shortcut around it (two of a block's convs).

    The 3x3 carries the stride, so the first unit of a block downsamples; a strided 1x1 projection
    with instance norm aligns the shortcut whenever the shape changes.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, norm: str = "instance") -> None:
        super().__init__()
        mid = max(out_ch // 2, 1)
        self.body = nn.Sequential(
            conv_relu_norm(in_ch, mid, 1, norm=norm),
            conv_relu_norm(mid, out_ch, 3, stride=stride, norm=norm),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                norm_layer(norm, out_ch),
            )

    def forward(self, x: Tensor) -> Tensor:
        # The ReLU after the sum matters: every branch ends in instance norm, whose spatial mean is
        # its (constant) bias, so without it the global average pool would see the same value for
        # every image and B would embed all frames to one point.
        return torch.relu(self.body(x) + self.shortcut(x))


def bottleneck_block(in_ch: int, out_ch: int, convs: int, norm: str = "instance") -> nn.Sequential:
    """`convs` convolutions as `convs // 2` units; the first halves the resolution."""
    units = [BottleneckUnit(in_ch, out_ch, stride=2, norm=norm)]
    units += [BottleneckUnit(out_ch, out_ch, norm=norm) for _ in range(convs // 2 - 1)]
    return nn.Sequential(*units)


def block_widths(cfg: ModelConfig) -> list[int]:
    """Output channels of each bottleneck block: doubling from the head width up to the cap."""
    cap = cfg.backbone_width * cfg.backbone_max_width_mult
    return [min(cfg.backbone_width * 2 ** (k + 1), cap) for k in range(cfg.blocks)]


def final_map_size(cfg: ModelConfig) -> int:
    """Side of the last feature map: the head divides by 4, each block by 2 (rounding up)."""
    side = cfg.image_size
    for _ in range(2 + cfg.blocks):
        side = (side + 1) // 2
    return side


class BackboneBranch(nn.Module):
    """One residual network of B: (N, in_ch, H, W) -> (N, embed_dim)."""

    def __init__(self, in_ch: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.head = nn.Sequential(
            conv_relu_norm(in_ch, cfg.backbone_width, 7, stride=2, norm=cfg.norm),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        widths = [cfg.backbone_width, *block_widths(cfg)]
        self.blocks = nn.Sequential(
            *(bottleneck_block(a, b, cfg.convs_per_block, cfg.norm)
              for a, b in zip(widths, widths[1:]))
        )
        self.flatten = cfg.pool == "flatten"
        positions = final_map_size(cfg) ** 2 if self.flatten else 1
        self.fc = nn.Linear(widths[-1] * positions, cfg.embed_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        features = self.blocks(self.head(x))
        return self.fc(features.flatten(1) if self.flatten else features.mean(dim=(2, 3)))


def normalise_images(images: Tensor, eps: float = 1e-5) -> Tensor:
    """Per image and camera zero mean, unit std, so uint8, [0, 1] and pre-normalised input agree."""
    x = images.float()
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True, unbiased=False)
    return (x - mean) / (std + eps)


class Backbone(nn.Module):
    """B: three HMC views -> e = [eyes embedding, mouth embedding], (N, 2 * embed_dim)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.eyes = BackboneBranch(2, cfg)
        self.mouth = BackboneBranch(1, cfg)

    def forward(self, images: Tensor) -> Tensor:
        """`images`: (N, 3, H, W) with cameras (left eye, right eye, mouth), any intensity scale."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                "Backbone expects HMC images shaped (N, 3, H, W) with the cameras (left eye, right "
                f"eye, mouth) as channels, got {tuple(images.shape)}"
            )
        x = normalise_images(images)
        return torch.cat([self.eyes(x[:, :2]), self.mouth(x[:, 2:])], dim=1)
