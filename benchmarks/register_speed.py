"""Scan registration speed: seconds per registration of a ~50k-vertex face scan (target < 10 s).

The scan is a synthetic identity's whole outer skin (face, scalp, neck), subdivided twice and
re-triangulated on a rotated 1.7 mm grid (~50k vertices) (so nothing of the model topology is left), in centimetres
at a random pose: the full pipeline runs (unit detection, automatic rigid search, identity fit,
non-rigid refinement, report). Prints seconds per stage-run and the error against the truth.
Run: .venv/bin/python benchmarks/register_speed.py [--runs 5] [--cell 1.7]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from engine.errors import MiaError
from engine.facemodel import load_face_model
from engine.registration import register_scan
from engine.registration.synthetic import ScanSpec, make_scan
from engine.registration.template import load_template
from engine.synth.config import IdentityConfig
from engine.synth.identity import make_identity

TARGET_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cell", type=float, default=1.7, help="re-triangulation grid (mm): sets the size")
    parser.add_argument("--units", default="cm", help="unit the scan is written in (cm and in both get tried for a "
                        "face crop, for a head in inches too: slower)")
    parser.add_argument("--first", type=int, default=0, help="first run (identity and pose seed)")
    args = parser.parse_args()
    model = load_face_model()
    load_template()  # built once per process; not part of a registration
    times, refused, warned = [], 0, 0
    for run in range(args.first, args.first + args.runs):
        weights = make_identity(model, 200 + run, 3, IdentityConfig()).shape_weights
        verts, faces, truth = make_scan(model, weights, ScanSpec(remesh="retriangulate", cell_mm=args.cell,
                                                                 subdivisions=2, units=args.units, seed=run))
        start = time.perf_counter()
        try:
            result = register_scan(verts, faces)
        except MiaError as error:
            times.append(time.perf_counter() - start)
            refused += 1
            print(f"run {run}: {len(verts):,} vertices: {times[-1]:.2f} s, REFUSED: {error}")
            continue
        times.append(time.perf_counter() - start)
        err = np.linalg.norm(result.verts - truth, axis=1)
        warned += bool(result.report.warnings)
        print(f"run {run}: {len(verts):,} vertices, {len(faces):,} triangles: {times[-1]:.2f} s "
              f"(error vs truth mean {err.mean():.3f} mm, p95 {np.percentile(err, 95):.3f} mm; "
              f"units {result.report.units}{'; WARNED' if result.report.warnings else ''})")
    median = float(np.median(times))
    print(f"refused {refused}, warned {warned} of {len(times)}")
    print(f"median {median:.2f} s per registration (target < {TARGET_S:g} s): "
          f"{'OK' if median < TARGET_S else 'SLOWER THAN TARGET'}")


if __name__ == "__main__":
    main()
