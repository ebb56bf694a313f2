"""`mia export`: ONNX export of a checkpoint (B+G and every F_i), verified against torch."""
from __future__ import annotations

import argparse
from pathlib import Path

from app.commands.reading import add_reading_options


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (checked against torch with onnxruntime)")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True, help="export folder (replaced atomically)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs error allowed vs torch")
    add_reading_options(p, why="; baked into shape.onnx")
    return p


def run(args) -> int:
    from engine.io.checkpoint import load_checkpoint
    from engine.runtime.averaging import averaging_for
    from engine.runtime.export import export_onnx
    ckpt = load_checkpoint(args.checkpoint)
    averaging = averaging_for(ckpt.extra, args.averaging, args.mirror)
    manifest = export_onnx(ckpt, args.out, tolerance=args.tolerance, averaging=averaging)
    errors = manifest["max_abs_error"]
    print(f"exported {args.checkpoint} to {args.out.resolve()} ({manifest['exporter']} exporter, "
          f"opset {manifest['opset']}, test-time reading: {averaging.describe()})")
    print(f"max abs error vs torch: embedding {errors['embedding']:.2e}, mesh {errors['mesh']:.2e} mm")
    for name, err in errors["code"].items():
        print(f"  code of {name}: {err:.2e}")
    return 0
