"""A figure of the shipped model at work: per frame, the three HMC images, the driven mesh and the
ground truth side by side (both shaded from the front), with the per-region errors.

Frames are picked where the ground truth moves most (mouth open, eyes closed) so the figure shows
whether the avatar follows the face. Writes docs/driven_frames.png.

    .venv/bin/python benchmarks/driven_figure.py [--model M] [--capture C] [--out PNG]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def shaded(renderer, mesh: np.ndarray, size: int = 256) -> np.ndarray:
    """The mesh from a frontal camera 450 mm away, lit from the camera."""
    from engine.camera import PinholeCamera
    R = np.diag([-1.0, -1.0, 1.0]).astype(np.float32) @ np.diag([-1.0, 1.0, -1.0]).astype(np.float32)
    centre = np.array([0.0, 5.0, 0.0], np.float32)
    t = -R @ (centre + np.array([0.0, 0.0, 450.0], np.float32))
    cam = PinholeCamera(size, size, 560.0 * size / 256, 560.0 * size / 256, size / 2, size / 2,
                        (0.0, 0.0, 0.0), R, t.astype(np.float32))
    renderer.set_vertices(mesh.astype(np.float32))
    out = renderer.render_ir(cam, 1.0, 0.05, ref_dist=450.0)
    return np.clip(out[..., 0], 0, 1) ** 0.6


def pick_frames(gt: np.ndarray, neutral: np.ndarray, masks: dict, count: int) -> list[int]:
    """The frames of largest mouth and eye motion, and one near rest."""
    mouth = np.linalg.norm(gt[:, masks["mouth"]] - neutral[masks["mouth"]], axis=2).mean(1)
    eyes = np.linalg.norm(gt[:, masks["eyes"]] - neutral[masks["eyes"]], axis=2).mean(1)
    picks = [int(np.argmax(mouth)), int(np.argmax(eyes)), int(np.argsort(mouth)[len(mouth) // 2])]
    for i in np.argsort(-(mouth + eyes)):
        if len(picks) >= count:
            break
        if all(abs(int(i) - p) > 5 for p in picks):
            picks.append(int(i))
    return sorted(dict.fromkeys(picks))[:count]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=ROOT / "resources" / "default_model.pt")
    ap.add_argument("--capture", type=Path, default=ROOT / "resources" / "demo_capture")
    ap.add_argument("--subject-dir", type=Path, help="folder with the subject's neutral.obj "
                    "(default: resources/subjects/<capture subject>)")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "driven_frames.png")
    args = ap.parse_args()

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from engine.io.capture_reader import open_capture
    from engine.evaluation.evaluate import region_errors
    from engine.facemodel import load_face_model
    from engine.runtime.inference import InferenceEngine
    from engine.io.mesh import load_mesh
    from engine.render import MeshRenderer

    engine = InferenceEngine(args.model)
    fm = load_face_model()
    masks = fm.region_masks
    renderer = MeshRenderer(fm.topology.faces)
    renderer.set_texture(np.full((4, 4), 0.7, np.float32))
    with open_capture(args.capture) as cap:
        sid = cap.meta.subject_id
        folder = args.subject_dir or ROOT / "resources" / "subjects" / sid
        neutral = load_mesh(folder / "neutral.obj")[0].astype(np.float32)
        subject = engine.make_subject(sid, neutral)
        gt_all = np.asarray(cap.meshes, np.float32)
        frames = pick_frames(gt_all, neutral, masks, args.frames)
        images = np.stack([cap.frame(i) for i in frames])
    pred = engine.predict(images, subject).mesh
    fig, axes = plt.subplots(len(frames), 5, figsize=(12.5, 2.6 * len(frames)))
    titles = ("left eye", "right eye", "mouth", "driven (MIA)", "ground truth")
    for row, (i, im, mesh) in enumerate(zip(frames, images, pred)):
        err = region_errors(mesh, gt_all[i], masks)
        base = region_errors(neutral, gt_all[i], masks)
        panels = [im[0], im[1], im[2], shaded(renderer, mesh), shaded(renderer, gt_all[i])]
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(panel, cmap="gray", vmin=0, vmax=255 if col < 3 else 1)
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[col])
        axes[row, 0].set_ylabel(f"frame {i}")
        axes[row, 3].set_xlabel(" ".join(f"{r} {err[r][0]:.1f}" for r in ("eyes", "mouth", "face")) + " mm",
                                fontsize=8)
        axes[row, 4].set_xlabel("neutral mesh: " + " ".join(f"{r} {base[r][0]:.1f}"
                                                            for r in ("eyes", "mouth", "face")) + " mm", fontsize=8)
    fig.suptitle(f"{args.model.name} driving {sid} from {args.capture.name}")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    renderer.release()
    print(f"wrote {args.out} (frames {frames})")


if __name__ == "__main__":
    main()
