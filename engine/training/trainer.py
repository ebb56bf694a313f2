"""The MIA training loop (paper Sec. 3.1 eq. 6 and Sec. 4 "Implementation details").

This file composes the parts of engine.training: the data (dataset.py), the sample order
(sampler.py), the model (engine.mia), the loss routing (routing.py), Adam with step decay
(optim.py), periodic atomic checkpoints that resume to the identical state (run_state.py), the
CSV log (log.py), and DistributedDataParallel when started by ``torchrun`` (distributed.py).

Reproducibility: the batch of step k is a pure function of (seed, k) (`StepBatchSampler`) and each
sample's random draws a function of (seed, sample key) (engine.training.dataset), so a resumed
run, a run with DataLoader workers and a distributed run all see the same data as one
uninterrupted process.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from engine.io.checkpoint import load_checkpoint, save_checkpoint
from engine.errors import CheckpointError, ConfigError
from engine.facemodel import mirror_index_for
from engine.mia.baseline_ps import PersonSpecificEncoder
from engine.mia.model import MIA
from engine.training.config import RUNTIME_FIELDS, TrainConfig, augment_config
from engine.training.dataset import HMCDataset, face_topology, find_captures, probe_topology
from engine.training.distributed import DistEnv
from engine.training.jitter import jitter_config
from engine.training.log import Progress, RunLog
from engine.training.losses import LossTerms
from engine.training.optim import adam, step_decay
from engine.training.routing import TextureDecoder, TrainStep, batch_loss, dataset_avatars
from engine.training.run_state import git_commit, rng_state, set_rng_state, stop_on_signals
from engine.training.sampler import StepBatchSampler, make_loader


def build_model(cfg: TrainConfig, dataset: HMCDataset) -> nn.Module:
    """MIA over the dataset's topology (template = mean training neutral), one F_i per subject
    with codes, fitted P_i / z_bar_i from its training codes; or the PS encoder of one subject."""
    torch.manual_seed(cfg.seed)
    template = torch.from_numpy(np.mean([dataset.neutrals[s] for s in dataset.subjects], axis=0))
    mia = MIA(cfg.model.with_vertex_count(dataset.vertex_count), template)
    if cfg.kind == "ps":
        return PersonSpecificEncoder.matched_to(mia, dataset.subjects[0])
    for subject in dataset.subjects:
        codes = dataset.subject_codes(subject)
        if codes is not None:
            if len(codes) < 2:
                raise ConfigError(f"subject {subject!r} has {len(codes)} frame with codes; fitting "
                                  "its code PCA P_i needs at least 2")
            mia.add_identity(subject, torch.from_numpy(codes))
    return mia


class Trainer:
    """One training run: build (or resume) everything in __init__, then `run()`.

    Exposed as a class so tests and tools can take single steps (`backward`, `train_step`).
    """

    def __init__(self, cfg: TrainConfig, data: str | os.PathLike | Sequence[str | os.PathLike],
                 out_dir: str | os.PathLike | None = None, *, resume: bool = False,
                 texture_decoders: dict[str, TextureDecoder] | None = None,
                 neutrals: dict[str, np.ndarray] | None = None, show_bar: bool = True) -> None:
        out = out_dir if out_dir is not None else cfg.out_dir
        if out is None:
            raise ConfigError("train: no output folder (pass out_dir or set TrainConfig.out_dir)")
        self.out_dir = Path(out)
        self.last_path = self.out_dir / "last.pt"
        self.env = DistEnv.setup(cfg.device)
        try:
            self._build(cfg, data, resume, texture_decoders, neutrals)
        except BaseException:
            self.env.close()
            raise
        self.show_bar = show_bar and self.env.is_main
        self._stop = threading.Event()

    # ----- construction
    def _build(self, cfg: TrainConfig, data: Any, resume: bool,
               texture_decoders: dict[str, TextureDecoder] | None,
               neutrals: dict[str, np.ndarray] | None) -> None:
        ckpt = self._resume_checkpoint() if resume else None
        if ckpt is not None:
            saved = TrainConfig.from_dict(ckpt.train_config)
            cfg = dataclasses.replace(saved, **{k: getattr(cfg, k) for k in RUNTIME_FIELDS})
        init = self._init_checkpoint(cfg) if ckpt is None else None
        if init is not None:
            cfg = dataclasses.replace(cfg, model=init.model_config)
        self.cfg = cfg = cfg.resolved()
        start = ckpt if ckpt is not None else init
        self.dataset = self._dataset(data, start, neutrals)
        if start is not None:
            model = start.build_model().train()
        else:
            model = build_model(cfg, self.dataset)
        if init is not None:
            self._check_init_identities(init)
        self.model = model.to(self.env.device)
        self.template = (start.template if start is not None else
                         np.mean([self.dataset.neutrals[s] for s in self.dataset.subjects], 0))
        self.decoders = self._decoders(texture_decoders)
        self.step_module: nn.Module = TrainStep(self.model)
        if cfg.compile:
            self._compile()
        if self.env.world_size > 1:
            ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            # F_j of subjects absent from a rank's batch get no gradient there
            unused = not isinstance(self.model, MIA) or bool(self.model.identities)
            self.step_module = nn.parallel.DistributedDataParallel(
                self.step_module, device_ids=ids, find_unused_parameters=unused)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = adam(params, cfg.lr, self.env.device)
        self.scheduler = step_decay(self.optimizer, cfg)
        self.step, self.seconds, self.last_lr = 0, 0.0, cfg.lr
        if ckpt is not None:
            self._restore(ckpt.training or {})

    def _resume_checkpoint(self) -> Any:
        if not self.last_path.exists():
            raise CheckpointError(f"{self.last_path}: nothing to resume from; run without resume "
                                  "to start a new training run in this folder")
        ckpt = load_checkpoint(self.last_path)
        if not ckpt.training:
            raise CheckpointError(f"{self.last_path}: has no 'training' resume state")
        return ckpt

    def _init_checkpoint(self, cfg: TrainConfig) -> Any:
        if cfg.init_from is None:
            return None
        init = load_checkpoint(cfg.init_from)
        if init.kind != "mia" or cfg.kind != "mia":
            raise ConfigError(f"init_from {cfg.init_from}: only an MIA run can start from an MIA "
                              f"checkpoint (checkpoint kind {init.kind!r}, run kind {cfg.kind!r})")
        return init

    def _check_init_identities(self, init: Any) -> None:
        """The adaptation layers F_i and P_i come from the start checkpoint; the dataset must have
        codes for exactly those subjects, or their texture term would route nowhere."""
        with_codes = {s for s in self.dataset.subjects if self.dataset.subject_codes(s) is not None}
        if with_codes != set(init.identities):
            raise ConfigError(f"init_from {init.path}: it has adaptation layers for "
                              f"{sorted(init.identities)} but the training data have avatar codes "
                              f"for {sorted(with_codes)}; train on data with the same avatar subjects")

    def _dataset(self, data: Any, ckpt: Any, neutrals: dict | None) -> HMCDataset:
        cfg = self.cfg
        paths = find_captures(data, cfg.subjects, cfg.captures)
        if cfg.kind == "ps":
            paths = self._ps_captures(paths)
        topology = ckpt.topology if ckpt is not None else None
        probe = probe_topology(paths) if topology is None else topology
        faces = face_topology(int(probe["vertex_count"]), probe)
        augment = augment_config(cfg.augment)
        return HMCDataset(paths, cfg.model.image_size, split="train" if cfg.val_fraction else "all",
                          val_fraction=cfg.val_fraction, neutrals=neutrals, topology=topology,
                          faces=faces, augment=augment, jitter=jitter_config(cfg.jitter),
                          mirror=cfg.mirror, mirror_index=mirror_index_for(probe) if cfg.mirror else None,
                          seed=cfg.seed)

    def _ps_captures(self, paths: list[Path]) -> list[Path]:
        from engine.io.capture_schema import read_meta
        subjects = {p: read_meta(p).subject_id for p in paths}
        found = sorted(set(subjects.values()))
        subject = self.cfg.ps_subject or (found[0] if len(found) == 1 else None)
        if subject is None or subject not in found:
            raise ConfigError(f"PS training needs one subject: set ps_subject (--subject) to one "
                              f"of {found}" + (f"; {subject!r} has no captures" if subject else ""))
        self.cfg = dataclasses.replace(self.cfg, ps_subject=subject)
        return [p for p in paths if subjects[p] == subject]

    def _decoders(self, decoders: dict[str, TextureDecoder] | None) -> dict[str, TextureDecoder]:
        if decoders is None and self.cfg.texture_loss:
            decoders = dataset_avatars(self.dataset)
        out = {}
        for name, d in (decoders or {}).items():
            if isinstance(d, nn.Module):
                d = d.to(self.env.device).eval().requires_grad_(False)
            out[name] = d
        return out

    def _compile(self) -> None:
        """Compile in place (Module.compile keeps state_dict keys, so checkpoints are unchanged)."""
        parts = ([self.model.backbone, self.model.shape_network] if isinstance(self.model, MIA)
                 else [self.model])
        for part in parts:
            part.compile()

    def _restore(self, training: dict) -> None:
        try:
            self.optimizer.load_state_dict(training["optimizer"])
            self.scheduler.load_state_dict(training["scheduler"])
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"{self.last_path}: resume state does not fit this model ({err})")
        self.step = int(training["step"])
        self.seconds = float(training.get("seconds", 0.0))
        set_rng_state(training["rng"])

    # ----- one step
    def backward(self, batch: dict) -> LossTerms:
        """Forward, eq. 6, backward: gradients land in the model (averaged over ranks by DDP)."""
        self.optimizer.zero_grad(set_to_none=True)
        terms = batch_loss(self.step_module, self.model, batch, self.cfg, self.env.device,
                           self.decoders)
        terms.total.backward()
        return terms

    def train_step(self, batch: dict) -> LossTerms:
        """One optimiser step; returns the loss terms, detached."""
        terms = self.backward(batch)
        self.last_lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return LossTerms(terms.total.detach(), terms.shape.detach(), terms.texture.detach())

    def loader(self) -> DataLoader:
        sampler = StepBatchSampler(len(self.dataset), self.cfg.batch_size, self.cfg.seed,
                                   self.step, self.cfg.steps, self.env.rank, self.env.world_size)
        return make_loader(self.dataset, sampler, self.cfg.num_workers, self.env.device)

    # ----- outputs
    def save(self, path: Path | None = None) -> Path:
        """Atomic checkpoint with the resume state (rank 0 only; others return the path)."""
        path = path or self.last_path
        if not self.env.is_main:
            return path
        model = self.model
        ds = self.dataset
        identities = {n: {"neutral": ds.neutrals.get(n, self.template)}
                      for n in (model.identities if isinstance(model, MIA) else
                                [model.subject] if ds.subject_codes(model.subject) is not None else [])}
        training = {"step": self.step, "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "rng": rng_state(),
                    "sampler": {"step": self.step, "seed": self.cfg.seed,
                                "world_size": self.env.world_size},
                    "seconds": self.seconds}
        provenance = {"command": sys.argv, "dataset": [str(c.path) for c in ds.captures],
                      "git_commit": git_commit(), "seconds_trained": self.seconds,
                      "steps": self.step, "world_size": self.env.world_size,
                      "saved": time.strftime("%Y-%m-%dT%H:%M:%S")}
        extra = {}
        if self.cfg.kind == "ps":
            codes = ds.subject_codes(model.subject)
            extra = {"ps_args": {"subject": model.subject, "hidden": model.hidden},
                     "mean_code": None if codes is None else np.asarray(codes, np.float32).mean(0)}
        return save_checkpoint(path, model, topology=ds.topology, template=self.template,
                               identities=identities,
                               subjects={s: {"neutral": ds.neutrals[s]} for s in ds.subjects},
                               kind=self.cfg.kind, train_config=self.cfg.to_dict(),
                               provenance=provenance, training=training, extra=extra)

    # ----- the loop
    def run(self, progress: Progress | None = None,
            cancel: Callable[[], bool] | None = None) -> Path:
        """Train to `cfg.steps`; returns out_dir/last.pt. A signal or `cancel()` stops after the
        current step with a checkpoint written (then KeyboardInterrupt for a signal)."""
        cfg, env = self.cfg, self.env
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if env.is_main:
            (self.out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        log = RunLog(self, self.out_dir / "log.csv" if env.is_main else None)
        stopped, last = False, time.perf_counter()
        try:
            with stop_on_signals(self._stop):
                batches = iter(self.loader())
                while self.step < cfg.steps:
                    if env.any(self._stop.is_set() or bool(cancel and cancel())):
                        stopped = True
                        break
                    try:
                        batch = next(batches)
                    except RuntimeError:
                        if not self._stop.is_set():
                            raise
                        stopped = True  # a DataLoader worker died of the same signal
                        break
                    log.add(self.train_step(batch))
                    now = time.perf_counter()
                    self.seconds, last = self.seconds + now - last, now
                    if progress is not None and env.is_main:
                        progress(self.step, cfg.steps, log.metrics)
                    if self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                        self.save()
            path = self.save()
        finally:
            log.close()
        if stopped and self._stop.is_set():
            raise KeyboardInterrupt(f"training stopped at step {self.step}; saved {path}")
        return path

    def close(self) -> None:
        """Free the DDP wrapper (its reducer holds the process group and gloo's pending work)
        while the interpreter is fully alive, then leave the group."""
        if self.env.world_size > 1:
            self.step_module = TrainStep(self.model)
        self.env.close()


def train(cfg: TrainConfig, data: str | os.PathLike | Sequence[str | os.PathLike],
          out_dir: str | os.PathLike | None = None, progress: Progress | None = None,
          cancel: Callable[[], bool] | None = None, *, resume: bool = False,
          texture_decoders: dict[str, TextureDecoder] | None = None,
          neutrals: dict[str, np.ndarray] | None = None, show_bar: bool = True) -> Path:
    """Train MIA (or the PS baseline, cfg.kind == "ps") on a dataset root or capture folders.

    Writes out_dir/last.pt (every cfg.checkpoint_every steps and at the end), log.csv and
    config.json; returns the checkpoint path. `resume` continues out_dir/last.pt to the state an
    uninterrupted run would reach. Under torchrun every rank calls this; only rank 0 writes.
    `neutrals` (subject -> (V, 3) mm) replaces the dataset's subjects/<id>/neutral.obj.
    """
    trainer = Trainer(cfg, data, out_dir, resume=resume, texture_decoders=texture_decoders,
                      neutrals=neutrals, show_bar=show_bar)
    try:
        return trainer.run(progress, cancel)
    finally:
        trainer.close()
