"""3D augmentation layer speed: milliseconds per training sample (three camera images) on this CPU.

It runs inside the training data pipeline, so the target is <= 5 ms per camera image at 64-96 px on
a 2-core CPU. Two paths are timed: the layer's own source depth pass for vertex visibility, and the
stored per-camera visibility of a capture (which saves that render). Wall and CPU time are both
printed: on a shared machine wall time also counts other processes. ``--figure`` also writes the
Fig. 5-like example: first row the HMC images of the three cameras, then augmented ones.

    .venv/bin/python benchmarks/augment_speed.py [--sizes 64 96] [--samples 60] [--figure docs/augmentation.png]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.io.capture_reader import open_capture  # noqa: E402
from engine.facemodel import load_face_model  # noqa: E402
from engine.training.augment import AugmentConfig, Augmenter  # noqa: E402
from engine.camera import camera_from_calib  # noqa: E402
from engine.synth.config import SynthConfig  # noqa: E402
from engine.synth.generate import generate_dataset  # noqa: E402

TARGET_MS = 5.0


def load_frames(path: Path) -> list[tuple]:
    """Every frame of a capture as (images, mesh, cameras, visibility)."""
    with open_capture(path) as cap:
        return [(cap.frame(t), np.asarray(cap.meshes[t]),
                 [camera_from_calib(c, cap.head_pose[t]) for c in cap.meta.cameras],
                 np.asarray(cap.visibility[t], bool)) for t in range(len(cap))]


def measure(aug: Augmenter, frames: list[tuple], samples: int, stored_visibility: bool) -> tuple[float, float]:
    """Median (wall, cpu) ms per sample over repeats of ``samples`` augmented samples."""
    rng = np.random.default_rng(0)
    for images, mesh, cams, vis in frames[:3]:
        aug(images, mesh, cams, rng, vis if stored_visibility else None)
    walls, cpus = [], []
    for _ in range(5):
        w0, c0 = time.perf_counter(), time.process_time()
        for k in range(samples):
            images, mesh, cams, vis = frames[k % len(frames)]
            aug(images, mesh, cams, rng, vis if stored_visibility else None)
        walls.append((time.perf_counter() - w0) / samples * 1e3)
        cpus.append((time.process_time() - c0) / samples * 1e3)
    return float(np.median(walls)), float(np.median(cpus))


def figure(path: Path, frames: list[tuple], faces: np.ndarray, size: int, rows: int = 2, seed: int = 5) -> None:
    """Fig. 5 of the paper: source images of the three cameras, then ``rows`` augmented rows."""
    aug = Augmenter(AugmentConfig(probability=1.0), faces, size)
    rng = np.random.default_rng(seed)
    images, mesh, cams, _ = frames[len(frames) // 3]
    grid = [images] + [aug(images, mesh, cams, rng) for _ in range(rows)]
    pad = 2
    tile = np.full((len(grid) * (size + pad) - pad, 3 * (size + pad) - pad), 255, np.uint8)
    for r, row in enumerate(grid):
        for c, img in enumerate(row):
            tile[r * (size + pad):r * (size + pad) + size, c * (size + pad):c * (size + pad) + size] = img
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.resize(tile, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96])
    ap.add_argument("--samples", type=int, default=60, help="samples per timed repeat")
    ap.add_argument("--figure", type=Path, help="also write the example figure here (at the largest size)")
    args = ap.parse_args()
    faces = load_face_model().topology.faces
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            cfg = SynthConfig(identities=1, captures_per_identity=1, frames_per_capture=30, image_size=size)
            frames = load_frames(generate_dataset(Path(tmp) / str(size), cfg)[0])
            aug = Augmenter(AugmentConfig(probability=1.0), faces, size)
            for stored in (False, True):
                wall, cpu = measure(aug, frames, args.samples, stored)
                how = "stored visibility" if stored else "own depth pass"
                print(f"{size:3d} px, {how:17s}: {wall:6.2f} ms/sample wall, {cpu:6.2f} ms/sample CPU, "
                      f"{cpu / 3:5.2f} ms/camera image CPU (target <= {TARGET_MS:.0f})")
            aug.release()
            if args.figure is not None and size == max(args.sizes):
                figure(args.figure, frames, faces, size)


if __name__ == "__main__":
    main()
