"""ARKit-52 weights (mesh fit, head on e, both) against synthetic ground truth on untrained identities.

    .venv/bin/python benchmarks/arkit_accuracy.py [DATASET] [--model M] [--ridge R] [--json OUT]

DATASET (default data/model/heldout) is a synthetic dataset folder of identities the model never saw.
Per capture: the model drives the subject (its neutral from DATASET/subjects/<id>/neutral.obj, under
a name the checkpoint does not know, so nothing identity-specific is used), the bounded least-squares
solver turns each predicted mesh into ARKit weights, the checkpoint's ARKit head (if it has one,
engine/output/head.py) turns each frame's code e into weights, and the combination the product sends
(the head, jawOpen from the fit) is formed; they are compared with the ground truth
mapped through the same table: the person's own blendshape weights (blendshapes.npy, what the face
did) and the expression intent (expressions.npy, what the performance asked for). Rows: the solver on
the ground-truth meshes (its own error floor), the solver on the model's meshes, and two trivial
predictors (all zeros; the ground truth's per-weight mean over the whole set, an oracle constant).
Prints Markdown (per group, jawOpen/eyeBlink, the 12 worst weights); --json keeps every number.
The target verdict is given for what `mia stream` sends with this checkpoint (``--weights auto``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.io.capture_reader import list_captures, open_capture  # noqa: E402
from engine.runtime.inference import InferenceEngine  # noqa: E402
from engine.io.mesh import guess_units, load_mesh  # noqa: E402
from engine.output.arkit import ARKIT_INDEX, ARKIT_NAMES, GROUPS, group_indices  # noqa: E402
from engine.output.head import combine, head_status  # noqa: E402
from engine.output.solver import BlendshapeSolver, SolverConfig  # noqa: E402

TARGET = 0.08
KEY = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight")


def neutral_of(dataset: Path, subject: str) -> np.ndarray:
    verts, _ = load_mesh(dataset / "subjects" / subject / "neutral.obj")
    return (verts * guess_units(verts)[1]).astype(np.float32)


def run(dataset: Path, model: Path, ridge: float, frames: int | None) -> dict:
    engine = InferenceEngine(model, threads=2)
    solver = BlendshapeSolver(config=SolverConfig(ridge=ridge))
    head, reason = head_status(engine.checkpoint)
    pred, codes, fit_gt, person, intent, solve_ms = [], [], [], [], [], []
    for path in list_captures(dataset):
        with open_capture(path) as cap:
            n = len(cap) if frames is None else min(frames, len(cap))
            subject = engine.set_subject(f"heldout:{cap.meta.subject_id}", neutral_of(dataset, cap.meta.subject_id))
            images = np.stack([cap.frame(i) for i in range(n)])
            prediction = engine.predict(images, subject)
            meshes = prediction.mesh
            codes.append(prediction.embedding)
            t0 = time.perf_counter()
            pred.append(solver.arkit(meshes, subject.neutral))
            solve_ms.append((time.perf_counter() - t0) * 1e3 / n)
            fit_gt.append(solver.arkit(np.asarray(cap.meshes[:n]), subject.neutral))
            person.append(solver.to_arkit(np.asarray(cap.blendshapes[:n])))
            intent.append(solver.to_arkit(np.asarray(cap.expressions[:n])))
        print(f"  {path.name}: {n} frames", file=sys.stderr)
    p, g, t, i, e = (np.concatenate(x) for x in (pred, fit_gt, person, intent, codes))
    rows = {"solver on model meshes": p}
    if head is not None:
        h = head(e)
        rows.update({"ARKit head on e": h, "combined: head, jawOpen from the fit": combine(h, p)})
    rows.update({"solver on ground-truth meshes": g, "all zeros": np.zeros_like(t),
                 "per-weight mean (oracle constant)": np.broadcast_to(t.mean(0), t.shape)})
    sent = "combined: head, jawOpen from the fit" if head is not None else "solver on model meshes"
    return {"frames": int(len(t)), "captures": len(pred), "ridge": ridge, "solve_ms_per_frame": float(np.mean(solve_ms)),
            "model": str(model), "head": reason, "sent": sent,
            "vs_person": {k: metrics(v, t) for k, v in rows.items()},
            "vs_intent": {k: metrics(v, i) for k, v in rows.items() if k != "per-weight mean (oracle constant)"},
            "gt_active": {n: float((t[:, ARKIT_INDEX[n]] > 0.05).mean()) for n in KEY}}


def metrics(pred: np.ndarray, truth: np.ndarray) -> dict:
    err = np.abs(pred - truth)
    per = err.mean(0)
    corr = {}
    for k, name in enumerate(ARKIT_NAMES):
        if truth[:, k].std() > 1e-3 and pred[:, k].std() > 1e-6:
            corr[name] = float(np.corrcoef(pred[:, k], truth[:, k])[0, 1])
    groups = {g: float(err[:, idx].mean()) for g, idx in group_indices().items() if g in GROUPS}
    return {"mae": float(err.mean()), "mae_per_weight": {n: float(v) for n, v in zip(ARKIT_NAMES, per)},
            "mae_per_group": groups, "corr": corr,
            "mean_corr": float(np.mean(list(corr.values()))) if corr else float("nan")}


def markdown(r: dict) -> str:
    out = [f"{r['frames']} frames, {r['captures']} captures; solver ridge {r['ridge']}, "
           f"{r['solve_ms_per_frame']:.2f} ms/frame (batched); {r['head']}\n"]
    for truth in ("vs_person", "vs_intent"):
        out.append(f"### Ground truth: {'the person’s blendshape weights' if truth == 'vs_person' else 'expression intent'}\n")
        out.append("| predictor | MAE all | " + " | ".join(GROUPS) + " | jawOpen | eyeBlinkL | eyeBlinkR | mean corr |")
        out.append("|---" * (len(GROUPS) + 6) + "|")
        for name, m in r[truth].items():
            g = " | ".join(f"{m['mae_per_group'][x]:.3f}" for x in GROUPS)
            k = " | ".join(f"{m['mae_per_weight'][x]:.3f}" for x in KEY)
            out.append(f"| {name} | {m['mae']:.3f} | {g} | {k} | {m['mean_corr']:.2f} |")
        m = r[truth][r["sent"]]
        worst = sorted(m["mae_per_weight"].items(), key=lambda kv: -kv[1])[:12]
        out.append(f"\nWorst weights ({r['sent']}): " + ", ".join(
            f"{n} {v:.3f} (r={m['corr'].get(n, float('nan')):.2f})" for n, v in worst) + "\n")
        for name in r[truth]:
            if name in ("solver on model meshes", "ARKit head on e", "combined: head, jawOpen from the fit"):
                out.append(f"Key weights, correlation ({name}): " + ", ".join(
                    f"{n} r={r[truth][name]['corr'].get(n, float('nan')):.2f}" for n in KEY) + "\n")
    verdict = all(r["vs_person"][r["sent"]]["mae_per_weight"][n] < TARGET for n in KEY)
    out.append(f"Target (MAE < {TARGET} for jawOpen and eyeBlink vs the person's weights) for what is sent "
               f"({r['sent']}): {'met' if verdict else 'NOT met'}.")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", nargs="?", default=str(ROOT / "data/model/heldout"))
    ap.add_argument("--model", default=str(ROOT / "resources/default_model.pt"))
    ap.add_argument("--ridge", type=float, default=SolverConfig.ridge)
    ap.add_argument("--frames", type=int, default=None, help="first N frames of each capture (default all)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    r = run(Path(args.dataset), Path(args.model), args.ridge, args.frames)
    print(markdown(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
