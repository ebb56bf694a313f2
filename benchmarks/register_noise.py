"""Identity fit + refinement alone on noisy scans, from the true pose: what noise does to the fit itself.

No rigid search (the scans are not posed, so the true pose is the identity and the fit starts there): the
spread between runs is then the fit's, not the pose search's. Heads (identities 500+) and front crops
(600+), re-triangulated on a 2.5 mm grid, as in ``register_robustness.py``; the truth is drawn from the
first ``--truth-modes`` identity modes (40: as every other registration benchmark; 100: all the kit's
modes, as the fit uses). Each variant is a list of config overrides, e.g. ``identity.prior=2e-4``.
Run: .venv/bin/python benchmarks/register_noise.py [--noise 0.5] [--scans 6] [--first 0] [--truth-modes 40]
     [default] [identity.prior=2e-4,scan.border_margin_noise=6 ...]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from engine.facemodel import load_face_model
from engine.registration.config import RegistrationConfig
from engine.registration.identity_fit import fit_identity
from engine.registration.nonrigid import refine
from engine.registration.rigid import Pose
from engine.registration.scan import sample_surface
from engine.registration.synthetic import ScanSpec, make_scan
from engine.registration.template import load_template
from engine.synth.config import IdentityConfig
from engine.synth.identity import make_identity


def config(variant: str) -> RegistrationConfig:
    cfg = RegistrationConfig()
    for item in ([] if variant == "default" else variant.split(",")):
        key, value = item.split("=")
        section, name = key.split(".")
        current = getattr(getattr(cfg, section), name)
        setattr(getattr(cfg, section), name, value == "1" if isinstance(current, bool) else type(current)(float(value)))
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["default"])
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--scans", type=int, default=6, help="heads and crops each")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--truth-modes", type=int, default=40)
    args = parser.parse_args()
    model, template = load_face_model(), load_template()
    scans = []
    for crop, base in ((False, 500), (True, 600)):
        for i in range(args.first, args.first + args.scans):
            weights = make_identity(model, base + i, 3, IdentityConfig(identity_modes=args.truth_modes)).shape_weights
            spec = ScanSpec(remesh="retriangulate", cell_mm=2.5, crop_front=crop, noise_mm=args.noise, pose=False,
                            seed=1000 + i)
            scans.append((crop, *make_scan(model, weights, spec)))
    identity = Pose(np.eye(3), np.zeros(3))
    for variant in args.variants:
        cfg = config(variant)
        errors: dict[bool, list[float]] = {False: [], True: []}
        start = time.process_time()
        for crop, verts, faces, truth in scans:
            scan = sample_surface(verts, faces, cfg.scan)
            fit = fit_identity(template, scan, identity, cfg.identity)
            out = fit.pose.apply(refine(template, scan, fit.pose, fit.verts, cfg.refine))
            errors[crop].append(float(np.linalg.norm(out - truth, axis=1).mean()))
        heads, crops = np.array(errors[False]), np.array(errors[True])
        print(f"{variant}: heads {heads.mean():.3f} (worst {heads.max():.3f}), crops {crops.mean():.3f} (worst "
              f"{crops.max():.3f}), all {np.r_[heads, crops].mean():.3f} mm; {time.process_time() - start:.0f} CPU s; "
              + " ".join(f"{e:.2f}" for e in np.r_[heads, crops]), flush=True)


if __name__ == "__main__":
    main()
