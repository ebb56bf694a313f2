"""What a training or adaptation run depends on: the config dataclasses, saved in every checkpoint.

`StepConfig` holds the settings both loops share (steps, batch, Adam and its step decay, the texture
weight, augmentation, seed, workers, device) so that `TrainConfig` and
`engine.training.adapt.AdaptConfig` state them once; each adds only what its own loop needs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError
from engine.mia.config import ModelConfig
from engine.training.losses import LAMBDA_S, LAMBDA_T

RUNTIME_FIELDS = ("steps", "num_workers", "checkpoint_every", "log_every", "compile", "device",
                  "out_dir")
PAPER_DECAYS = 10  # the paper decays the rate every 25K of 250K iterations


@dataclass
class StepConfig:
    """The optimisation settings shared by training and adaptation.

    `lr_step` 0 means steps // 10: the paper's schedule (x0.8 every 25K of 250K iterations) scaled
    to the run length (`decay_step`). `augment` holds engine.training.augment.AugmentConfig fields
    ({"enabled": False} turns 3D augmentation off).
    """

    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    lr_decay: float = 0.8
    lr_step: int = 0
    lambda_t: float = LAMBDA_T
    augment: dict = field(default_factory=dict)
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        name = type(self).__name__
        for key in ("steps", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{name}.{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1 or self.lr_step < 0:
            raise ConfigError(f"{name}: need lr > 0, 0 < lr_decay <= 1, lr_step >= 0; got "
                              f"{self.lr}, {self.lr_decay}, {self.lr_step}")

    def decay_step(self) -> int:
        """Steps between learning-rate decays: `lr_step`, or the paper's ten decays per run."""
        return self.lr_step or max(1, self.steps // PAPER_DECAYS)

    @property
    def augment_enabled(self) -> bool:
        return bool(self.augment.get("enabled", True))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainConfig(StepConfig):
    """Everything a training run depends on; saved in every checkpoint it writes.

    `lr_step` is resolved when training starts (`resolved`) so a resumed run keeps it. `jitter`
    holds engine.training.jitter.JitterConfig fields (the per-camera 2-D image draws).
    `subjects` / `captures` filter the dataset; `val_fraction` holds out the tail of each capture.
    `init_from` starts a new run from another run's weights (its model config, template and
    adaptation layers) with a fresh optimiser and schedule: how a model grows onto more data.
    On resume the saved config wins except for RUNTIME_FIELDS, which the caller may change.
    """

    lambda_s: float = LAMBDA_S
    jitter: dict = field(default_factory=dict)
    val_fraction: float = 0.0
    subjects: list[str] | None = None
    captures: list[str] | None = None
    kind: str = "mia"
    ps_subject: str | None = None
    checkpoint_every: int = 1000
    log_every: int = 10
    compile: bool = False
    texture_loss: bool = True   # eq. 5's texture term through each subject's avatar D_i when it has one
    mirror: float = 0.0  # probability of training on a sample's mirror image (HMCDataset); 0: never
    out_dir: str | None = None
    init_from: str | None = None  # MIA checkpoint whose weights start a new run (fine-tuning)
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        if self.kind not in ("mia", "ps"):
            raise ConfigError(f"TrainConfig.kind must be 'mia' or 'ps', got {self.kind!r}")
        super().__post_init__()
        for name in ("checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.mirror <= 1.0:
            raise ConfigError(f"TrainConfig.mirror is a probability in [0, 1], got {self.mirror!r}")

    @classmethod
    def paper(cls, **overrides: Any) -> TrainConfig:
        """The paper's run: 250K iterations of batch 32, x0.8 every 25K, 192 px images."""
        return cls(**{"steps": 250_000, "lr_step": 25_000, "model": ModelConfig.paper(),
                      **overrides})

    def resolved(self) -> TrainConfig:
        return dataclasses.replace(self, lr_step=self.decay_step())

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """From `to_dict()` or a JSON file; unknown keys are an error naming the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"TrainConfig: unknown keys {unknown}; expected some of {sorted(known)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"TrainConfig: {err}") from err


def augment_config(options: dict) -> Any:
    """The AugmentConfig for `options`, or None when augmentation is off.

    Imported lazily: the augmentation layer renders with OpenGL, which shape-only tools never need.
    """
    if not options.get("enabled", True):
        return None
    try:
        from engine.training.augment import AugmentConfig
    except ModuleNotFoundError as err:
        if err.name != "engine.training.augment":
            raise
        raise ConfigError("3D augmentation is on but engine.training.augment is not available; "
                          "turn it off (augment {'enabled': false}, or --no-augment)") from err
    try:
        return AugmentConfig(**options)
    except TypeError as err:
        raise ConfigError(f"augment options {options}: {err}") from err

