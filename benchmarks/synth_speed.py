"""Synthetic HMC world speed: frame-triplets (three cameras + ground truth) per second.

Target: >= 50 triplets/s at 96x96 on a 2-core CPU. Run: .venv/bin/python benchmarks/synth_speed.py
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=200)
    args = ap.parse_args()
    print(f"{'size':>8} {'ss':>3} {'triplets/s':>11} {'ms/triplet':>11} {'vs target':>10}")
    for size, ss in ((96, 1), (96, 2), (192, 1)):
        fps, info = measure(size, args.frames, ss)
        ratio = f"{fps / TARGET_96:.2f}x" if (size, ss) == (96, 1) else ""
        print(f"{size:>5}x{size:<3}{ss:>3} {fps:>11.1f} {info['ms_per_triplet']:>11.2f} {ratio:>10}")


if __name__ == "__main__":
    main()
