"""ONNX export: the files reproduce torch within tolerance, the onnx engine matches the torch engine."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from app.cli import main
from engine.io.checkpoint import save_checkpoint
from engine.errors import ExportError
from engine.runtime.export import OnnxModel, export_onnx, file_sha256
from engine.facemodel import load_face_model
from engine.runtime.inference import InferenceEngine
from engine.mia.config import ModelConfig
from engine.mia.model import MIA


def tiny_checkpoint(path, seed: int = 0):
    """A tiny MIA whose G output layer is random, so meshes differ from the neutral (a real test)."""
    torch.manual_seed(seed)
    fm = load_face_model()
    template = fm.to_topology(fm.neutral).astype(np.float32)
    model = MIA(ModelConfig.tiny(), torch.from_numpy(template))
    torch.nn.init.normal_(model.shape_network.output_layer.weight, std=0.02)
    for name in ("alice", "bob"):
        model.add_identity(name, torch.randn(40, 256))
    neutrals = {n: {"neutral": template + k} for k, n in enumerate(("alice", "bob"), 1)}
    return save_checkpoint(path, model, topology=fm.topology.describe(), template=template, identities=neutrals)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "onnx"
    return out, export_onnx(checkpoint, out)


def test_export_matches_torch_within_tolerance(checkpoint, exported):
    out, manifest = exported
    errors = manifest["max_abs_error"]
    assert errors["embedding"] <= 1e-4 and errors["mesh"] <= 1e-4
    assert set(errors["code"]) == {"alice", "bob"} and max(errors["code"].values()) <= 1e-4
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["checkpoint"]["sha256"] == file_sha256(checkpoint)
    assert on_disk["topology"]["vertex_count"] == load_face_model().topology.vertex_count
    assert set(on_disk["identities"]) == {"alice", "bob"}
    assert all((out / f).exists() for f in on_disk["files"].values())
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]


def test_onnx_runtime_broadcasts_frames_and_subjects(exported, checkpoint):
    out, _ = exported
    onnx = OnnxModel(out, threads=1)
    s = onnx.image_size
    neutrals = np.stack(list(onnx.neutrals().values()))
    e, mesh = onnx.shape(np.zeros((1, 3, s, s), np.float32) + 100, neutrals)
    assert e.shape[0] == 1 and mesh.shape == neutrals.shape
    e, mesh = onnx.shape(np.random.default_rng(0).uniform(0, 255, (4, 3, s, s)), neutrals[:1])
    assert e.shape[0] == 4 and mesh.shape == (4, *neutrals.shape[1:])
    assert onnx.code("alice", e).shape == (4, 256)


def test_onnx_engine_gives_the_torch_engine_output(checkpoint, exported):
    out, _ = exported
    frame = np.random.default_rng(1).integers(0, 256, (3, 50, 70), dtype=np.uint8)
    results = {}
    for backend in ("torch", "onnx"):
        engine = InferenceEngine(checkpoint, backend=backend, onnx_dir=out)
        engine.set_subject("alice")
        engine.add_target("bob")
        engine.add_target("carol", engine.checkpoint.template - 1.0)
        results[backend] = engine(frame)
    t, o = results["torch"], results["onnx"]
    assert np.abs(t.mesh - t.mesh.mean(0)).max() > 0 and not np.allclose(t.mesh, t.targets["bob"].mesh)
    np.testing.assert_allclose(o.mesh, t.mesh, atol=1e-3)
    np.testing.assert_allclose(o.code, t.code, atol=1e-3)
    for name in ("bob", "carol"):
        np.testing.assert_allclose(o.targets[name].mesh, t.targets[name].mesh, atol=1e-3)
    np.testing.assert_allclose(InferenceEngine(checkpoint, "onnx", onnx_dir=out).mean_code("bob"),
                               InferenceEngine(checkpoint).mean_code("bob"), atol=1e-5)


def test_failed_check_is_a_clear_error_and_writes_nothing(checkpoint, tmp_path):
    with pytest.raises(ExportError, match="exceeds the tolerance"):
        export_onnx(checkpoint, tmp_path / "strict", tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_reexport_replaces_an_export_but_never_a_foreign_folder(checkpoint, tmp_path):
    out = tmp_path / "onnx"
    export_onnx(checkpoint, out)
    (out / "stale.onnx").write_text("old")
    export_onnx(checkpoint, out)
    assert not (out / "stale.onnx").exists()
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not an ONNX export folder"):
        export_onnx(checkpoint, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_onnx_engine_refuses_an_export_of_another_checkpoint(exported, tmp_path):
    other = tiny_checkpoint(tmp_path / "other.pt", seed=1)
    with pytest.raises(ExportError, match="another checkpoint"):
        InferenceEngine(other, backend="onnx", onnx_dir=exported[0])


def test_onnx_engine_caches_its_own_export(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MIA_CACHE_DIR", str(tmp_path))
    engine = InferenceEngine(checkpoint, backend="onnx")
    engine.set_subject("bob")
    assert engine(np.zeros((3, 32, 32), np.uint8)).mesh.shape[1] == 3
    assert len(list((tmp_path / "onnx").iterdir())) == 1


def test_cli_export_and_info(checkpoint, tmp_path, capsys):
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "onnx")]) == 0
    assert "max abs error vs torch" in capsys.readouterr().out
    assert main(["info", str(checkpoint)]) == 0
    text = capsys.readouterr().out
    assert "parameters: backbone" in text and "alice" in text and "topology: ict-narrow-iris" in text
    assert main(["info", str(tmp_path / "onnx")]) == 0
    assert "max_abs_error" in capsys.readouterr().out
