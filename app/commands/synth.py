"""`mia synth`: generate a synthetic multi-identity HMC dataset (resumable, deterministic)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.commands.progress import tqdm_progress


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("synth", help="generate K identities x captures of synthetic HMC data")
    p.add_argument("out", type=Path, help="dataset folder (created; an existing one is resumed)")
    p.add_argument("--identities", type=int, default=8)
    p.add_argument("--captures", type=int, default=2, help="captures per identity (headset/appearance/environment variants)")
    p.add_argument("--frames", type=int, default=300, help="frames per capture")
    p.add_argument("--size", type=int, default=96, help="image size in pixels (square)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--first-identity", type=int, default=0,
                   help="number of the first identity (extend a world of the same seed with new people)")
    p.add_argument("--storage", choices=("ffv1", "png"), default="ffv1")
    p.add_argument("--supersample", type=int, default=1, help="render at k x size for anti-aliasing")
    p.add_argument("--compact", action="store_true",
                   help="store ground truth as coefficients (~250 B a frame) instead of meshes.npy (~90 KB)")
    p.add_argument("--jobs", type=int, default=1, help="captures rendered in parallel processes")
    p.add_argument("--config", type=Path, help="JSON file with a full SynthConfig (overrides the options above)")
    return p


def run(args) -> int:
    from engine.errors import ConfigError
    from engine.synth.config import SynthConfig
    from engine.synth.generate import generate_dataset
    if args.config:
        try:
            cfg = SynthConfig.from_dict(json.loads(args.config.read_text()))
        except (OSError, ValueError, TypeError) as err:
            raise ConfigError(f"{args.config}: not a valid synth config ({err})") from err
    else:
        cfg = SynthConfig(identities=args.identities, captures_per_identity=args.captures,
                          frames_per_capture=args.frames, image_size=args.size, seed=args.seed,
                          storage=args.storage, supersample=args.supersample,
                          store_meshes=not args.compact, first_identity=args.first_identity)
    with tqdm_progress("synth", "frame") as progress:
        captures = generate_dataset(args.out, cfg, progress=progress, jobs=args.jobs)
    print(f"wrote {len(captures)} captures of {cfg.frames_per_capture} frames to {args.out.resolve()}")
    return 0
