"""`mia arkit-head`: fit the ARKit head of a checkpoint (ARKit-52 weights from B's code e) and store it.

    mia arkit-head data/model/run_wider/last.pt data/model/train data/model/train_wide \
        --out data/model/run_wider/last.pt

B runs over every frame of the synthetic DATASETs (folders of captures with blendshapes.npy, or
meshes.npy to fit), a small MLP from e to the person's ARKit weights is trained (``--method ridge``:
a ridge regression on e and e² in closed form, its strength cross-validated over identities; on
untrained identities it shrinks blinks too much, docs/arkit.md), and the checkpoint is written with
the head as ``extra["arkit_head"]`` through a temporary file and a rename (``--out`` may be the
input itself). Minutes for 1,600 captures of 32 frames at 64 px on a CPU. engine.output.head has the
method; `mia stream` and `mia blendshapes` use the head from then on.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import MiaError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("arkit-head", help="fit a checkpoint's ARKit head (weights from the expression code e) "
                                          "on synthetic ground truth and write the checkpoint with it")
    p.add_argument("checkpoint", type=Path, help="a MIA checkpoint")
    p.add_argument("datasets", type=Path, nargs="+", metavar="DATASET",
                   help="synthetic dataset folders (captures with blendshapes.npy or meshes.npy)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (may be CHECKPOINT itself)")
    p.add_argument("--method", choices=("mlp", "ridge"), default="mlp",
                   help="an MLP on e (default) or a ridge regression on e (and e², --features)")
    p.add_argument("--epochs", type=int, default=20, help="MLP: passes over the frames (default 20)")
    p.add_argument("--hidden", type=int, default=256, help="MLP: width of its two hidden layers (default 256)")
    p.add_argument("--seed", type=int, default=0, help="MLP: initialisation and shuffling seed")
    p.add_argument("--features", choices=("linear", "quadratic"), default="quadratic",
                   help="ridge: regress on e, or on e and its square (default)")
    p.add_argument("--ridge", type=float, nargs="+", metavar="R",
                   help="ridge: strengths to choose from by cross-validation over identities "
                        "(default 0.1 1 10 100 1000)")
    p.add_argument("--cache", type=Path, help="an .npz keeping the codes per capture (a rerun on the same "
                                              "backbone skips B)")
    p.add_argument("--threads", type=int, help="torch threads (default: the studio's)")
    return p


def run(args) -> int:
    from app.commands.driving import default_threads
    from app.commands.progress import tqdm_progress
    if args.threads is not None and args.threads < 1:
        raise MiaError("--threads must be at least 1")
    if args.epochs < 1 or args.hidden < 1:
        raise MiaError("--epochs and --hidden must be at least 1")
    if args.ridge is not None and not all(r > 0 for r in args.ridge):
        raise MiaError(f"--ridge {args.ridge}: expected positive numbers")
    if not args.checkpoint.is_file():
        raise MiaError(f"{args.checkpoint}: no such checkpoint file")
    for d in args.datasets:
        if not d.is_dir():
            raise MiaError(f"{d}: no such dataset folder (expected a folder of synthetic captures)")
    if args.out.is_dir():
        raise MiaError(f"--out {args.out}: is a folder; expected a checkpoint file name")
    import torch

    from engine.output.head import DEFAULT_RIDGES, fit_arkit_head
    torch.set_num_threads(args.threads or default_threads())
    with tqdm_progress("ARKit head", "step") as progress:
        head = fit_arkit_head(args.checkpoint, args.datasets, args.out, method=args.method, epochs=args.epochs,
                              hidden=args.hidden, seed=args.seed, features_kind=args.features,
                              ridges=tuple(args.ridge or DEFAULT_RIDGES), progress=progress, cache=args.cache)
    info = head.info
    if info["method"] == "mlp":
        how = f"MLP {head.embedding_dim}-{info['hidden']}-{info['hidden']}-52, {info['epochs']} epochs ({info['loss']})"
    else:
        cv = ", ".join(f"{k:g}: {v:.4f}" for k, v in info.get("cv_mae", {}).items())
        how = f"ridge on {head.features} features, strength {info['ridge']:g}" + (
            f" (cross-validated MAE over unseen identities: {cv})" if cv else "")
    print(f"fitted an ARKit head ({how}) on {info['frames']} frames of {info['identities']} identities "
          f"({info['captures']} captures; {info['skipped']} without ground truth skipped)")
    print(f"wrote {args.out}")
    return 0
