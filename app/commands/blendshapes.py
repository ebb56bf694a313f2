"""`mia blendshapes`: per-frame ARKit-52 weights (and eye gaze) of a capture as CSV, for offline use.

The model drives the capture's subject (or ``--subject``); the weights come from
engine.output.weights: the checkpoint's ARKit head on B's code e, with jawOpen from the bounded fit
of each predicted mesh, or the fit alone for a checkpoint without a head (``--weights``). Where the
capture has ground truth, the true weights (the person's own ``blendshapes.npy``, else the intent
``expressions.npy``, through the same ICT->ARKit table) and the true gaze follow in ``true_*`` columns. The file is written to a temporary sibling and renamed into
place, so an interrupted run never leaves a half-written CSV under the requested name.

    mia blendshapes resources/demo_capture --out weights.csv
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from engine.errors import MiaError
from engine.io.atomic import atomic_open
from app.commands.reading import add_reading_options

GAZE_NAMES = ("leftEyeYaw", "leftEyePitch", "rightEyeYaw", "rightEyePitch")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("blendshapes", help="per-frame ARKit-52 weights of a capture as CSV (+ ground truth)")
    p.add_argument("capture", type=Path, help="a capture folder (capture.json + three camera streams)")
    p.add_argument("--out", type=Path, required=True, help="CSV file to write (replaced atomically)")
    p.add_argument("--model", type=Path, help="checkpoint (default: resources/default_model.pt)")
    p.add_argument("--subject", help="subject id or neutral mesh file (default: the capture's subject)")
    add_reading_options(p)
    p.add_argument("--threads", type=int, help="inference threads (default: the studio's, MIA_STUDIO_THREADS "
                                                 "or all cores but one)")
    p.add_argument("--batch", type=int, default=64, help="frames per forward pass")
    p.add_argument("--weights", choices=("auto", "head", "fit", "combined"), default="auto",
                   help="the checkpoint's ARKit head on e, the bounded fit of the mesh, or the head with the fit "
                        "for jawOpen (auto, the default: combined when the checkpoint has a head, else fit)")
    return p


def ground_truth(capture, to_arkit, expression_dim: int) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """(true ARKit weights (N, 52), true gaze (N, 2, 2), which file) where the capture has them."""
    weights, source = None, ""
    for name in ("blendshapes", "expressions"):
        values = getattr(capture, name)
        if values is not None and values.ndim == 2 and values.shape[1] == expression_dim:
            weights, source = to_arkit(np.asarray(values, np.float32)), f"{name}.npy"
            break
    gaze = capture.gaze
    return weights, None if gaze is None else np.asarray(gaze, np.float32), source


def run(args) -> int:
    from app.commands.driving import default_threads, model_path, resolve_subject
    from app.commands.progress import tqdm_progress
    from engine.io.capture_reader import open_capture
    from engine.output.arkit import ARKIT_NAMES

    if args.batch < 1 or (args.threads is not None and args.threads < 1):
        raise MiaError("--batch and --threads must be at least 1")
    if args.out.exists() and args.out.is_dir():
        raise MiaError(f"--out {args.out}: is a folder; expected a CSV file name")
    checkpoint = model_path(args.model)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MiaError(f"--out {args.out}: cannot create its folder ({err.strerror or err})") from None
    capture = open_capture(args.capture)
    try:
        from engine.runtime.inference import InferenceEngine
        from engine.output.weights import WeightSource
        engine = InferenceEngine(checkpoint, threads=args.threads or default_threads(), averaging=args.averaging,
                                 mirror=args.mirror)
        subject = resolve_subject(engine, args.subject or capture.meta.subject_id, args.capture)
        source = WeightSource.for_checkpoint(engine.checkpoint, args.weights)
        solver = source.solver
        n = len(capture)
        weights = np.zeros((n, len(ARKIT_NAMES)), np.float32)
        gaze = np.zeros((n, 2, 2), np.float32)
        with tqdm_progress("blendshapes", "frame") as progress:
            for start in range(0, n, args.batch):
                idx = range(start, min(n, start + args.batch))
                pred = engine.predict(np.stack([capture.frame(i) for i in idx]), subject)
                mesh = pred.mesh
                weights[idx.start:idx.stop] = source.arkit(mesh, subject.neutral, pred.embedding)
                for k, i in enumerate(idx):
                    gaze[i] = solver.gaze(mesh[k], subject.neutral)
                progress(idx.stop, n, f"subject {subject.name}")
        true_w, true_gaze, truth_file = ground_truth(capture, solver.to_arkit, solver.expression_dim)
        stamps = capture.timestamps
        times = np.asarray(stamps, np.float64) if stamps is not None else np.arange(n) / capture.meta.fps
    finally:
        capture.close()
    header = ["frame", "time_s", *ARKIT_NAMES, *GAZE_NAMES]
    columns = [np.arange(n)[:, None], times[:, None], weights, gaze.reshape(n, 4)]
    if true_w is not None:
        header += [f"true_{name}" for name in ARKIT_NAMES]
        columns.append(true_w)
    if true_gaze is not None and true_gaze.shape == (n, 2, 2):
        header += [f"true_{name}" for name in GAZE_NAMES]
        columns.append(true_gaze.reshape(n, 4))
    write_csv(args.out, header, np.concatenate([np.asarray(c, np.float64) for c in columns], axis=1))
    truth = (f"; ground truth from {truth_file} in the true_* columns" if true_w is not None
             else "; the capture has no ground-truth weights")
    print(f"wrote {n} frames x {len(ARKIT_NAMES)} ARKit weights + gaze of subject {subject.name} to {args.out}{truth}")
    print(source.describe())
    return 0


def write_csv(path: Path, header: list[str], rows: np.ndarray) -> None:
    """Header + rows (frame as an integer, the rest to 6 decimals), written atomically."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MiaError(f"--out {path}: cannot write there ({err.strerror or err})") from None
    try:
        with atomic_open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for row in rows:
                writer.writerow([str(int(row[0]))] + [f"{v:.6f}" for v in row[1:]])
    except OSError as err:
        raise MiaError(f"--out {path}: cannot write it ({err.strerror or err})") from None
