"""Per-frame latency of MIA (B + G, batch 1) on CPU, against the machine's own compute floor.

Backends: torch eager, torch.compile (``--compile``) and onnxruntime, each on the model input
alone, plus the whole streaming step (InferenceEngine: preprocess, B + G, F_i) for torch and onnx.
The floor is the model's FLOP count (torch.utils.flop_counter) divided by the float32 matmul rate
this machine reaches with the same threads: no implementation of this network can beat it, so the
ratio says how much of the time is overhead rather than arithmetic. Target: <= 5 ms per frame.

    .venv/bin/python benchmarks/inference_speed.py [--checkpoint PATH] [--compile] [--frames 200]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.io.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from engine.runtime.export import OnnxModel, export_onnx, shape_graph  # noqa: E402
from app.commands.reading import add_reading_options  # noqa: E402
from engine.runtime.averaging import averaging_for  # noqa: E402
from engine.runtime.inference import InferenceEngine  # noqa: E402

DEFAULT_MODEL = ROOT / "resources" / "default_model.pt"
TARGET_MS = 5.0


def fresh_checkpoint(folder: Path) -> Path:
    """An untrained ModelConfig() model on the face-model topology (its timing equals a trained one's)."""
    from engine.facemodel import load_face_model
    from engine.mia.config import ModelConfig
    from engine.mia.model import MIA
    fm = load_face_model()
    template = fm.to_topology(fm.neutral).astype(np.float32)
    model = MIA(ModelConfig(), torch.from_numpy(template))
    model.add_identity("demo", torch.randn(64, model.cfg.latent_dim))
    return save_checkpoint(folder / "fresh.pt", model, topology=fm.topology.describe(), template=template,
                           identities={"demo": {"neutral": template}})


def timed(fn: Callable[[], object], frames: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        fn()
    times = np.empty(frames)
    for k in range(frames):
        t = time.perf_counter()
        fn()
        times[k] = time.perf_counter() - t
    return times * 1e3


def matmul_peak(threads: int, n: int = 1024, repeats: int = 10) -> float:
    """Best float32 matmul rate (FLOP/s) with ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = min(timed(lambda: a @ b, repeats, 0)) / 1e3
    return 2 * n ** 3 / best


def count_flops(graph: torch.nn.Module, images: torch.Tensor, neutral: torch.Tensor) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        graph(images, neutral)
    return int(counter.get_total_flops())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_MODEL if DEFAULT_MODEL.exists() else None)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (needs a C++ compiler)")
    add_reading_options(p, copies=1, mirror=False, why=" in every row: one read, what live paths use; the shipped "
                        "model recommends 16 copies + mirror for offline reading")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="mia-bench-") as tmp:
        path = args.checkpoint or fresh_checkpoint(Path(tmp))
        ckpt = load_checkpoint(path)
        model = ckpt.build_model()
        averaging = averaging_for(ckpt.extra, args.averaging, args.mirror)
        graph = shape_graph(model, averaging, ckpt.topology).eval()  # type: ignore[arg-type]
        s = ckpt.model_config.image_size
        rng = np.random.default_rng(0)
        images_np = rng.uniform(0, 255, (1, 3, s, s)).astype(np.float32)
        neutral_np = ckpt.template[None].copy()
        images, neutral = torch.from_numpy(images_np), torch.from_numpy(neutral_np)
        print(f"model: {path if args.checkpoint else 'fresh ModelConfig() (untrained)'}; image {s}x{s}, "
              f"{ckpt.topology['vertex_count']} vertices; parameters {model.parameter_count()}")
        print(f"threads: {args.threads} (torch.set_num_threads, onnxruntime intra_op_num_threads); "
              f"{args.frames} frames after {args.warmup} warm-up")

        def eager() -> None:
            with torch.inference_mode():
                graph(images, neutral)

        rows = {"torch eager (B+G)": timed(eager, args.frames, args.warmup)}
        if args.compile:
            compiled = torch.compile(graph)

            def run_compiled() -> None:
                with torch.inference_mode():
                    compiled(images, neutral)
            try:
                rows["torch.compile (B+G)"] = timed(run_compiled, args.frames, args.warmup)
            except Exception as err:  # inductor needs a working compiler toolchain
                print(f"torch.compile skipped: {type(err).__name__}: {str(err)[:200]}")
        onnx_dir = Path(tmp) / "onnx"
        export_onnx(ckpt, onnx_dir, averaging=averaging)
        onnx = OnnxModel(onnx_dir, threads=args.threads)
        rows["onnxruntime (B+G)"] = timed(lambda: onnx.shape(images_np, neutral_np), args.frames, args.warmup)
        frame = rng.integers(0, 256, (3, 2 * s, 2 * s), dtype=np.uint8)
        for backend in ("torch", "onnx"):
            engine = InferenceEngine(path, backend=backend, threads=args.threads, onnx_dir=onnx_dir,
                                     averaging=averaging.copies, mirror=averaging.mirror)
            name = next(iter(ckpt.identities), None) or next(iter(ckpt.subjects), None)
            if name is None:
                engine.set_subject("template", ckpt.template)
            else:
                engine.set_subject(name)
            rows[f"engine step, {backend} (preprocess+B+G+F)"] = timed(lambda: engine(frame), args.frames, args.warmup)

        flops = count_flops(graph, images, neutral)
        peak = matmul_peak(args.threads)
        floor_ms = flops / peak * 1e3
    eager_median = float(np.median(rows["torch eager (B+G)"]))
    print(f"\ntest-time reading: {averaging.describe()} a frame")
    print(f"FLOPs per frame (B+G): {flops / 1e6:.1f} MFLOP; float32 matmul peak with {args.threads} threads: "
          f"{peak / 1e9:.1f} GFLOP/s; floor {floor_ms:.3f} ms\n")
    print(f"| {'backend':42s} | median ms | p90 ms | x floor | x eager |")
    print(f"|{'-' * 44}|----------:|-------:|--------:|--------:|")
    for label, t in rows.items():
        med, p90 = float(np.median(t)), float(np.percentile(t, 90))
        print(f"| {label:42s} | {med:9.3f} | {p90:6.3f} | {med / floor_ms:7.1f} | {med / eager_median:7.2f} |")
    best = min(float(np.median(t)) for t in rows.values())
    print(f"\nbest median {best:.3f} ms per frame: {'within' if best <= TARGET_MS else 'ABOVE'} the "
          f"{TARGET_MS:g} ms target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
