"""Scan registration robustness: whole-head scans and front crops at random poses, several identities.

Every scan is a synthetic identity's outer skin (``engine/registration/synthetic.py``), re-triangulated
on a rotated grid so no vertex of the model topology is left, in mm, cm, m or inches in turn, at a
random rotation and translation; each kind uses its own identities. A registration counts as
- ok: written, mean error against the true neutral <= 0.5 mm;
- off: written, 0.5-2 mm;
- WRONG: written with a mean error > 2 mm and no warning (a silently wrong result: must never happen);
- warned: written with a warning; refused: a RegistrationError/MeshError with a message.
Run: .venv/bin/python benchmarks/register_robustness.py [--scans 20] [--cell 2.5]
"""
from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from engine.errors import MiaError
from engine.facemodel import load_face_model
from engine.registration import register_scan
from engine.registration.synthetic import ScanSpec, make_scan
from engine.registration.template import load_template
from engine.synth.config import IdentityConfig
from engine.synth.identity import make_identity

UNITS = ("mm", "cm", "m", "in")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=20, help="scans per kind")
    parser.add_argument("--cell", type=float, default=2.5, help="re-triangulation grid (mm)")
    parser.add_argument("--noise", type=float, default=0.0, help="Gaussian noise on the scan vertices (mm)")
    args = parser.parse_args()
    model = load_face_model()
    load_template()
    for kind, crop, base in (("whole head", False, 500), ("front crop", True, 600)):
        outcome, errs, secs = Counter(), [], []
        for i in range(args.scans):
            weights = make_identity(model, base + i, 3, IdentityConfig()).shape_weights
            spec = ScanSpec(remesh="retriangulate", cell_mm=args.cell, crop_front=crop, noise_mm=args.noise,
                            units=UNITS[i % 4], seed=1000 + i)
            verts, faces, truth = make_scan(model, weights, spec)
            start = time.perf_counter()
            try:
                result = register_scan(verts, faces)
            except MiaError as error:
                secs.append(time.perf_counter() - start)
                outcome["refused"] += 1
                print(f"{kind} {i}: {len(verts):,} vertices, REFUSED: {error}")
                continue
            secs.append(time.perf_counter() - start)
            err = np.linalg.norm(result.verts - truth, axis=1)
            warned = bool(result.report.warnings)
            label = ("ok" if err.mean() <= 0.5 else "off" if err.mean() <= 2.0 else "warned" if warned else "WRONG")
            outcome[label] += 1
            outcome["with a warning"] += warned
            outcome["units wrong"] += result.report.units != spec.units
            errs.append(err.mean())
            print(f"{kind} {i}: {len(verts):,} vertices, {spec.units}: mean {err.mean():.3f} mm, "
                  f"p95 {np.percentile(err, 95):.3f} mm, units {result.report.units}, "
                  f"{len(result.report.warnings)} warning(s), {secs[-1]:.1f} s")
        print(f"== {kind}: {dict(outcome)}; mean error {np.mean(errs):.3f} mm (worst {np.max(errs):.3f}); "
              f"median {np.median(secs):.1f} s, max {np.max(secs):.1f} s\n")


if __name__ == "__main__":
    main()
