"""The shipped-model recipe: data, avatars, MIA training and held-out evaluation, resumable.

`mia model` (and `make model`) runs these stages in order; each one skips what is already done
(whole captures, finished avatars, the training runs' last checkpoints), so a killed run continues
where it stopped. Sizes are chosen for the 2-core CPU machine the project is built on (about two
hours in all there, see docs/results.md); a GPU, when there is one, only makes training faster.
Training has stages: stage 1 on the first block of identities, then each further block
(`RecipeConfig.blocks`) adds new people and fine-tunes the previous stage's model on every block so
far (stage 1 alone plateaued on new people while its training loss still fell: more people, not
more passes, is what helps; stage 3's block also widens the nuisance spreads, because the stage-2
model failed on the held-out captures with the largest head-in-headset offsets). The polish adds
no data: it trains the last block's model for more steps on every block with a
restarted schedule, because the stage-3 model did not fit even its own training people to 0.5x.
The finish then trains the polished model for a few thousand steps more *without* the 3D
augmentation layer (2-D jitter stays): at 1,200 identities and 3,200 rendered captures the real
headset variety is in the data, and the re-rendered samples, which earlier stages needed, only
shift the inputs (measured in docs/results.md: better on new people and new captures; a wider
augmentation instead was worse).

Worlds and seeds (none of the evaluation seeds is used by any training world):
    train/         `training_world()`: many identities, two short captures each (seed TRAIN_SEED)
    train_<block>/ a further block of identities (id400.., id800.., same seed, compact ground truth)
    heldout/       `test_world()`: new identities in new headsets and sessions (seed TEST_SEED)
    heldout_wider/ the same in stage 3's wider spreads (seed WIDER_TEST_SEED): beyond stages 1-2
    newcaps/       new captures of trained identities that have avatars: a new session in a known
                   headset, and a new headset unit + appearance + environment (the paper's Table 2
                   setting); the demo capture is one of them
    run/, run_<block>/  the training runs of stage 1 and of each block
    run_polish/    the polish stage's run
    run_finish/    the finish stage's run (shipped; without it the polish's, or the last block's)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import numpy as np

from engine.synth.config import AppearanceConfig
from engine.synth.generate import CaptureSpec, capture_plan, generate_dataset
from engine.synth.worlds import TEST_SEED, test_world, training_world
from engine.io.atomic import write_text

WIDER_TEST_SEED = TEST_SEED + 100

Log = Callable[[str], None]
Progress = Callable[[int, int, str], None]
StageProgress = Callable[[str, str], AbstractContextManager]  # (stage, unit) -> context giving a Progress
NEW_SESSION, NEW_HEADSET = 2, 3  # capture indices of newcaps/ (training captures are _c00, _c01)


@dataclass
class BlockConfig:
    """A further block of new identities, and the fine-tuning stage that adds it to the model."""

    name: str                    # data in train_<name>/, the run in run_<name>/
    identities: int = 400
    captures: int = 2            # captures per identity (each its own session, most a new headset)
    frames: int = 32             # frames per capture
    spread: str = "wide"         # nuisance spreads, a key of engine.synth.worlds.SPREADS
    steps: int = 6000            # fine-tuning steps on all blocks so far
    lr: float = 4e-4

    @property
    def active(self) -> bool:
        return self.identities > 0 and self.steps > 0


def default_blocks() -> list[BlockConfig]:
    """Stage 2 (400 more people like stage 1's) and stage 3 (400 more, four shorter captures
    each, in nuisance spreads ~1.8x the defaults)."""
    return [BlockConfig("wide"),
            BlockConfig("wider", captures=4, frames=16, spread="wider", steps=6000, lr=3e-4)]


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
    blocks: list[BlockConfig] = field(default_factory=default_blocks)  # stages 2, 3, ...
    polish_steps: int = 6000     # more steps on every block, no new data (0: none)
    polish_lr: float = 2e-4
    finish_steps: int = 6000     # then more steps without the 3D augmentation layer (0: none)
    finish_lr: float = 2e-4
    averaging: int = 16          # test-time averaging evaluated and shipped (engine/runtime/averaging.py)
    mirror: bool = True          # ... with each frame's mirror image read too
    model: dict = field(default_factory=dict)  # ModelConfig fields over its defaults (tests: tiny sizes)
    train: dict = field(default_factory=lambda: {
        "augment": {"probability": 0.35}, "lr": 1e-3, "checkpoint_every": 500, "log_every": 50,
        "num_workers": 0})

    @property
    def avatar_ids(self) -> list[str]:
        return [f"id{i:03d}" for i in range(self.avatar_subjects)]

    @property
    def active_blocks(self) -> list[BlockConfig]:
        return [b for b in self.blocks if b.active]

    @property
    def paths(self) -> dict[str, Path]:
        root = Path(self.root)
        names = ["train", "heldout", "heldout_wider", "newcaps", "run", "run_polish", "run_finish"]
        for b in self.blocks:
            names += [f"train_{b.name}", f"run_{b.name}"]
        return {k: root / k for k in names}

    def first_identity(self, block: BlockConfig) -> int:
        """Blocks number their people after stage 1's and every block before them."""
        first = self.identities
        for b in self.active_blocks:
            if b is block:
                return first
            first += b.identities
        raise ValueError(f"block {block.name!r} is not active")

    @property
    def final_run(self) -> Path:
        """The run whose checkpoint is evaluated and shipped: the last stage's."""
        if self.finish_steps > 0:
            return self.paths["run_finish"]
        if self.polish_steps > 0:
            return self.paths["run_polish"]
        blocks = self.active_blocks
        return self.paths[f"run_{blocks[-1].name}" if blocks else "run"]

    def training_data(self, blocks: list[BlockConfig]) -> list[Path]:
        """Every capture of stage 1's block and of `blocks`."""
        from engine.training.dataset import find_captures
        data = find_captures(self.paths["train"])
        for b in blocks:
            data += find_captures(self.paths[f"train_{b.name}"])
        return data


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
    wider = test_world(cfg.heldout_identities, cfg.heldout_frames, cfg.size, WIDER_TEST_SEED, "wider")
    log(f"data: {cfg.heldout_identities} held-out identities in wider spreads -> {p['heldout_wider']}")
    generate_dataset(p["heldout_wider"], wider, progress=progress, jobs=cfg.jobs)
    log(f"data: new captures of trained identities {cfg.avatar_ids} -> {p['newcaps']}")
    newcaps = dataclasses.replace(train_world, frames_per_capture=cfg.heldout_frames)
    generate_dataset(p["newcaps"], newcaps, progress=progress, plan=new_capture_plan(cfg), jobs=cfg.jobs)


def block_world(cfg: RecipeConfig, block: BlockConfig):
    return training_world(block.identities, block.frames, cfg.size, first_identity=cfg.first_identity(block),
                          captures=block.captures, spread=block.spread)


def make_block_data(cfg: RecipeConfig, block: BlockConfig, log: Log, progress=None) -> None:
    """Render (or finish) a further block of new identities, ground truth stored compactly."""
    out = cfg.paths[f"train_{block.name}"]
    log(f"data: {block.identities} more identities (id{cfg.first_identity(block):03d}..) x "
        f"{block.captures} captures x {block.frames} frames, {block.spread} spreads -> {out}")
    generate_dataset(out, block_world(cfg, block), progress=progress, jobs=cfg.jobs)


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
    from engine.training.config import TrainConfig
    options = {**cfg.train, "steps": cfg.steps, "batch_size": cfg.batch_size,
               "out_dir": str(cfg.paths["run"]), "model": ModelConfig(**{"image_size": cfg.size, **cfg.model})}
    return TrainConfig.from_dict(options)


def finished_run(run: Path, steps: int, log: Log) -> bool:
    """True (and logged) when run/last.pt has reached `steps`: the stage is skipped without
    loading its data (tens of thousands of frames, minutes here)."""
    from engine.io.checkpoint import load_checkpoint
    last = run / "last.pt"
    if not last.is_file():
        return False
    training = load_checkpoint(last).training or {}
    if int(training.get("step", 0)) < steps:
        return False
    log(f"train: {last} has its {steps} steps (resuming: nothing to do)")
    return True


def train_model(cfg: RecipeConfig, log: Log, progress=None, cancel=None, show_bar: bool = True) -> Path:
    """Stage 1: train MIA on the first block, continuing the run folder's checkpoint if there is one."""
    from engine.training.trainer import train
    run = cfg.paths["run"]
    if finished_run(run, cfg.steps, log):
        return run / "last.pt"
    resume = (run / "last.pt").is_file()
    log(f"train: {cfg.steps} steps of batch {cfg.batch_size} -> {run}" + (" (resuming)" if resume else ""))
    return train(train_config(cfg), cfg.paths["train"], run, progress, cancel, resume=resume,
                 show_bar=show_bar)


def finetune_config(cfg: RecipeConfig, run: Path, steps: int, lr: float, start: Path,
                    augment: dict | None = None):
    """A fine-tuning stage's TrainConfig: the previous stage's weights, a fresh optimiser and its
    own schedule (x0.8 every steps / 10); `augment` replaces the recipe's 3D augmentation options."""
    from engine.training.config import TrainConfig
    options = {**train_config(cfg).to_dict(), "steps": steps, "lr": lr, "lr_step": 0,
               "init_from": str(start), "out_dir": str(run)}
    if augment is not None:
        options["augment"] = augment
    return TrainConfig.from_dict(options)


def finetune(cfg: RecipeConfig, run: Path, steps: int, lr: float, start: Path, data: list[Path],
             log: Log, progress=None, cancel=None, show_bar: bool = True, augment: dict | None = None) -> Path:
    """Fine-tune `start` on `data` into `run`, resuming the run's checkpoint if there is one."""
    from engine.training.trainer import train
    resume = (run / "last.pt").is_file()
    log(f"train: {steps} steps on {len(data)} captures, from {start} -> {run}"
        + (" (resuming)" if resume else ""))
    return train(finetune_config(cfg, run, steps, lr, start, augment), data, run, progress, cancel,
                 resume=resume, show_bar=show_bar)


def train_block_model(cfg: RecipeConfig, block: BlockConfig, start: Path, log: Log, progress=None,
                      cancel=None, show_bar: bool = True) -> Path:
    """Fine-tune the previous stage's model on stage 1's block and every further block up to
    and including `block`."""
    run = cfg.paths[f"run_{block.name}"]
    if finished_run(run, block.steps, log):
        return run / "last.pt"
    blocks = cfg.active_blocks[:cfg.active_blocks.index(block) + 1]
    return finetune(cfg, run, block.steps, block.lr, start, cfg.training_data(blocks), log,
                    progress, cancel, show_bar)


def more_steps(cfg: RecipeConfig, name: str, steps: int, lr: float, start: Path, log: Log,
               progress=None, cancel=None, show_bar: bool = True, augment: dict | None = None) -> Path:
    """A stage that adds no data: `start` trained for `steps` more on every block into run_<name>/,
    skipped when that run is finished."""
    run = cfg.paths[f"run_{name}"]
    if finished_run(run, steps, log):
        return run / "last.pt"
    return finetune(cfg, run, steps, lr, start, cfg.training_data(cfg.active_blocks), log, progress,
                    cancel, show_bar, augment)


def polish_model(cfg: RecipeConfig, start: Path, log: Log, progress=None, cancel=None,
                 show_bar: bool = True) -> Path:
    """More steps on every block with a restarted schedule (the stage-3 model did not fit even its
    own training people to 0.5x of neutral: it underfits)."""
    return more_steps(cfg, "polish", cfg.polish_steps, cfg.polish_lr, start, log, progress, cancel, show_bar)


def finish_model(cfg: RecipeConfig, start: Path, log: Log, progress=None, cancel=None,
                 show_bar: bool = True) -> Path:
    """After the polish: more steps on every block without the 3D augmentation layer (see the
    module docstring for why)."""
    return more_steps(cfg, "finish", cfg.finish_steps, cfg.finish_lr, start, log, progress, cancel,
                      show_bar, augment={"enabled": False})


def evaluate_model(checkpoint: Path, cfg: RecipeConfig, out: Path, log: Log) -> dict:
    """Held-out errors of `checkpoint`, read with the test-time averaging the bundle will
    recommend (`cfg.averaging`, `cfg.mirror`): untrained identities (heldout/, and heldout_wider/ in the wider
    spreads) and new captures of trained identities (newcaps/), each with its neutral-mesh
    baseline; writes reports under out/."""
    from engine.evaluation.evaluate import evaluate_dataset, summarise, write_report
    from engine.runtime.inference import InferenceEngine
    engine = InferenceEngine(checkpoint, threads=cfg.jobs, averaging=cfg.averaging, mirror=cfg.mirror)
    summary = {}
    for name in ("heldout", "heldout_wider", "newcaps"):
        results = evaluate_dataset(engine, cfg.paths[name])
        write_report(results, out / name, title=f"{checkpoint.name} on {name}", info=engine.info())
        s = summarise(results)
        summary[name] = {kind: {r: v[0] for r, v in regions.items()} for kind, regions in s.items()}
        shape, base = summary[name]["shape"], summary[name]["baseline"]
        log(f"eval {name}: " + ", ".join(f"{r} {shape[r]:.2f} mm (neutral {base[r]:.2f}, "
                                          f"ratio {shape[r] / base[r]:.2f})" for r in shape))
    return summary


def fit_head(cfg: RecipeConfig, checkpoint: Path, log: Log, bar: StageProgress) -> None:
    """The ARKit head on B's code e (engine/output/head.py), written into the final checkpoint;
    fitted on the further blocks (their compact ground truth holds each person's blendshape
    weights), or on stage 1's data when there are none. A resumed recipe keeps a current head."""
    from engine.output.head import fit_arkit_head
    data = [cfg.paths[f"train_{b.name}"] for b in cfg.active_blocks] or [cfg.paths["train"]]
    log(f"arkit head: on B's code over {', '.join(str(d) for d in data)} -> {checkpoint}")
    with bar("arkit head", "step") as progress:
        fit_arkit_head(checkpoint, data, checkpoint, progress=progress, keep_current=True)


def run_recipe(cfg: RecipeConfig, log: Log, stage_progress: StageProgress | None = None,
               cancel: Callable[[], bool] | None = None) -> tuple[Path, dict]:
    """Every stage in order, each skipping what is already done; returns the final checkpoint and
    its held-out summary (also written to <final run>/eval/summary.json)."""
    import json

    def bar(stage: str, unit: str) -> AbstractContextManager:
        return stage_progress(stage, unit) if stage_progress else nullcontext(None)

    with bar("synth", "frame") as progress:
        make_data(cfg, log, progress)
    with bar("avatars", "step") as progress:
        make_avatars(cfg, log, progress)
    checkpoint = train_model(cfg, log, cancel=cancel, show_bar=stage_progress is not None)
    for block in cfg.active_blocks:
        with bar("synth", "frame") as progress:
            make_block_data(cfg, block, log, progress)
        checkpoint = train_block_model(cfg, block, checkpoint, log, cancel=cancel,
                                       show_bar=stage_progress is not None)
    if cfg.polish_steps > 0:
        checkpoint = polish_model(cfg, checkpoint, log, cancel=cancel,
                                  show_bar=stage_progress is not None)
    if cfg.finish_steps > 0:
        checkpoint = finish_model(cfg, checkpoint, log, cancel=cancel,
                                  show_bar=stage_progress is not None)
    fit_head(cfg, checkpoint, log, bar)
    summary = evaluate_model(checkpoint, cfg, cfg.final_run / "eval", log)
    out = cfg.final_run / "eval" / "summary.json"
    write_text(out, json.dumps(summary, indent=1))
    return checkpoint, summary
