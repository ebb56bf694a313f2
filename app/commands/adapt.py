"""`mia adapt`: add a new subject to a trained MIA by training only its adaptation layer F_new
(B and G stay frozen; the paper's Table 3)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("adapt", help="add a new subject to a trained MIA (trains only its F)")
    p.add_argument("checkpoint", type=Path, help="trained MIA checkpoint (e.g. runs/mia/last.pt)")
    p.add_argument("dataset", type=Path, help="dataset folder or capture folder with the subject")
    p.add_argument("--subject", required=True, help="subject id of the new identity")
    p.add_argument("--out", type=Path, required=True, help="new checkpoint file to write")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--neutral", type=Path, help="neutral mesh file (default: the dataset's "
                   "subjects/<id>/neutral.obj)")
    p.add_argument("--no-augment", action="store_true", help="turn off the 3D augmentation layer")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from engine.training.adapt import AdaptConfig, adapt
    from engine.io.mesh import guess_units, load_mesh
    cfg = AdaptConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      num_workers=args.workers, device=args.device,
                      augment={"enabled": False} if args.no_augment else {})
    neutral = None
    if args.neutral:
        verts, _ = load_mesh(args.neutral)
        neutral = verts * guess_units(verts)[1]
    path = adapt(args.checkpoint, args.dataset, args.subject, args.out, cfg, neutral=neutral,
                 show_bar=not args.quiet)
    print(f"added {args.subject!r} after {cfg.steps} steps; checkpoint {path.resolve()}")
    return 0
