"""Which torch device a run uses: one rule for training, adaptation and the studio's inference."""
from __future__ import annotations

import torch

from engine.errors import ConfigError


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """"auto": this process's GPU when torch sees one, else the CPU; "cuda": GPU `local_rank`;
    anything else as torch spells it. Asking for CUDA without it is a ConfigError."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return torch.device(f"cuda:{local_rank}" if name == "cuda" else name)
