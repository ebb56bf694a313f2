"""`mia bundle`: package a trained model with a demo capture and subjects as the app's shipped defaults.

Writes (atomically, each file) into OUT (default resources/):
    default_model.pt          the checkpoint with fp16 weights (small enough to commit) and the
                              test-time averaging it recommends (--averaging)
    demo_capture/             the first --frames frames of one capture, with its ground truth
    subjects/<id>/            neutral.obj (+ avatar/avatar.pt, albedo.png) of the chosen subjects
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from app.commands.reading import add_reading_options


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("bundle", help="package a model, a demo capture and subjects as shipped defaults")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("dataset", type=Path, help="the dataset folder the model was trained on")
    p.add_argument("--capture", required=True, help="capture name under DATASET/captures for the demo")
    p.add_argument("--frames", type=int, default=90, help="frames of the demo capture to keep")
    p.add_argument("--subjects", default="", help="comma-separated subject ids to ship (neutral + avatar)")
    p.add_argument("--out", type=Path, default=Path("resources"))
    add_reading_options(p, copies=16, mirror=True, why="; what the shipped model recommends")
    return p


def trim_capture(src: Path, dst: Path, frames: int) -> Path:
    from engine.io.capture_schema import CaptureMeta
    from engine.io.capture_reader import open_capture
    from engine.io.capture_writer import write_capture
    with open_capture(src) as cap:
        n = min(frames, len(cap))
        meta = CaptureMeta.from_dict({**cap.meta.to_dict(), "frame_count": n})
        arrays = {}
        names = ["meshes", "codes", "expressions", "timestamps", "visibility", "head_pose", "blendshapes", "gaze"]
        if cap.compact_meshes is not None:
            names.remove("meshes")  # compact ground truth recomputes them: ~90 KB a frame saved
        for name in names:
            a = getattr(cap, name)
            if a is not None:
                arrays[name] = a[:n]
        import numpy as np
        images = np.stack([cap.frame(i) for i in range(n)])
    return write_capture(dst, meta, images, overwrite=dst.exists(), **arrays)


def run(args) -> int:
    from engine.io.checkpoint import load_checkpoint, save_checkpoint
    from engine.errors import ConfigError
    from engine.runtime.averaging import EXTRA_KEY, AveragingConfig
    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.build_model()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    shipped = set(ckpt.identities) | set(filter(None, args.subjects.split(",")))
    subjects = {k: v for k, v in ckpt.subjects.items() if k in shipped}  # not every training face: MBs
    save_checkpoint(out / "default_model.pt", model, topology=ckpt.topology, template=ckpt.template,
                    identities=ckpt.identities, subjects=subjects, kind=ckpt.kind,
                    train_config=ckpt.train_config, provenance={**ckpt.provenance, "bundled_from": str(args.checkpoint)},
                    half=True, extra={**ckpt.extra, EXTRA_KEY: AveragingConfig(copies=args.averaging, mirror=args.mirror).to_dict()})
    src = args.dataset / "captures" / args.capture
    if not src.exists():
        raise ConfigError(f"{src}: no such capture in the dataset")
    trim_capture(src, out / "demo_capture", args.frames)
    for sid in filter(None, args.subjects.split(",")):
        s_src = args.dataset / "subjects" / sid
        if not (s_src / "neutral.obj").exists():
            raise ConfigError(f"{s_src}: subject has no neutral.obj")
        dst = out / "subjects" / sid
        tmp = dst.with_name(f".{sid}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(s_src, tmp, ignore=shutil.ignore_patterns("*.tmp*", "material*"))
        shutil.rmtree(dst, ignore_errors=True)
        tmp.rename(dst)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file() and "ict_facekit" not in f.name)
    print(f"bundled into {out} ({size / 1e6:.1f} MB besides the face model)")
    return 0
