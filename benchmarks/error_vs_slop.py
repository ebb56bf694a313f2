"""Per-capture error ratios beside how far the head sat from the headset's nominal seat.

Why: on the stage-2 model the held-out captures that failed were not one person or one headset
but the sessions with the largest head-in-headset offsets (docs/results.md, "Why stage 3"); this
prints that evidence from any evaluation's results.json (`mia eval ... --out DIR` or the recipe's
<run>/eval/<world>/results.json), so a new model can be checked against it.

    .venv/bin/python benchmarks/error_vs_slop.py data/model/run_wide/eval/heldout/results.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def head_offset(capture: Path) -> tuple[np.ndarray, float]:
    """Mean head-in-headset translation (mm) and rotation angle (degrees) over the capture."""
    pose = np.load(capture / "head_pose.npy", allow_pickle=False).mean(0)
    cos = np.clip((np.trace(pose[:3, :3]) - 1) / 2, -1.0, 1.0)
    return pose[:3, 3], float(np.degrees(np.arccos(cos)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", type=Path, nargs="+", help="results.json of an evaluation")
    args = p.parse_args(argv)
    rows = []
    for path in args.results:
        for c in json.loads(path.read_text())["captures"]:
            shape, base = c["mean"]["shape"], c["mean"]["baseline"]
            t, angle = head_offset(Path(c["path"]))
            rows.append((c["capture"], *(shape[r] / base[r] for r in ("face", "mouth", "eyes")), *t, angle))
    print("| Capture | Face ratio | Mouth ratio | Eyes ratio | head x | head y | head z (mm) | rotation (deg) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, face, mouth, eyes, x, y, z, angle in rows:
        print(f"| {name} | {face:.2f} | {mouth:.2f} | {eyes:.2f} | {x:+.1f} | {y:+.1f} | {z:+.1f} | {angle:.1f} |")
    a = np.array([r[1:] for r in rows], dtype=np.float64)
    dist = np.linalg.norm(a[:, 3:6], axis=1)
    for col, name in ((0, "face"), (1, "mouth")):
        print(f"\ncorrelation of the {name} ratio with: head z {np.corrcoef(a[:, col], a[:, 5])[0, 1]:+.2f}, "
              f"|offset| {np.corrcoef(a[:, col], dist)[0, 1]:+.2f}, rotation {np.corrcoef(a[:, col], a[:, 6])[0, 1]:+.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
