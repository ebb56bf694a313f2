"""`mia model` (`make model`): build the shipped default model from nothing, resumably.

Stages: render the synthetic worlds, train the avatar decoders of a few identities, train MIA,
then for each further block (stages 2 and 3) render new identities and fine-tune MIA on every
block so far, polish it (more steps on all blocks, no new data), finish it (more steps without the
3D augmentation layer), fit the ARKit head, evaluate it on held-out identities and new captures,
and bundle it with a demo capture and subjects into resources/. Kill it at any point and run it again: finished captures, avatars and
the training checkpoint are kept and the run continues from them.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from app.commands.progress import tqdm_progress

DEMO_FRAMES = 90


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("model", help="generate data, train avatars and MIA, evaluate, and bundle the default model")
    p.add_argument("--root", type=Path, help="working folder for data and the run (default data/model)")
    p.add_argument("--out", type=Path, default=Path("resources"), help="where the shipped defaults go")
    p.add_argument("--identities", type=int, help="training identities (default 400)")
    p.add_argument("--frames", type=int, help="frames per training capture (default 32)")
    p.add_argument("--steps", type=int, help="MIA training steps of stage 1 (default 8000)")
    p.add_argument("--wide-identities", type=int,
                   help="stage 2: further identities added (default 400; 0 skips stage 2)")
    p.add_argument("--wide-steps", type=int, help="stage 2: fine-tuning steps on both blocks (default 6000)")
    p.add_argument("--wider-identities", type=int,
                   help="stage 3: further identities in wider nuisance spreads (default 400; 0 skips stage 3)")
    p.add_argument("--wider-steps", type=int, help="stage 3: fine-tuning steps on all blocks (default 6000)")
    p.add_argument("--polish-steps", type=int,
                   help="more steps on all blocks, no new data (default 6000; 0 skips it)")
    p.add_argument("--finish-steps", type=int,
                   help="then more steps without the 3D augmentation layer (default 6000; 0 skips it)")
    p.add_argument("--mirror", type=float, metavar="P",
                   help="train every stage on a sample's mirror image with probability P (default 0, as the "
                        "shipped model; a small A/B was inconclusive, docs/results.md)")
    p.add_argument("--jobs", type=int, help="parallel rendering / avatar processes (default 2)")
    p.add_argument("--no-bundle", action="store_true", help="stop after the evaluation")
    return p


def recipe_from_args(args):
    import dataclasses

    from engine.recipe import RecipeConfig
    given = {"root": None if args.root is None else str(args.root), "identities": args.identities,
             "frames": args.frames, "steps": args.steps, "jobs": args.jobs,
             "polish_steps": args.polish_steps, "finish_steps": args.finish_steps}
    cfg = RecipeConfig(**{k: v for k, v in given.items() if v is not None})
    for i, block in enumerate(cfg.blocks):
        sizes = {"identities": getattr(args, f"{block.name}_identities", None),
                 "steps": getattr(args, f"{block.name}_steps", None)}
        cfg.blocks[i] = dataclasses.replace(block, **{k: v for k, v in sizes.items() if v is not None})
    if args.mirror is not None:
        cfg.train = {**cfg.train, "mirror": args.mirror}
    return cfg


def bundle(cfg, checkpoint: Path, out: Path) -> None:
    """The checkpoint (fp16), a new-session capture of a trained identity as the demo, and the
    first three avatar subjects."""
    from app.commands import bundle as bundle_command
    from engine.recipe import NEW_SESSION
    demo = f"{cfg.avatar_ids[1]}_c{NEW_SESSION:02d}"
    args = argparse.Namespace(checkpoint=checkpoint, dataset=cfg.paths["newcaps"], capture=demo,
                              frames=DEMO_FRAMES, subjects=",".join(cfg.avatar_ids[:3]), out=out,
                              averaging=cfg.averaging, mirror=cfg.mirror)
    bundle_command.run(args)


def run(args) -> int:
    from engine.recipe import run_recipe
    cfg = recipe_from_args(args)
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{(time.perf_counter() - start) / 60:5.1f} min] {message}", flush=True)

    checkpoint, _ = run_recipe(cfg, log, tqdm_progress)
    if not args.no_bundle:
        bundle(cfg, checkpoint, args.out)
        log(f"bundled the default model into {args.out}")
    log("done")
    return 0
