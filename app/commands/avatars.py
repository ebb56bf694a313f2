"""`mia avatars`: train every subject's person-specific avatar D_i and write its captures' codes."""
from __future__ import annotations

import argparse
from pathlib import Path

from app.commands.progress import tqdm_progress


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("avatars", help="train per-identity avatar decoders and write codes.npy into their captures")
    p.add_argument("dataset", type=Path, help="dataset folder made by `mia synth` (finished identities are skipped)")
    p.add_argument("--steps", type=int,
                   help="training steps per identity (default 600: ~20 s of CPU at a 64 px texture)")
    p.add_argument("--texture-size", type=int, help="avatar texture size in texels, a power of two (default 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="identities trained in parallel processes")
    p.add_argument("--subjects", help="comma-separated subject ids (default: every subject with captures)")
    return p


def run(args) -> int:
    from engine.avatar import AvatarConfig
    from engine.avatar_train import DEFAULT_STEPS, train_dataset_avatars
    cfg = AvatarConfig() if args.texture_size is None else AvatarConfig(texture_size=args.texture_size)
    steps = DEFAULT_STEPS if args.steps is None else args.steps
    with tqdm_progress("avatars", "step") as progress:
        avatars = train_dataset_avatars(args.dataset, cfg, steps, progress=progress, seed=args.seed, jobs=args.jobs,
                                        subjects=None if not args.subjects else args.subjects.split(","))
    for subject_id, path in avatars.items():
        print(f"{subject_id}: {path}")
    print(f"{len(avatars)} avatars ready in {args.dataset.resolve()}")
    return 0
