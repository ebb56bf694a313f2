"""Diagnosis probe: how far a closed-form linear read-out of the HMC pixels gets (docs/results.md).

Ridge regression from the three cameras, each area-downsampled to PX x PX and normalised per image,
to the displacement (mesh - subject's neutral), for three splits of a synthetic dataset:
frames 80%/20% of the same captures (tests alignment of frames, meshes, camera order and units),
the other capture of trained identities (a new headset), and identities never trained on.

    .venv/bin/mia synth /tmp/diag --identities 24 --captures 2 --frames 100 --size 64 --jobs 2 --seed 101
    .venv/bin/python benchmarks/diagnose_ridge.py /tmp/diag [--px 16] [--train-ids 20]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load(root: Path, px: int):
    from engine.io.capture_reader import list_captures, open_capture
    from engine.io.mesh import load_neutral
    X, Y, S, C, F = [], [], [], [], []
    for p in list_captures(root):
        with open_capture(p) as cap:
            sid = cap.meta.subject_id
            neutral, _ = load_neutral(root / "subjects" / sid / "neutral.obj", cap.meshes.shape[1])
            for t in range(len(cap)):
                im = cap.frame(t).astype(np.float32)
                f = np.stack([cv2.resize(im[c], (px, px), interpolation=cv2.INTER_AREA) for c in range(3)])
                f = (f - f.mean((1, 2), keepdims=True)) / (f.std((1, 2), keepdims=True) + 1e-5)
                X.append(f.ravel())
                Y.append((cap.meshes[t] - neutral).ravel())
                S.append(int(sid[2:]))
                C.append(p.name)
                F.append(t)
    return np.array(X), np.array(Y, np.float32), np.array(S), np.array(C), np.array(F)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--px", type=int, default=16)
    ap.add_argument("--train-ids", type=int, default=20)
    args = ap.parse_args()
    from engine.facemodel import load_face_model
    masks = load_face_model().region_masks
    X, Y, S, C, F = load(args.dataset, args.px)
    k = args.train_ids
    cut = int(0.8 * F.max() + 0.8)

    def ridge(tr, te, lam):
        mx, my = X[tr].mean(0), Y[tr].mean(0)
        A = X[tr] - mx
        W = np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T @ (Y[tr] - my))
        return (X[te] - mx) @ W + my

    def err(P, T):
        d = np.linalg.norm((P - T).reshape(len(T), -1, 3), axis=2)
        return {r: d[:, m].mean() for r, m in masks.items()}

    first = np.array([c.endswith("c00") for c in C])
    splits = {"same captures, last 20% of frames": ((F < cut) & (S < k), (F >= cut) & (S < k)),
              "trained identities, other capture": (first & (S < k), ~first & (S < k)),
              "untrained identities": (S < k, S >= k)}
    for name, (tr, te) in splits.items():
        base = err(np.zeros_like(Y[te]), Y[te])
        for lam in (1e1, 1e2, 1e3):
            e = err(ridge(tr, te, lam), Y[te])
            print(f"{name:36s} lambda {lam:6g}: " + "  ".join(
                f"{r} {e[r]:.2f}/{base[r]:.2f} = {e[r] / base[r]:.2f}" for r in e))


if __name__ == "__main__":
    main()
