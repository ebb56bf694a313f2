"""The shipped model on a lent GPU machine, in a fixed wall-clock budget (one command, ~9 minutes).

The CPU recipe (`mia model`, engine/recipe.py) is sized in steps for 2 cores and grows the model in
stages because data and steps are what those cores ration. A lent GPU machine (16 cores, one GPU)
is rationed by minutes instead, so this script:

1. renders the recipe's worlds with the recipe's own functions (`make_data`, `make_block_data`,
   the same seeds and spreads) on all cores, plus one further block of new people in the wider
   spreads while the time allows, with the avatars trained beside the rendering;
2. trains MIA from scratch on every block in one run per model variant, the variants side by side
   on the one GPU, each to a wall-clock deadline: Adam with warm-up and a cosine decay *by time*,
   the 3D augmentation layer on for the first `--aug-fraction` of the time and off after (the CPU
   recipe's finish stage measured that order as best);
3. evaluates every variant and the shipped CPU model on the recipe's held-out worlds, fits the ARKit
   head on the best variant and bundles it like `mia model` does.

    python benchmarks/gpu_model.py --root /tmp/gpu --out OUT --minutes 9

`--tiny` runs the same path at toy sizes on a CPU (a check of the script, not a model).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing as mp
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = {  # ModelConfig fields over the recipe's (the shipped model is "base")
    "base": {},
    "wide": {"backbone_width": 64},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("/tmp/gpu_model"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=9.0, help="whole budget, data to bundle")
    p.add_argument("--data-minutes", type=float, default=2.6, help="rendering stops adding blocks after this")
    p.add_argument("--tail-minutes", type=float, default=1.6, help="kept for evaluation, head and bundle")
    p.add_argument("--jobs", type=int, default=16)
    p.add_argument("--workers", type=int, default=7, help="DataLoader workers per variant")
    p.add_argument("--variants", default="base,wide")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--aug-fraction", type=float, default=0.6)
    p.add_argument("--more-identities", type=int, default=400)
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--quick", action="store_true", help="100 identities, no further blocks, no bundle: a rate check")
    return p.parse_args()


def recipe(args: argparse.Namespace):
    from engine.recipe import BlockConfig, RecipeConfig, default_blocks
    if args.tiny:
        from engine.mia.config import ModelConfig
        return RecipeConfig(
            root=str(args.root), identities=3, frames=4, size=32, avatar_subjects=2, avatar_steps=4,
            heldout_identities=1, heldout_frames=4, jobs=args.jobs, model=ModelConfig.tiny().to_dict(),
            blocks=[BlockConfig("wide", identities=2, frames=4),
                    BlockConfig("wider", identities=2, captures=3, frames=3, spread="wider"),
                    BlockConfig("more", identities=2, captures=2, frames=3, spread="wider")],
            train={"augment": {"probability": 0.5}, "num_workers": 0})
    if args.quick:
        return RecipeConfig(root=str(args.root), jobs=args.jobs, identities=100, heldout_identities=2,
                            heldout_frames=30, avatar_subjects=2, avatar_steps=100, blocks=[])
    more = BlockConfig("more", identities=args.more_identities, captures=4, frames=16, spread="wider")
    return RecipeConfig(root=str(args.root), jobs=args.jobs, blocks=default_blocks() + [more])


class Clock:
    def __init__(self, minutes: float) -> None:
        self.start = time.monotonic()
        self.end = self.start + 60 * minutes

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.end - time.monotonic()


def log(clock: Clock, message: str) -> None:
    print(f"[{clock.elapsed():6.1f} s] {message}", flush=True)


def render(cfg, clock: Clock, args) -> dict:
    """The recipe's worlds, then its blocks while the data budget allows; avatars alongside."""
    from engine.recipe import make_avatars, make_block_data, make_data
    say = lambda m: log(clock, m)  # noqa: E731
    t = time.monotonic()
    make_data(cfg, say)
    frames = cfg.identities * 2 * cfg.frames
    rate = frames / max(1e-3, time.monotonic() - t)
    say(f"rendered stage 1 + held-out worlds: {rate:.0f} training frames/s (with held-out)")
    stats = {"render_rate": rate, "blocks": []}
    with ThreadPoolExecutor(1) as pool:
        avatars = pool.submit(make_avatars, cfg, say)
        for i, block in enumerate(cfg.blocks):
            need = block.identities * block.captures * block.frames / rate
            if clock.elapsed() + need > 60 * args.data_minutes:
                say(f"block {block.name}: skipped ({need:.0f} s of rendering would pass the data budget)")
                cfg.blocks[i] = dataclasses.replace(block, identities=0)
                continue
            make_block_data(cfg, block, say)
            stats["blocks"].append(block.name)
        avatars.result()
    say("data and avatars done")
    return stats


def train_variant(name: str, overrides: dict, cfg, data: list, deadline_wall: float, args, queue) -> None:
    """One variant's run in its own process; a failure is reported, not left to hang the parent."""
    try:
        queue.put(_train_variant(name, overrides, cfg, data, deadline_wall, args))
    except BaseException as err:  # noqa: BLE001 - reported to the parent whatever it is
        import traceback
        traceback.print_exc()
        queue.put({"name": name, "error": f"{type(err).__name__}: {err}"})


def _train_variant(name: str, overrides: dict, cfg, data: list, deadline_wall: float, args) -> dict:
    """From scratch, lr and augmentation scheduled by time."""
    import torch

    from engine.mia.config import ModelConfig
    from engine.training.config import TrainConfig
    from engine.training.trainer import Trainer
    torch.set_num_threads(2)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    out = Path(cfg.root) / f"run_gpu_{name}"
    model = ModelConfig(**{"image_size": cfg.size, **cfg.model, **overrides})
    options = {**cfg.train, "steps": 10 ** 8, "batch_size": args.batch, "lr": args.lr, "out_dir": str(out),
               "model": model, "num_workers": args.workers, "device": args.device,
               "checkpoint_every": 10 ** 9}
    trainer = Trainer(TrainConfig.from_dict(options), data, out, show_bar=False)
    begin = time.time()
    span = max(1.0, deadline_wall - begin)
    aug_until = begin + args.aug_fraction * span
    augmenting = trainer.dataset.augment is not None

    def loader():
        """The trainer's batches from its current step, with a timeout: a DataLoader worker that
        hangs (GL in a process forked from one holding CUDA) raises instead of stalling the run."""
        from torch.utils.data import DataLoader

        from engine.training.sampler import StepBatchSampler
        sampler = StepBatchSampler(len(trainer.dataset), args.batch, trainer.cfg.seed, trainer.step, 10 ** 8)
        workers = args.workers
        # fork, as every CUDA training script on Linux does (workers never touch CUDA): this process
        # was spawned, and spawned workers would each be sent a pickled copy of every frame and mesh
        return iter(DataLoader(trainer.dataset, batch_sampler=sampler, num_workers=workers,
                               multiprocessing_context="fork" if workers else None,
                               pin_memory=trainer.env.device.type == "cuda", timeout=90 if workers else 0,
                               prefetch_factor=4 if workers else None))

    batches = loader()
    history, shape = [], float("nan")
    try:
        while time.time() < deadline_wall:
            now = time.time()
            if augmenting and now >= aug_until:
                trainer.dataset.augment, augmenting = None, False
                del batches
                batches = loader()
                history.append({"step": trainer.step, "event": "3D augmentation off"})
            frac = (now - begin) / span
            lr = args.lr * min(1.0, (trainer.step + 1) / args.warmup) * max(0.02, 0.5 * (1 + math.cos(math.pi * frac)))
            for group in trainer.optimizer.param_groups:
                group["lr"] = lr
            try:
                batch = next(batches)
            except Exception as err:  # a worker that cannot render: go on without the layer
                if not augmenting:
                    raise
                history.append({"step": trainer.step, "event": f"augmentation failed ({err}); off"})
                trainer.dataset.augment, augmenting = None, False
                batches = loader()
                continue
            terms = trainer.backward(batch)
            trainer.optimizer.step()
            trainer.step += 1
            if trainer.step % 200 == 0:
                shape = float(terms.shape.detach())
                history.append({"step": trainer.step, "seconds": round(time.time() - begin, 1), "lr": lr,
                                "shape": shape, "texture": float(terms.texture.detach())})
                print(f"  {name}: step {trainer.step}, {time.time() - begin:.0f} s, lr {lr:.2e}, "
                      f"shape {shape:.4f}", flush=True)
    finally:
        del batches
    trainer.seconds = time.time() - begin
    trainer.cfg = dataclasses.replace(trainer.cfg, steps=trainer.step, num_workers=0, device="auto")
    path = trainer.save()
    trainer.close()
    return {"name": name, "checkpoint": str(path), "steps": trainer.step, "seconds": trainer.seconds,
            "samples_per_s": trainer.step * args.batch / max(1e-3, trainer.seconds),
            "params": sum(p.numel() for p in trainer.model.parameters()), "history": history}


def ratios(summary: dict) -> dict:
    return {w: {r: round(s["shape"][r] / s["baseline"][r], 4) for r in s["shape"]} for w, s in summary.items()}


def main() -> int:
    args = parse_args()
    clock = Clock(args.minutes)
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = recipe(args)
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    report["data"] = render(cfg, clock, args)
    data = [str(p) for p in cfg.training_data(cfg.active_blocks)]
    report["data"]["captures"] = len(data)
    deadline = time.time() + clock.left() - 60 * args.tail_minutes
    log(clock, f"training {args.variants} on {len(data)} captures until {clock.left() / 60 - args.tail_minutes:.1f} min from the end")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=train_variant, args=(n, VARIANTS[n], cfg, data, deadline, args, queue))
             for n in args.variants.split(",")]
    for p in procs:
        p.start()
    runs, failed = {}, {}
    for _ in procs:
        try:
            r = queue.get(timeout=max(60.0, deadline - time.time() + 120))
        except Exception:
            log(clock, "a variant neither finished nor reported a failure")
            break
        if "error" in r:
            failed[r["name"]] = r["error"]
            log(clock, f"{r['name']}: FAILED {r['error']}")
            continue
        runs[r["name"]] = r
        log(clock, f"{r['name']}: {r['steps']} steps in {r['seconds']:.0f} s ({r['samples_per_s']:.0f} samples/s), "
                   f"{r['params'] / 1e6:.2f} M parameters")
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    report["runs"], report["failed"] = runs, failed
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    if not runs:
        return 1

    from engine.recipe import evaluate_model
    say = lambda m: log(clock, m)  # noqa: E731
    evals = {}
    shipped = Path("resources/default_model.pt")
    for name, r in list(runs.items()) + ([("shipped_cpu", {"checkpoint": str(shipped)})]
                                         if not (args.tiny or args.quick) else []):
        summary = evaluate_model(Path(r["checkpoint"]), cfg, Path(cfg.root) / f"eval_{name}", say)
        evals[name] = {"summary": summary, "ratios": ratios(summary)}
    report["eval"] = evals
    best = min(runs, key=lambda n: sum(evals[n]["ratios"][w]["face"] for w in evals[n]["ratios"]))
    report["best"] = best
    log(clock, f"best variant: {best}")
    checkpoint = Path(runs[best]["checkpoint"])
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    if args.quick:
        return 0
    from app.commands.model import bundle
    bundled = Path(cfg.root) / "bundle"
    bundle(cfg, checkpoint, bundled)  # first, so a late kill still leaves a model to fetch
    log(clock, "bundled (no ARKit head yet)")
    from engine.output.head import fit_arkit_head
    heads = [cfg.paths[f"train_{b.name}"] for b in cfg.active_blocks][-2:] or [cfg.paths["train"]]
    log(clock, f"arkit head on the bundled model's B over {[str(d) for d in heads]}")
    fit_arkit_head(bundled / "default_model.pt", heads, bundled / "default_model.pt", progress=None)
    report["head_datasets"] = [str(d) for d in heads]
    log(clock, "ARKit head fitted into the bundled model")
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
