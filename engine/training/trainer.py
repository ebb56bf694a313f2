"""The MIA training loop (paper Sec. 3.1 eq. 6 and Sec. 4 "Implementation details").

One file composes the data (engine.data), the model (engine.mia) and the losses: Adam, step
decay of the learning rate, periodic atomic checkpoints that resume to the identical state, a
CSV log, and DistributedDataParallel when started by ``torchrun``.

Loss per sample i of subject s (the batch mean stands in for eq. 6's sum over subjects):
    lambda_S * L_S(i) + L_T(i),  L_T(i) = ||z - z_hat||^2 + lambda_T ||W_T (T - T_hat)||^2
where L_T is 0 for subjects without avatar codes (they train B and G only, the paper's untrained
subjects) and the texture term is present only when a decoder D_s is given (`texture_decoders`).
Normalising every term by the local batch size keeps a DDP step (gradients averaged over ranks)
equal to one step on the union of the ranks' batches.

Reproducibility: the batch of step k is a pure function of (seed, k) (`StepBatchSampler`) and each
sample's random draws a function of (seed, sample key) (engine.data), so a resumed run, a run
with DataLoader workers and a distributed run all see the same data as one uninterrupted process.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler

from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.training.dataset import HMCDataset, find_captures, neutral_path, probe_topology
from engine.errors import CheckpointError, ConfigError
from engine.mia.baseline_ps import PersonSpecificEncoder
from engine.mia.config import ModelConfig
from engine.training.jitter import jitter_config
from engine.training.losses import LAMBDA_S, LAMBDA_T, LossTerms, shape_loss, texture_loss
from engine.mia.model import MIA

TextureDecoder = Callable[[Tensor, Tensor], Tensor]
"""D_i(z (N, 256), view (N, 3)) -> texture (N, S, S) or (N, C, S, S) in [0, 1]. A decoder may carry
a `texel_weights` tensor broadcastable to its output: the W_T mask of eq. 5."""
Progress = Callable[[int, int, dict], None]
LOG_FIELDS = ("step", "loss", "shape_loss", "texture_loss", "lr", "samples_per_s")
RUNTIME_FIELDS = ("steps", "num_workers", "checkpoint_every", "log_every", "compile", "device",
                  "out_dir")
PAPER_DECAYS = 10  # the paper decays the rate every 25K of 250K iterations


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved in every checkpoint it writes.

    `lr_step` 0 means steps // 10: the paper's schedule (x0.8 every 25K of 250K iterations) scaled
    to the run length; it is resolved when training starts so a resumed run keeps it. `augment`
    holds engine.training.augment.AugmentConfig fields ({"enabled": False} turns 3D augmentation off),
    `jitter` engine.training.jitter.JitterConfig fields (the per-camera 2-D image draws).
    `subjects` / `captures` filter the dataset; `val_fraction` holds out the tail of each capture.
    `init_from` starts a new run from another run's weights (its model config, template and
    adaptation layers) with a fresh optimiser and schedule: how a model grows onto more data.
    On resume the saved config wins except for RUNTIME_FIELDS, which the caller may change.
    """

    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    lr_decay: float = 0.8
    lr_step: int = 0
    lambda_s: float = LAMBDA_S
    lambda_t: float = LAMBDA_T
    augment: dict = field(default_factory=dict)
    jitter: dict = field(default_factory=dict)
    val_fraction: float = 0.0
    subjects: list[str] | None = None
    captures: list[str] | None = None
    kind: str = "mia"
    ps_subject: str | None = None
    seed: int = 0
    num_workers: int = 0
    checkpoint_every: int = 1000
    log_every: int = 10
    compile: bool = False
    texture_loss: bool = True   # eq. 5's texture term through each subject's avatar D_i when it has one
    device: str = "auto"
    out_dir: str | None = None
    init_from: str | None = None  # MIA checkpoint whose weights start a new run (fine-tuning)
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        if self.kind not in ("mia", "ps"):
            raise ConfigError(f"TrainConfig.kind must be 'mia' or 'ps', got {self.kind!r}")
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1 or self.lr_step < 0:
            raise ConfigError(f"TrainConfig: need lr > 0, 0 < lr_decay <= 1, lr_step >= 0; got "
                              f"{self.lr}, {self.lr_decay}, {self.lr_step}")

    @classmethod
    def paper(cls, **overrides: Any) -> TrainConfig:
        """The paper's run: 250K iterations of batch 32, x0.8 every 25K, 192 px images."""
        return cls(**{"steps": 250_000, "lr_step": 25_000, "model": ModelConfig.paper(),
                      **overrides})

    def resolved(self) -> TrainConfig:
        return dataclasses.replace(self, lr_step=self.lr_step or max(1, self.steps // PAPER_DECAYS))

    @property
    def augment_enabled(self) -> bool:
        return bool(self.augment.get("enabled", True))

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


# --------------------------------------------------------------------------- data order


class StepBatchSampler(Sampler[list[int]]):
    """Batches of sample keys for steps start..stop-1; the batch of a step depends only on it.

    The global sample stream is a fresh permutation of the dataset per epoch (seeded by
    (seed, epoch)); global step k takes positions [k*B*W, (k+1)*B*W) of it and rank r the r-th
    slice of B. A key is `epoch * n + index`, so a sample's random draws differ between epochs.
    This replaces DistributedSampler: it shards the same way but also resumes mid-epoch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if n < 1:
            raise ConfigError("StepBatchSampler: the dataset is empty")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.stop, self.rank, self.world_size = start, stop, rank, world_size
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            self._perms[epoch] = np.random.default_rng([self.seed, 5, epoch]).permutation(self.n)
        return self._perms[epoch]

    def keys(self, step: int) -> list[int]:
        first = (step * self.world_size + self.rank) * self.batch_size
        out = []
        for pos in range(first, first + self.batch_size):
            epoch, i = divmod(pos, self.n)
            out.append(epoch * self.n + int(self._perm(epoch)[i]))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield self.keys(step)


def make_loader(dataset: HMCDataset, sampler: StepBatchSampler, num_workers: int,
                device: torch.device) -> DataLoader:
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      pin_memory=device.type == "cuda")


# --------------------------------------------------------------------------- devices and ranks


@dataclass
class DistEnv:
    """Where this process runs: its rank among WORLD_SIZE processes (torchrun's env) and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device: str = "auto") -> DistEnv:
        """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK; join the process group (nccl on GPU)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
        dev = pick_device(device, local)
        owns = False
        if world > 1 and not dist.is_initialized():
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
            owns = True
        return cls(rank, world, local, dev, owns)

    def all_mean(self, values: Tensor) -> Tensor:
        if self.world_size > 1:
            dist.all_reduce(values)
            values = values / self.world_size
        return values

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (so all ranks stop at the same step)."""
        if self.world_size == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def close(self) -> None:
        """Leave the process group in step: every rank passes a barrier (no collective of a
        peer is still in flight) before any rank destroys its end of the connections."""
        if self.owns_group and dist.is_initialized():
            try:
                dist.barrier()
            finally:
                dist.destroy_process_group()


def adam(params: Sequence[nn.Parameter] | Any, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam, fused where PyTorch has a fused kernel: on CPU it is ~4x faster for G's large
    output layer, which dominates the parameter count."""
    return torch.optim.Adam(params, lr=lr, fused=device.type in ("cpu", "cuda"))


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return torch.device(f"cuda:{local_rank}" if name == "cuda" else name)


# --------------------------------------------------------------------------- model and loss


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


class TrainStep(nn.Module):
    """The model plus the routing of a mixed batch, as one module so DDP sees a single forward.

    Returns meshes for every sample and codes z_hat for the rows that have targets (`rows`).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor, neutral: Tensor, names: list[str],
                rows: Tensor) -> tuple[Tensor, Tensor | None]:
        if isinstance(self.model, MIA):
            e = self.model.backbone(images)
            mesh = self.model.shape_network(e, neutral)
            if rows.numel() == 0:
                return mesh, None
            return mesh, self.model.texture(e[rows], [names[i] for i in rows.tolist()])
        out = self.model(images, neutral, names)
        return out.mesh, None if out.code is None or rows.numel() == 0 else out.code[rows]


def code_rows(model: nn.Module, batch: dict) -> Tensor:
    """Rows with an avatar-code target whose subject the model has a code branch for."""
    known = set(model.identities) if isinstance(model, MIA) else {model.subject}
    ok = [bool(h) and s in known for h, s in zip(batch["has_code"].tolist(), batch["subject"])]
    return torch.tensor([i for i, x in enumerate(ok) if x], dtype=torch.long)


class AvatarTexture(nn.Module):
    """D_i(z, v) of a subject's avatar as a frozen module, with its UV validity mask as W_T."""

    def __init__(self, avatar: Any) -> None:
        super().__init__()
        self.avatar = avatar.model
        self.register_buffer("texel_weights", torch.from_numpy(np.asarray(avatar.uv_mask, np.float32)))

    def forward(self, z: Tensor, view: Tensor) -> Tensor:
        return self.avatar.decode_texture(z, view)


def dataset_avatars(dataset: HMCDataset) -> dict[str, AvatarTexture]:
    """Texture decoders of the dataset's coded subjects that have ``subjects/<id>/avatar/avatar.pt``."""
    from engine.avatar import avatar_path, load_avatar
    out = {}
    for c in dataset.captures:
        if c.subject in out or dataset.subject_codes(c.subject) is None:
            continue
        folder = neutral_path(c.path, c.subject).parent
        if avatar_path(folder).exists():
            out[c.subject] = AvatarTexture(load_avatar(folder))
    return out


def texture_term(z_pred: Tensor, z_true: Tensor, names: list[str], views: Tensor, batch_size: int,
                 decoders: dict[str, TextureDecoder] | None, lambda_t: float) -> Tensor:
    """Sum over subjects of eq. 5 (its per-subject mean times the subject's share of the batch).

    The target texture is the decoder applied to the ground-truth code (the paper's T^v_i).
    """
    total = z_pred.new_zeros(())
    for subject in dict.fromkeys(names):
        sel = torch.tensor([i for i, n in enumerate(names) if n == subject], device=z_pred.device)
        zp, zt = z_pred[sel], z_true[sel]
        tex_pred = tex_true = weights = None
        decoder = (decoders or {}).get(subject)
        if decoder is not None:
            tex_pred = decoder(zp, views[sel])
            with torch.no_grad():
                tex_true = decoder(zt, views[sel])
            weights = getattr(decoder, "texel_weights", None)
        total = total + texture_loss(zp, zt, tex_pred, tex_true, weights, lambda_t) * (
            len(sel) / batch_size)
    return total


def batch_loss(step_module: nn.Module, model: nn.Module, batch: dict, cfg: TrainConfig,
               device: torch.device, decoders: dict[str, TextureDecoder] | None = None) -> LossTerms:
    """Eq. 6 on one batch: lambda_S L_S (every sample) + L_T (samples with codes)."""
    def to(key: str) -> Tensor:
        return batch[key].to(device, non_blocking=True)

    rows = code_rows(model, batch)
    mesh, z = step_module(to("images"), to("neutral"), batch["subject"], rows.to(device))
    l_shape = shape_loss(mesh, to("mesh"), to("shape_weights"))
    l_tex = l_shape.new_zeros(())
    if z is not None:
        r = rows.to(device)
        names = [batch["subject"][i] for i in rows.tolist()]
        l_tex = texture_term(z, to("code")[r], names, to("view")[r], mesh.shape[0], decoders,
                             cfg.lambda_t)
    return LossTerms(total=l_tex + cfg.lambda_s * l_shape, shape=l_shape, texture=l_tex)


# --------------------------------------------------------------------------- run state


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of rng_state(), also after a weights-only load turned numpy arrays into tensors
    and tuples into lists."""
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys).astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def face_topology(vertex_count: int, topology: dict) -> np.ndarray | None:
    """Triangles of the face model's topology when the data uses it (for W_S checks, re-rendering)."""
    from engine.facemodel import load_face_model
    topo = load_face_model().topology
    if topo.vertex_count == vertex_count and topology.get("hash", topo.hash) in (topo.hash, ""):
        return topo.faces
    return None


@contextlib.contextmanager
def stop_on_signals(flag: threading.Event) -> Iterator[None]:
    """SIGINT / SIGTERM set `flag` so the loop stops after the current step and saves; a second
    SIGINT interrupts at once. Only the main thread can own signal handlers (a GUI worker
    thread uses `cancel` instead)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class RunLog:
    """log.csv (one row per `log_every` steps, flushed) and the progress bar; rank 0 writes.

    Losses are averaged over the window and over ranks; samples/s counts all ranks' samples.
    On resume the file is cut back to the checkpoint's step: later rows are about to be redone.
    """

    def __init__(self, trainer: Trainer, path: Path | None) -> None:
        self.trainer = trainer
        self.acc = torch.zeros(3, device=trainer.env.device)
        self.count, self.start = 0, time.perf_counter()
        self.metrics: dict[str, float] = {}
        self.file = self.bar = self.writer = None
        if path is not None:
            rows: list[list[str]] = []
            if trainer.step > 0 and path.exists():
                with open(path, newline="") as f:
                    rows = [r for r in list(csv.reader(f))[1:] if r and int(r[0]) <= trainer.step]
            self.file = open(path, "w", newline="")
            self.writer = csv.writer(self.file, lineterminator="\n")
            self.writer.writerows([list(LOG_FIELDS), *rows])
            self.file.flush()
            if trainer.show_bar:
                from tqdm import tqdm
                self.bar = tqdm(total=trainer.cfg.steps, initial=trainer.step, unit="step",
                                desc="train", dynamic_ncols=True,
                                mininterval=0.1 if sys.stderr.isatty() else 30.0)

    def add(self, terms: LossTerms) -> None:
        self.acc += torch.stack([terms.total, terms.shape, terms.texture])
        self.count += 1
        step, cfg = self.trainer.step, self.trainer.cfg
        if step % cfg.log_every == 0 or step == cfg.steps:
            self._write(step)
        if self.bar is not None:
            self.bar.update(1)

    def _write(self, step: int) -> None:
        now = time.perf_counter()
        env, cfg = self.trainer.env, self.trainer.cfg
        mean = env.all_mean(self.acc / self.count).tolist()
        self.metrics = {"loss": mean[0], "shape_loss": mean[1], "texture_loss": mean[2],
                        "lr": self.trainer.last_lr,
                        "samples_per_s": self.count * cfg.batch_size * env.world_size
                        / max(now - self.start, 1e-9)}
        if self.writer is not None:
            self.writer.writerow([step, *(f"{self.metrics[k]:.6g}" for k in LOG_FIELDS[1:])])
            self.file.flush()
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{mean[0]:.4g}", refresh=False)
        self.acc.zero_()
        self.count, self.start = 0, now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            self.file.close()


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
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, cfg.lr_step, cfg.lr_decay)
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
                          seed=cfg.seed)

    def _ps_captures(self, paths: list[Path]) -> list[Path]:
        from engine.capture import read_meta
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
