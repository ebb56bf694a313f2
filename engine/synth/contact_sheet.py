"""A contact sheet of the three HMC cameras for a few identities, so a reader sees what the data is.

    python -m engine.synth.contact_sheet docs/hmc_contact_sheet.png
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from engine.facemodel import load_face_model
from engine.synth.config import AppearanceConfig, SynthConfig
from engine.synth.generate import CaptureSpec, make_world
from engine.synth.headset import make_slop
from engine.synth.identity import make_identity
from engine.synth.performance import PEAKS

ROWS = (("neutral", 0, AppearanceConfig()), ("smile", 1, AppearanceConfig()), ("jaw_open", 2, AppearanceConfig()),
        ("pucker", 3, AppearanceConfig(beard=1.0)), ("eyes_closed", 4, AppearanceConfig(makeup=1.0)),
        ("surprise", 5, AppearanceConfig()))


def contact_sheet(size: int = 128, scale: int = 2) -> np.ndarray:
    model = load_face_model()
    cfg = SynthConfig(image_size=size, supersample=2)
    rows = []
    for peak, ident_index, appearance in ROWS:
        ident = make_identity(model, ident_index, cfg.seed, cfg.identity)
        world, _ = make_world(model, cfg, ident, CaptureSpec(ident_index, 0, f"hs{ident_index:02d}", appearance,
                                                               environment_seed=ident_index))
        e = np.zeros(model.expression_dim, np.float32)
        for k, w in PEAKS.get(peak, {}).items():
            e[model.expression_index(k)] = w
        rng = np.random.default_rng(ident_index)
        r = world.render(e, np.zeros((2, 2), np.float32), make_slop(rng, cfg.session), rng)
        world.renderer.release()
        row = np.concatenate([np.pad(im, 2, constant_values=255) for im in r.images], 1)
        label = f"{ident.name} {peak}" + (" beard" if appearance.beard > 0 else "") + (" make-up" if appearance.makeup else "")
        row = cv2.resize(row, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        cv2.putText(row, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 255, 2, cv2.LINE_AA)
        rows.append(row)
    header = np.full((30, rows[0].shape[1]), 255, np.uint8)
    w = rows[0].shape[1] // 3
    for i, name in enumerate(("cam0 left eye", "cam1 right eye", "cam2 mouth")):
        cv2.putText(header, name, (i * w + 8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 0, 1, cv2.LINE_AA)
    return np.concatenate([header, *rows], 0)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/hmc_contact_sheet.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), contact_sheet())
    print(f"wrote {out}")
