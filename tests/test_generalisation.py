"""The model must read expressions of people it never saw, not memorise the ones it trained on.

A regression test for the failure docs/results.md diagnoses: a small MIA trained for a few hundred
steps on a tiny multi-identity world must beat the neutral-mesh baseline on a capture of an
identity that no training capture shows. It checks error ratios, so it fails when the avatar does
not move (ratio ~1) or moves the wrong way (ratio > 1). To stay CI-sized the world holds the
headset fixed (no assembly variation or slop), draws faces closer to the average (identity
scale 0.35) and performs large expressions; generalising over
headsets is measured by the benchmark (`benchmarks/model_tables.py`), not here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.io.capture_reader import open_capture
from engine.facemodel import load_face_model
from engine.runtime.inference import InferenceEngine
from engine.synth.config import HeadsetConfig, IdentityConfig, PerformanceConfig, SessionConfig, SynthConfig
from engine.synth.generate import generate_dataset
from engine.training.config import TrainConfig
from engine.training.trainer import train
from engine.mia.config import ModelConfig

TRAIN_IDS = [f"id{i:03d}" for i in range(12)]
UNSEEN = "id012"


@pytest.fixture(scope="module")
def fixed_headset_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("generalise")
    cfg = SynthConfig(image_size=32, frames_per_capture=30, identities=13, captures_per_identity=1,
                      seed=11, identity=IdentityConfig(identity_scale=0.35),
                      headset=HeadsetConfig(placement_mm=0.0, placement_deg=0.0,
                                                     focal_variation=0.0),
                      session=SessionConfig(slop_rot_deg=0.0, slop_trans_mm=0.0, jitter_rot_deg=0.0,
                                            jitter_trans_mm=0.0),
                      performance=PerformanceConfig(segments=("peaks", "range_of_motion")))
    generate_dataset(root, cfg)
    return root


def test_small_model_beats_the_neutral_mesh_on_an_unseen_identity(fixed_headset_world: Path,
                                                                     tmp_path: Path) -> None:
    """Error below the neutral mesh's, and the mouth opens when the true mouth opens (a model that
    does not move has ratio 1 and no correlation; one that moves at random has ratio > 1).

    Eyes are not asserted: at 32 px and 12 training faces the eye cameras' lids and irises are a
    few pixels, and the tiny model does not read them (the benchmark measures eyes at 64 px)."""
    cfg = TrainConfig(steps=800, batch_size=16, lr=2e-3, subjects=TRAIN_IDS, seed=0,
                      augment={"enabled": False}, checkpoint_every=800, log_every=50,
                      model=ModelConfig.tiny(image_size=32))
    checkpoint = train(cfg, fixed_headset_world, tmp_path / "run", show_bar=False)
    engine = InferenceEngine(checkpoint)
    subject = engine.make_subject(UNSEEN, fixed_headset_world / "subjects" / UNSEEN / "neutral.obj")
    with open_capture(fixed_headset_world / "captures" / f"{UNSEEN}_c00") as cap:
        frames, truth = cap.load_all(), np.asarray(cap.meshes)
    pred = engine.predict(frames, subject).mesh
    mouth = load_face_model().region_masks["mouth"]
    error = np.linalg.norm(pred[:, mouth] - truth[:, mouth], axis=2).mean()
    baseline = np.linalg.norm(subject.neutral[mouth] - truth[:, mouth], axis=2).mean()
    moved = np.linalg.norm(pred[:, mouth] - subject.neutral[mouth], axis=2).mean(axis=1)
    truly_moved = np.linalg.norm(truth[:, mouth] - subject.neutral[mouth], axis=2).mean(axis=1)
    assert error / baseline < 0.9, (error, baseline)  # measured 0.84
    assert np.corrcoef(moved, truly_moved)[0, 1] > 0.6  # measured 0.90
