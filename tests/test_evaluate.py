"""Evaluation: region errors, the neutral baseline, texture errors, reports and the correspondence test."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from app.cli import main
from engine.io.capture_reader import list_captures, open_capture
from engine.io.checkpoint import save_checkpoint
from engine.io.layout import avatar_path
from engine.evaluation.evaluate import (CaptureEvaluation, correspondence_error, evaluate_capture,
                                        evaluate_dataset, markdown_table, neutral_baseline, region_errors,
                                        summarise, texture_errors, uv_region_masks, write_report)
from engine.facemodel import load_face_model
from engine.runtime.inference import InferenceEngine
from engine.io.mesh import load_neutral
from engine.mia.config import ModelConfig
from engine.mia.model import MIA
from engine.synth.config import SynthConfig
from engine.synth.generate import generate_dataset
from synth_world import FRAMES

TEXTURE = 32


class StandInAvatar:
    """The engine.avatar decoder interface, tiny: decode(z, view) -> (N, S, S) in [0, 1]."""

    texture_size = TEXTURE
    uv_mask = np.ones((TEXTURE, TEXTURE), bool)

    def __init__(self) -> None:
        self.weights = torch.randn(256, TEXTURE * TEXTURE, generator=torch.Generator().manual_seed(0)) / 16

    def decode(self, z, view):
        z = torch.as_tensor(np.asarray(z), dtype=torch.float32)
        return torch.sigmoid(z @ self.weights).view(-1, TEXTURE, TEXTURE)


@pytest.fixture(scope="session")
def dataset(synth_dataset):
    return synth_dataset, list_captures(synth_dataset)


@pytest.fixture(scope="session")
def checkpoint(dataset, tmp_path_factory):
    """An untrained tiny MIA (G returns the neutral exactly); id000 has an adaptation layer."""
    root, _ = dataset
    fm = load_face_model()
    torch.manual_seed(0)
    template = fm.to_topology(fm.neutral).astype(np.float32)
    model = MIA(ModelConfig.tiny(), torch.from_numpy(template))
    model.add_identity("id000", torch.randn(40, 256))
    neutral, _ = load_neutral(root / "subjects" / "id000" / "neutral.obj", fm.topology.vertex_count)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, topology=fm.topology.describe(),
                           template=template, identities={"id000": {"neutral": neutral}})


@pytest.fixture(scope="session")
def engine(checkpoint):
    return InferenceEngine(checkpoint)


@pytest.fixture(scope="session")
def masks():
    return load_face_model().region_masks


def test_region_errors_of_a_known_offset(masks):
    rng = np.random.default_rng(0)
    pred = rng.normal(0, 30, (4, len(masks["face"]), 3))
    gt = pred.copy()
    gt[:, masks["eyes"], 2] += 1.0  # 1 mm, only on the eyes
    errors = region_errors(pred, gt, masks)
    np.testing.assert_allclose(errors["eyes"], 1.0)
    np.testing.assert_allclose(errors["face"], masks["eyes"].mean())
    np.testing.assert_allclose(errors["mouth"], masks["eyes"][masks["mouth"]].mean())
    assert errors["eyes"].shape == (4,)


def test_neutral_baseline_is_the_mean_displacement(masks):
    rng = np.random.default_rng(1)
    neutral = rng.normal(0, 30, (len(masks["face"]), 3))
    gt = neutral + rng.normal(0, 2, (5, *neutral.shape))
    baseline = neutral_baseline(gt, neutral, masks)
    for region, mask in masks.items():
        np.testing.assert_allclose(baseline[region], np.linalg.norm(gt - neutral, axis=-1)[:, mask].mean(1))


def test_texture_errors_in_intensity_levels():
    gt = np.full((3, TEXTURE, TEXTURE), 0.5)
    errors = texture_errors(gt + 10 / 255, gt)
    assert set(errors) == {"eyes", "mouth", "face"}
    for values in errors.values():
        np.testing.assert_allclose(values, 10.0)
    uv = uv_region_masks(TEXTURE)
    assert all(m.any() for m in uv.values())
    assert not (uv["eyes"] & ~uv["face"]).any() and not (uv["mouth"] & ~uv["face"]).any()


def test_untrained_model_scores_exactly_the_neutral_baseline(engine, dataset):
    _, captures = dataset
    result = evaluate_capture(engine, captures[1], batch_size=5)  # id001: untrained subject, dataset neutral
    assert result.subject == "id001" and len(result.frames) == FRAMES
    for region in ("eyes", "mouth", "face"):
        assert result.shape[region].shape == (FRAMES,)
        np.testing.assert_allclose(result.shape[region], result.baseline[region], atol=1e-5)
        assert result.baseline[region].mean() > 0
    assert result.texture == {} and "codes.npy" in result.notes[0]


def test_texture_errors_need_codes_adapter_and_avatar(engine, dataset, tmp_path):
    _, captures = dataset
    capture = tmp_path / "with_codes"
    shutil.copytree(captures[0], capture)
    np.save(capture / "codes.npy", np.random.default_rng(0).normal(0, 1, (FRAMES, 256)).astype(np.float32))
    result = evaluate_capture(engine, capture, avatar=StandInAvatar(), stride=2)
    assert len(result.frames) == FRAMES // 2 and not result.notes
    for region in ("eyes", "mouth", "face"):
        assert result.texture[region].shape == (FRAMES // 2,) and (result.texture[region] >= 0).all()
        assert result.texture_baseline[region].shape == (FRAMES // 2,)
    assert "tex (0-255)" in markdown_table([result])


def test_summary_is_mean_and_std_over_captures():
    def fake(name: str, value: float) -> CaptureEvaluation:
        errors = {r: np.full(3, value) for r in ("eyes", "mouth", "face")}
        return CaptureEvaluation(name, "s", np.arange(3), errors, {r: v * 2 for r, v in errors.items()})
    summary = summarise([fake("a", 1.0), fake("b", 3.0)])
    assert summary["shape"]["eyes"] == (2.0, 1.0) and summary["baseline"]["mouth"] == (4.0, 2.0)
    table = markdown_table([fake("a", 1.0), fake("b", 3.0)])
    assert "| **overall** | 2 captures | 2.00 ± 1.00 | 2.00 ± 1.00 | 2.00 ± 1.00 |" in table
    assert "| neutral baseline | 2 captures | 4.00 ± 2.00 |" in table


def test_report_files(engine, dataset, tmp_path):
    root, _ = dataset
    results = evaluate_dataset(engine, root)
    files = write_report(results, tmp_path / "report")
    text = files["markdown"].read_text()
    assert "**overall**" in text and "neutral baseline" in text and "id000_c00" in text
    assert all(p.exists() and p.stat().st_size > 0 for p in files.values())
    assert (tmp_path / "report" / "plots" / "captures_shape.png").exists()
    payload = json.loads(files["json"].read_text())
    back = CaptureEvaluation.from_dict(payload["captures"][0])
    np.testing.assert_allclose(back.shape["mouth"], results[0].shape["mouth"])
    assert evaluate_dataset(engine, root, subjects=["id001"])[0].subject == "id001"


def test_correspondence_replays_the_ground_truth(engine, dataset):
    """Driving the source's own identity: its true displacement is then exactly the ground truth."""
    _, captures = dataset
    own = correspondence_error(engine, captures[0], 0, control=None)
    assert own.gaze.startswith("replayed")
    for region in ("eyes", "mouth", "face"):
        np.testing.assert_allclose(own.errors["transfer"][region], 0.0, atol=1e-4)


def test_correspondence_across_identities(engine, dataset):
    _, captures = dataset
    result = correspondence_error(engine, captures[0], "id001")
    assert result.source_subject == "id000" and result.target_subject == "id001"
    assert set(result.errors) == {"cross", "self", "transfer", "neutral"}
    for region in ("eyes", "mouth", "face"):  # an untrained G answers the neutral whatever the images
        np.testing.assert_allclose(result.errors["cross"][region], result.errors["neutral"][region], atol=1e-5)
        np.testing.assert_allclose(result.errors["self"][region], result.errors["neutral"][region], atol=1e-5)
        assert result.errors["transfer"][region].mean() > 0
    assert "| cross |" in result.markdown()
    with open_capture(captures[1]) as cap:  # the control can also be the target's own capture
        assert len(correspondence_error(engine, captures[0], 1, control=cap.path).errors["self"]["face"]) == FRAMES


def test_cli_eval_prints_the_table(checkpoint, dataset, tmp_path, capsys):
    root, _ = dataset
    assert main(["eval", str(checkpoint), str(root), "--out", str(tmp_path / "out"), "--subjects", "id000"]) == 0
    out = capsys.readouterr().out
    assert "| **overall** | 1 captures |" in out and "neutral baseline" in out
    assert (tmp_path / "out" / "report.md").exists()


def test_dataset_avatar_is_found_and_used(engine, dataset, tmp_path):
    """A real avatar file at subjects/<id>/avatar/avatar.pt is picked up without being named."""
    avatar = pytest.importorskip("engine.avatar")
    root, _ = dataset
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    capture = copy / "captures" / "id000_c00"
    np.save(capture / "codes.npy", np.random.default_rng(0).normal(0, 1, (FRAMES, 256)).astype(np.float32))
    fm = load_face_model()
    model = avatar.AvatarAutoencoder(avatar.AvatarConfig(texture_size=16, width=4, max_width=8),
                                     fm.topology.vertex_count)
    avatar.save_avatar(avatar_path(copy / "subjects" / "id000"), model, subject_id="id000",
                       neutral=fm.to_topology(fm.neutral), mask=np.ones((16, 16), bool),
                       topology=fm.topology.describe())
    result = evaluate_capture(engine, capture)
    assert not result.notes and result.texture["mouth"].shape == (FRAMES,)


def test_a_dataset_neutral_wins_over_a_checkpoint_subject_of_the_same_name(engine, tmp_path):
    """Names are unique only within a dataset: a held-out world's id000 is not the training id000,
    so evaluating its capture must use the neutral beside the capture (the bug that made a new-seed
    evaluation compare against another person's face)."""
    other = generate_dataset(tmp_path, SynthConfig(identities=1, captures_per_identity=1, frames_per_capture=4,
                                                   image_size=32, seed=99))[0]
    own, _ = load_neutral(tmp_path / "subjects" / "id000" / "neutral.obj", load_face_model().topology.vertex_count)
    assert "id000" in engine.subjects
    assert not np.allclose(own, engine.checkpoint.subjects["id000"]["neutral"])
    result = evaluate_capture(engine, other)
    with open_capture(other) as cap:
        expected = neutral_baseline(np.asarray(cap.meshes), own, load_face_model().region_masks)
    for region in ("eyes", "mouth", "face"):
        np.testing.assert_allclose(result.baseline[region], expected[region], rtol=1e-6)
