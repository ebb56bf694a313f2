"""The optimiser and learning-rate schedule that training and adaptation share."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from engine.training.config import StepConfig


def adam(params: Sequence[nn.Parameter] | Any, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam, fused where PyTorch has a fused kernel: on CPU it is ~4x faster for G's large
    output layer, which dominates the parameter count."""
    return torch.optim.Adam(params, lr=lr, fused=device.type in ("cpu", "cuda"))


def step_decay(optimizer: torch.optim.Optimizer, cfg: StepConfig) -> torch.optim.lr_scheduler.StepLR:
    """x`cfg.lr_decay` every `cfg.decay_step()` steps (the paper's step decay)."""
    return torch.optim.lr_scheduler.StepLR(optimizer, cfg.decay_step(), cfg.lr_decay)
