"""`mia train`: train MIA (or the person-specific baseline) on a dataset of HMC captures.

Multi-GPU / multi-process: start the same command under torchrun, e.g.
    torchrun --nproc_per_node 2 -m app.cli train DATASET --out runs/mia
Every process trains on its own shard of each step's batch (the effective batch is
--batch-size x processes); only rank 0 writes the checkpoint and log.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

EPILOG = """\
writes DIR/last.pt (resumable checkpoint), DIR/log.csv and DIR/config.json.
distributed (one process per GPU, or gloo on CPU):
  torchrun --nproc_per_node 2 -m app.cli train DATASET --out DIR ...
  the batch size is per process; only rank 0 writes files.
stop with Ctrl-C: a checkpoint is written; --resume continues to the same result.
--resume uses the run's saved config; only --steps, --workers, --checkpoint-every,
--log-every, --device and --compile may change."""

MODEL_SIZES = ("tiny", "default", "paper")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train MIA (or the PS baseline) on HMC captures",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path, help="dataset folder (searched for captures) or one capture")
    p.add_argument("--out", type=Path, required=True, help="run folder for last.pt, log.csv")
    p.add_argument("--config", type=Path, help="JSON TrainConfig (options below override it)")
    p.add_argument("--model", choices=MODEL_SIZES, help="network size preset (default: default)")
    p.add_argument("--size", type=int, help="image size in pixels the HMC frames are resized to")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int, help="per process (paper: 32)")
    p.add_argument("--lr", type=float, help="initial learning rate (paper: 1e-3)")
    p.add_argument("--lr-step", type=int, help="decay x0.8 every N steps (default: steps / 10)")
    p.add_argument("--subjects", help="comma-separated subject ids to train on (default: all)")
    p.add_argument("--captures", help="comma-separated capture folder names (default: all)")
    p.add_argument("--val-fraction", type=float, help="hold out the last part of each capture")
    p.add_argument("--kind", choices=("mia", "ps"), help="mia, or ps: the person-specific baseline")
    p.add_argument("--subject", help="the subject of a --kind ps run")
    p.add_argument("--no-augment", action="store_true", help="turn off the 3D augmentation layer")
    p.add_argument("--no-jitter", action="store_true", help="turn off the 2-D per-camera image jitter")
    p.add_argument("--mirror", type=float, metavar="P",
                   help="probability of training on a sample's mirror image (eye cameras swapped, images "
                        "flipped, meshes mirrored; default 0)")
    p.add_argument("--workers", type=int, help="DataLoader worker processes")
    p.add_argument("--seed", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--log-every", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--resume", action="store_true", help="continue DIR/last.pt")
    p.add_argument("--init-from", type=Path,
                   help="start a new run from this MIA checkpoint's weights (fresh optimiser and schedule)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [s for s in text.split(",") if s]


def config_from_args(args) -> "TrainConfig":  # noqa: F821 (engine imported lazily)
    from engine.errors import ConfigError
    from engine.mia.config import ModelConfig
    from engine.training.config import TrainConfig
    data: dict = {}
    if args.config:
        try:
            data = json.loads(args.config.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"{args.config}: not a readable JSON train config ({err})") from err
    model = dict(data.pop("model", {}))
    if args.model:
        preset = {"tiny": ModelConfig.tiny, "default": ModelConfig, "paper": ModelConfig.paper}
        model = {**preset[args.model]().to_dict(), **({"vertex_count": model["vertex_count"]}
                                                    if "vertex_count" in model else {})}
    if args.size:
        model["image_size"] = args.size
    given = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
             "lr_step": args.lr_step, "subjects": _csv(args.subjects),
             "captures": _csv(args.captures), "val_fraction": args.val_fraction,
             "kind": args.kind, "ps_subject": args.subject, "num_workers": args.workers,
             "seed": args.seed, "checkpoint_every": args.checkpoint_every,
             "log_every": args.log_every, "device": args.device, "mirror": args.mirror,
             "init_from": None if args.init_from is None else str(args.init_from)}
    data.update({k: v for k, v in given.items() if v is not None})
    if args.compile:
        data["compile"] = True
    if args.no_augment:
        data["augment"] = {**data.get("augment", {}), "enabled": False}
    if args.no_jitter:
        data["jitter"] = {**data.get("jitter", {}), "enabled": False}
    data["out_dir"] = str(args.out)
    try:
        data["model"] = ModelConfig.from_dict(model)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model config {model}: {err}") from err
    return TrainConfig.from_dict(data)


def run(args) -> int:
    from engine.training.trainer import train
    cfg = config_from_args(args)
    path = train(cfg, args.dataset, args.out, resume=args.resume, show_bar=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained {cfg.kind} for {cfg.steps} steps; checkpoint {path.resolve()}")
    return 0
