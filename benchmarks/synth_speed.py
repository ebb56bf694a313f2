"""Synthetic HMC world speed: frame-triplets (three cameras + ground truth) per second.

Two measurements:
- the renderer alone (one world, frames in a loop): target >= 50 triplets/s at 96x96;
- `mia synth` end to end at 64 px on many short captures, as the shipped-model recipe renders its
  training world (per-capture set-up, video encoding and ground truth included), with 1 and 2
  jobs: the rate that decides how much data `make model` can afford.
Measured on this 2-core machine (2026-12-03): 20.2 triplets/s with 1 job and 21.7 with 2 on the
benchmark's 8 identities (pool start-up and per-identity set-up weigh on so small a world); the
recipe's 400-identity world rendered its 25,600 triplets at 24.5/s with 2 jobs (17.5 minutes).
Per frame ~45 ms of one core: three llvmpipe draws with read-back (~80 %), vertex normals, the
sensor model; per capture ~0.5 s (albedo texture, mipmaps).
Run: .venv/bin/python benchmarks/synth_speed.py [--dataset-only]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from engine.facemodel import load_face_model
from engine.synth.config import SynthConfig
from engine.synth.generate import CaptureSpec, make_world
from engine.synth.headset import make_slop, session_poses
from engine.synth.identity import make_identity
from engine.synth.performance import make_performance

TARGET_96 = 50.0


def measure(size: int, frames: int, supersample: int = 1) -> tuple[float, dict[str, float]]:
    model = load_face_model()
    cfg = SynthConfig(image_size=size, supersample=supersample)
    world, _ = make_world(model, cfg, make_identity(model, 0, 0, cfg.identity), CaptureSpec(0, 0, "hs00"))
    rng = np.random.default_rng(0)
    perf = make_performance(model.expression_names, frames, cfg.fps, rng, cfg.performance)
    poses = session_poses(make_slop(rng, cfg.session), frames, cfg.fps, rng, cfg.session)
    for t in range(5):  # warm-up: shader compile, buffers
        world.render(perf.intents[t], perf.gaze[t], poses[t], rng)
    t0 = time.perf_counter()
    for t in range(frames):
        world.render(perf.intents[t], perf.gaze[t], poses[t], rng)
    dt = time.perf_counter() - t0
    world.renderer.release()
    return frames / dt, {"ms_per_triplet": 1000 * dt / frames}


def measure_dataset(size: int, jobs: int, identities: int = 8, frames: int = 32) -> float:
    """Triplets/s of generate_dataset on `identities` x 2 captures of `frames` frames."""
    import tempfile

    from engine.synth.generate import generate_dataset
    from engine.synth.worlds import training_world
    cfg = training_world(identities, frames, size, seed=123)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate_dataset(tmp, cfg, jobs=jobs)
        dt = time.perf_counter() - t0
    return identities * 2 * frames / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--dataset-only", action="store_true", help="only the end-to-end `mia synth` rate")
    args = ap.parse_args()
    print(f"{'mia synth, 64 px, 2 x 32-frame captures per identity':<56} {'triplets/s':>11}")
    for jobs in (1, 2):
        print(f"{f'  jobs {jobs}':<56} {measure_dataset(64, jobs):>11.1f}")
    if args.dataset_only:
        return
    print(f"{'size':>8} {'ss':>3} {'triplets/s':>11} {'ms/triplet':>11} {'vs target':>10}")
    for size, ss in ((96, 1), (96, 2), (192, 1)):
        fps, info = measure(size, args.frames, ss)
        ratio = f"{fps / TARGET_96:.2f}x" if (size, ss) == (96, 1) else ""
        print(f"{size:>5}x{size:<3}{ss:>3} {fps:>11.1f} {info['ms_per_triplet']:>11.2f} {ratio:>10}")


if __name__ == "__main__":
    main()
