"""Adding a new subject to a trained MIA (the paper's Table 3): train only its F_new.

The shared backbone B and shape network G stay frozen, as do the other subjects' adaptation layers;
the new subject gets the PCA P_new and mean z_bar_new of its own avatar codes and a fresh F_new
trained on the code loss (plus the texture loss when its decoder is given). Because e = B(images)
does not change, it is computed without gradients, which makes adaptation a small fraction of the
cost of training. The result is a new checkpoint; the shared weights in it are checked to be
bit-identical to the input's before it is written.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from engine.io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from engine.device import pick_device
from engine.errors import CaptureError, CheckpointError, ConfigError
from engine.mia.model import MIA
from engine.training.config import StepConfig, augment_config
from engine.training.dataset import HMCDataset, face_topology, find_captures
from engine.training.log import Progress
from engine.training.optim import adam, step_decay
from engine.training.routing import TextureDecoder, texture_term
from engine.training.sampler import StepBatchSampler, make_loader


@dataclass
class AdaptConfig(StepConfig):
    """Adaptation run settings: those of `StepConfig` (shared with TrainConfig), nothing more."""


def shared_state(model: MIA, skip: str) -> dict[str, torch.Tensor]:
    """Copies of every tensor adaptation must not change: B, G and the other subjects' F_j."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if not (k.startswith(f"texture.adapters.{skip}.")
                    or k.startswith(f"texture.code_spaces.{skip}."))}


def check_unchanged(model: MIA, before: dict[str, torch.Tensor], where: str) -> None:
    """Raise unless every shared tensor is bit-identical to `before` (not an `assert`: it must
    hold under python -O too)."""
    after = model.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k].to(v.device))]
    if changed:
        raise AssertionError(f"{where}: adaptation changed shared weights {changed[:5]} "
                             f"({len(changed)} tensors); B, G and other F_j must stay frozen")


def load_subject_data(ckpt: Checkpoint, data: str | os.PathLike | Sequence[str | os.PathLike],
                      subject: str, augment: Any, seed: int,
                      neutral: Any = None) -> HMCDataset:
    if neutral is not None:
        ckpt.check_neutral(np.asarray(neutral, np.float32), f"neutral mesh of subject {subject!r}")
    paths = find_captures(data, subjects=[subject])
    faces = face_topology(int(ckpt.topology["vertex_count"]), ckpt.topology)
    dataset = HMCDataset(paths, ckpt.model_config.image_size, topology=ckpt.topology, faces=faces,
                         neutrals=None if neutral is None else {subject: neutral},
                         augment=augment, seed=seed)
    ckpt.check_neutral(dataset.neutrals[subject], f"neutral mesh of subject {subject!r}")
    return dataset


def adapt(checkpoint: str | os.PathLike, data: str | os.PathLike | Sequence[str | os.PathLike],
          subject: str, out: str | os.PathLike, cfg: AdaptConfig | None = None, *,
          neutral: Any = None, texture_decoder: TextureDecoder | None = None,
          progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
          show_bar: bool = True) -> Path:
    """Add `subject` (its captures in `data`, which need codes.npy) to the MIA in `checkpoint`,
    training only F_new for cfg.steps; writes and returns the new checkpoint `out`.

    `neutral` overrides the dataset's subjects/<id>/neutral.obj. Cancelling raises
    KeyboardInterrupt and writes nothing (a half-adapted F_new is not a usable model).
    """
    cfg = cfg or AdaptConfig()
    ckpt = load_checkpoint(checkpoint)
    if ckpt.kind != "mia":
        raise CheckpointError(f"{ckpt.path}: is a {ckpt.kind!r} checkpoint; only MIA can adapt")
    if subject in ckpt.identities:
        raise ConfigError(f"{ckpt.path}: already has an adaptation layer for {subject!r}; "
                          f"its identities are {list(ckpt.identities)}")
    dataset = load_subject_data(ckpt, data, subject, augment_config(cfg.augment), cfg.seed, neutral)
    codes = dataset.subject_codes(subject)
    if codes is None or len(codes) < 2:
        raise CaptureError(f"subject {subject!r}: its captures {[c.path.name for c in dataset.captures]} "
                           "have no codes.npy; adapting F_new needs the avatar codes")
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = ckpt.build_model()
    assert isinstance(model, MIA)
    model.add_identity(subject, torch.from_numpy(codes))
    model.to(device).requires_grad_(False)
    model.freeze_shared()
    adapter = model.texture.adapters[subject]
    adapter.requires_grad_(True)
    before = shared_state(model, subject)
    decoders = {subject: _prepared(texture_decoder, device)} if texture_decoder else None
    started = time.perf_counter()
    _fit(model, adapter, dataset, subject, cfg, device, decoders, progress, cancel, show_bar)
    check_unchanged(model, before, str(ckpt.path))
    return save_checkpoint(
        out, model, topology=ckpt.topology, template=ckpt.template,
        identities={**ckpt.identities, subject: {"neutral": dataset.neutrals[subject]}},
        subjects={**ckpt.subjects, subject: {"neutral": dataset.neutrals[subject]}},
        kind="mia", train_config=ckpt.train_config,
        provenance={**ckpt.provenance, "adaptations": [
            *ckpt.provenance.get("adaptations", []),
            {"subject": subject, "from": str(ckpt.path), "config": cfg.to_dict(),
             "captures": [str(c.path) for c in dataset.captures],
             "seconds": time.perf_counter() - started}]},
        extra=ckpt.extra)


def _prepared(decoder: TextureDecoder, device: torch.device) -> TextureDecoder:
    if isinstance(decoder, nn.Module):
        decoder = decoder.to(device).eval().requires_grad_(False)
    return decoder


def _fit(model: MIA, adapter: nn.Module, dataset: HMCDataset, subject: str, cfg: AdaptConfig,
         device: torch.device, decoders: dict | None, progress: Progress | None,
         cancel: Callable[[], bool] | None, show_bar: bool) -> None:
    """Adam on F_new alone; the loss is eq. 5 on frames that have codes."""
    optimizer = adam(adapter.parameters(), cfg.lr, device)
    scheduler = step_decay(optimizer, cfg)
    sampler = StepBatchSampler(len(dataset), cfg.batch_size, cfg.seed, 0, cfg.steps)
    bar = None
    if show_bar:
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, unit="step", desc=f"adapt {subject}", dynamic_ncols=True)
    try:
        for step, batch in enumerate(make_loader(dataset, sampler, cfg.num_workers, device), 1):
            if cancel is not None and cancel():
                raise KeyboardInterrupt(f"adaptation of {subject!r} cancelled at step {step - 1}")
            rows = batch["has_code"].nonzero().flatten()
            if rows.numel() == 0:
                continue
            with torch.no_grad():
                e = model.backbone(batch["images"][rows].to(device))
            z = model.texture(e, [subject] * len(rows))
            loss = texture_term(z, batch["code"][rows].to(device), [subject] * len(rows),
                                batch["view"][rows].to(device), len(rows), decoders, cfg.lambda_t)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if bar is not None:
                bar.set_postfix(loss=f"{loss.item():.4g}", refresh=False)
                bar.update(1)
            if progress is not None:
                progress(step, cfg.steps, {"loss": float(loss.item())})
    finally:
        if bar is not None:
            bar.close()
