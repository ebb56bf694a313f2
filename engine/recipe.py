"""The shipped-model recipe: data, avatars, MIA training and held-out evaluation, resumable.

`mia model` (and `make model`) runs these stages in order; each one skips what is already done
(whole captures, finished avatars, the training runs' last checkpoints), so a killed run continues
where it stopped. Sizes are chosen for the 2-core CPU machine the project is built on (about two
hours in all there, see docs/results.md); a GPU, when there is one, only makes training faster.
Training has two stages: stage 1 on the first block of identities, stage 2 fine-tunes it on that
block plus a second block of new people (stage 1 alone plateaued on new people while its training
loss still fell: more people, not more passes, is what helps).

Worlds and seeds (none of the evaluation seeds is used by any training world):
    train/      `training_world()`: many identities, two short captures each (seed TRAIN_SEED)
    train_wide/ stage 2's block of further identities (id400.., same seed, compact ground truth)
    heldout/    `test_world()`: new identities in new headsets and sessions (seed TEST_SEED)
    newcaps/    new captures of trained identities that have avatars: a new session in a known
                headset, and a new headset unit + appearance + environment (the paper's Table 2
                setting); the demo capture is one of them
    run/, run_wide/  the stage 1 and stage 2 training runs (run_wide/last.pt is shipped)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from engine.synth.config import AppearanceConfig
from engine.synth.generate import CaptureSpec, capture_plan, generate_dataset
from engine.synth.worlds import TEST_SEED, test_world, training_world

Log = Callable[[str], None]
NEW_SESSION, NEW_HEADSET = 2, 3  # capture indices of newcaps/ (training captures are _c00, _c01)


@dataclass
class RecipeConfig:
    """Sizes of every stage; the defaults are the shipped model's."""

    root: str = "data/model"
    identities: int = 400
    frames: int = 32
    size: int = 64
    avatar_subjects: int = 6
    avatar_steps: int = 600
    heldout_identities: int = 6
    heldout_frames: int = 90
    steps: int = 8000
    batch_size: int = 32
    jobs: int = 2
    wide_identities: int = 400   # stage 2: a second block of new people (id400..), compact
    wide_steps: int = 6000       # stage 2: fine-tune the stage-1 model on both blocks
    wide_lr: float = 4e-4
    train: dict = field(default_factory=lambda: {
        "augment": {"probability": 0.35}, "lr": 1e-3, "checkpoint_every": 500, "log_every": 50,
        "num_workers": 0})

    @property
    def avatar_ids(self) -> list[str]:
        return [f"id{i:03d}" for i in range(self.avatar_subjects)]

    @property
    def paths(self) -> dict[str, Path]:
        root = Path(self.root)
        return {k: root / k for k in ("train", "train_wide", "heldout", "newcaps", "run", "run_wide")}

    @property
    def final_run(self) -> Path:
        """The run whose checkpoint is evaluated and shipped."""
        return self.paths["run_wide" if self.wide_identities and self.wide_steps else "run"]


def new_capture_plan(cfg: RecipeConfig) -> list[CaptureSpec]:
    """Two new captures of each avatar identity (seeded from TEST_SEED, never used in training):
    _c02 a new session in the headset of its first training capture (the paper's Table 2 test 1),
    _c03 a new headset unit, appearance and environment (test 4, the hardest)."""
    first = {s.identity: s for s in capture_plan(training_world(cfg.identities, cfg.frames, cfg.size))
             if s.index == 0}
    rng = np.random.default_rng([TEST_SEED, 23])
    plan = []
    for i in range(cfg.avatar_subjects):
        seeds = [int(s) for s in rng.integers(0, 2**31, 6)]
        plan.append(CaptureSpec(i, NEW_SESSION, first[i].headset, first[i].appearance,
                                first[i].environment_seed, seeds[0], seeds[1], frames=cfg.heldout_frames))
        look = AppearanceConfig(beard=float(rng.uniform(0.0, 1.0)), makeup=float(rng.uniform(0.3, 1.0)),
                                skin_gain=float(rng.uniform(0.9, 1.1)))
        plan.append(CaptureSpec(i, NEW_HEADSET, f"hs{900 + i}", look, *seeds[2:5],
                                frames=cfg.heldout_frames))
    return plan


def make_data(cfg: RecipeConfig, log: Log, progress=None) -> None:
    """Render (or finish rendering) the three worlds."""
    train_world = training_world(cfg.identities, cfg.frames, cfg.size)
    heldout = test_world(cfg.heldout_identities, cfg.heldout_frames, cfg.size)
    p = cfg.paths
    log(f"data: {cfg.identities} identities x 2 captures x {cfg.frames} frames at {cfg.size} px -> {p['train']}")
    generate_dataset(p["train"], train_world, progress=progress, jobs=cfg.jobs)
    log(f"data: {cfg.heldout_identities} held-out identities x 2 captures -> {p['heldout']}")
    generate_dataset(p["heldout"], heldout, progress=progress, jobs=cfg.jobs)
    log(f"data: new captures of trained identities {cfg.avatar_ids} -> {p['newcaps']}")
    newcaps = dataclasses.replace(train_world, frames_per_capture=cfg.heldout_frames)
    generate_dataset(p["newcaps"], newcaps, progress=progress, plan=new_capture_plan(cfg), jobs=cfg.jobs)


def make_wide_data(cfg: RecipeConfig, log: Log, progress=None) -> None:
    """Render (or finish) stage 2's block of new identities, ground truth stored compactly."""
    if not cfg.wide_identities:
        return
    world = training_world(cfg.wide_identities, cfg.frames, cfg.size, first_identity=cfg.identities)
    out = cfg.paths["train_wide"]
    log(f"data: {cfg.wide_identities} more identities (id{cfg.identities:03d}..) x 2 captures -> {out}")
    generate_dataset(out, world, progress=progress, jobs=cfg.jobs)


def make_avatars(cfg: RecipeConfig, log: Log, progress=None) -> None:
    """Avatar decoders D_i for the first `avatar_subjects` training identities (the others train
    B and G only, as the paper's untrained subjects do), and their codes for the new captures."""
    import shutil

    from engine.avatar_train import train_dataset_avatars
    p = cfg.paths
    log(f"avatars: {cfg.avatar_ids} ({cfg.avatar_steps} steps each)")
    train_dataset_avatars(p["train"], steps=cfg.avatar_steps, progress=progress, jobs=cfg.jobs,
                          subjects=cfg.avatar_ids)
    for sid in cfg.avatar_ids:  # the same person in newcaps/: reuse the decoder, encode the codes
        src, dst = p["train"] / "subjects" / sid / "avatar", p["newcaps"] / "subjects" / sid / "avatar"
        if not dst.exists():
            tmp = dst.with_name(".avatar.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(src, tmp)
            tmp.rename(dst)
    train_dataset_avatars(p["newcaps"], steps=cfg.avatar_steps, jobs=1, subjects=cfg.avatar_ids)


def train_config(cfg: RecipeConfig):
    """The TrainConfig of the shipped model (defaults of ModelConfig at the recipe's image size)."""
    from engine.mia.config import ModelConfig
    from engine.train import TrainConfig
    options = {**cfg.train, "steps": cfg.steps, "batch_size": cfg.batch_size,
               "out_dir": str(cfg.paths["run"]), "model": ModelConfig(image_size=cfg.size)}
    return TrainConfig.from_dict(options)


def train_model(cfg: RecipeConfig, log: Log, progress=None, cancel=None, show_bar: bool = True) -> Path:
    """Stage 1: train MIA on the first block, continuing the run folder's checkpoint if there is one."""
    from engine.train import train
    run = cfg.paths["run"]
    resume = (run / "last.pt").is_file()
    log(f"train: {cfg.steps} steps of batch {cfg.batch_size} -> {run}" + (" (resuming)" if resume else ""))
    return train(train_config(cfg), cfg.paths["train"], run, progress, cancel, resume=resume,
                 show_bar=show_bar)


def wide_train_config(cfg: RecipeConfig, start: Path):
    """Stage 2's TrainConfig: stage 1's weights, a fresh optimiser and a schedule of its own."""
    from engine.train import TrainConfig
    options = {**train_config(cfg).to_dict(), "steps": cfg.wide_steps, "lr": cfg.wide_lr,
               "lr_step": 0, "init_from": str(start), "out_dir": str(cfg.paths["run_wide"])}
    return TrainConfig.from_dict(options)


def train_wide_model(cfg: RecipeConfig, start: Path, log: Log, progress=None, cancel=None,
                     show_bar: bool = True) -> Path:
    """Stage 2: fine-tune stage 1's model on both identity blocks (stage 1 alone plateaus on new
    people while its training loss still falls: more people, not more passes, is what helps)."""
    from engine.data import find_captures
    from engine.train import train
    if not (cfg.wide_identities and cfg.wide_steps):
        return start
    run = cfg.paths["run_wide"]
    resume = (run / "last.pt").is_file()
    data = find_captures(cfg.paths["train"]) + find_captures(cfg.paths["train_wide"])
    log(f"train: {cfg.wide_steps} steps on {len(data)} captures, from {start} -> {run}"
        + (" (resuming)" if resume else ""))
    return train(wide_train_config(cfg, start), data, run, progress, cancel, resume=resume,
                 show_bar=show_bar)


def evaluate_model(checkpoint: Path, cfg: RecipeConfig, out: Path, log: Log) -> dict:
    """Held-out errors of `checkpoint`: untrained identities (heldout/) and new captures of
    trained identities (newcaps/), each with its neutral-mesh baseline; writes reports under out/."""
    from engine.evaluate import evaluate_dataset, summarise, write_report
    from engine.inference import InferenceEngine
    engine = InferenceEngine(checkpoint, threads=cfg.jobs)
    summary = {}
    for name in ("heldout", "newcaps"):
        results = evaluate_dataset(engine, cfg.paths[name])
        write_report(results, out / name, title=f"{checkpoint.name} on {name}", info=engine.info())
        s = summarise(results)
        summary[name] = {kind: {r: v[0] for r, v in regions.items()} for kind, regions in s.items()}
        shape, base = summary[name]["shape"], summary[name]["baseline"]
        log(f"eval {name}: " + ", ".join(f"{r} {shape[r]:.2f} mm (neutral {base[r]:.2f}, "
                                          f"ratio {shape[r] / base[r]:.2f})" for r in shape))
    return summary
