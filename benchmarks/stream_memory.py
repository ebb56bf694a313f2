"""Memory of a long stream: RSS growth over 5,000 frames through engine.runtime.inference (target < 50 MB).

A demo or a live session runs for hours; anything kept per frame (latency histories, frame
caches, autograd graphs, decoded video buffers) shows up here as growth. The stream is the shipped
demo capture played in a loop (CaptureSource, seeking back at its end) into the shipped model
with a subject and two retarget targets, as the studio drives it. RSS is read from
/proc/self/status after a warm-up (allocators and caches settle), then every 500 frames.

    .venv/bin/python benchmarks/stream_memory.py [--frames 5000] [--backend torch|onnx]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.runtime.inference import InferenceEngine  # noqa: E402
from engine.runtime.sources import CaptureSource  # noqa: E402

LIMIT_MB = 50.0
WARMUP = 200


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=5000)
    ap.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "resources" / "default_model.pt")
    ap.add_argument("--capture", type=Path, default=ROOT / "resources" / "demo_capture")
    args = ap.parse_args()

    engine = InferenceEngine(args.checkpoint, backend=args.backend, threads=2)
    subjects = engine.subjects
    engine.set_subject(subjects[0])
    for name in subjects[1:3]:
        engine.add_target(name)
    source = CaptureSource(args.capture)
    base = None
    print(f"{args.frames} frames of {source.name} ({len(source)} frames, looped) into "
          f"{args.checkpoint.name} ({args.backend}); subject {subjects[0]}, targets {subjects[1:3]}")
    for k in range(WARMUP + args.frames):
        frame = source.read()
        if frame is None:
            source.seek(0)
            frame = source.read()
        engine(frame.images)
        if k + 1 == WARMUP:
            base = rss_mb()
            print(f"after {WARMUP} warm-up frames: RSS {base:.1f} MB")
        elif k + 1 > WARMUP and (k + 1 - WARMUP) % 500 == 0:
            print(f"  frame {k + 1 - WARMUP:5d}: RSS {rss_mb():.1f} MB (+{rss_mb() - base:.1f})")
    source.close()
    growth = rss_mb() - base
    verdict = "meets" if growth < LIMIT_MB else "MISSES"
    print(f"RSS growth over {args.frames} frames: {growth:.1f} MB ({verdict} the < {LIMIT_MB:.0f} MB "
          f"target; {growth / LIMIT_MB:.2f} of it)")
    return 0 if growth < LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
