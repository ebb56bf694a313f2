"""`mia register`: a neutral face scan of any topology, units and pose -> a neutral in the model topology.

Writes the registered neutral (``--out``, .obj or .ply) and its quality report beside it
(``<stem>.registration.json``: per-vertex residuals, mean, 95th percentile, coverage, warnings).
The result is then driven like any neutral (shape only, or with an avatar after ``mia adapt``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("register", help="register a neutral face scan (any mesh) to the model topology")
    p.add_argument("scan", type=Path, help="scan mesh file (OBJ, PLY, STL, GLB, OFF)")
    p.add_argument("--out", type=Path, required=True, help="registered neutral to write (.obj or .ply)")
    p.add_argument("--units", choices=("mm", "cm", "m", "in"), help="the scan's units (default: judged from "
                   "its size)")
    p.add_argument("--landmarks", type=Path, help="JSON of named points on the scan (nose_tip, "
                   "left_eye_outer, ...; at least 3) that fix its pose")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from app.commands.progress import tqdm_progress
    from engine.registration import register_file, report_path
    if args.quiet:
        result = register_file(args.scan, args.out, args.units, args.landmarks)
    else:
        with tqdm_progress("register", "stage") as progress:
            result = register_file(args.scan, args.out, args.units, args.landmarks, progress=progress)
    report = result.report
    for warning in report.warnings:
        print(f"mia register: warning: {warning}", file=sys.stderr)
    print(f"registered {args.scan} ({report.scan_vertices:,} vertices, {report.units}, {report.units_note}) "
          f"in {report.seconds:.1f} s: {report.summary()}")
    print(f"wrote {Path(args.out).resolve()} and {report_path(args.out).resolve()}")
    return 0
