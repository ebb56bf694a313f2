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


# --------------------------------------------------------------------------- avatar decoders D_i
def tiny_avatar(path, seed: int = 0):
    """A small real avatar file (random weights, a mask that cuts part of the texture)."""
    from engine import avatar
    torch.manual_seed(seed)
    fm = load_face_model()
    model = avatar.AvatarAutoencoder(avatar.AvatarConfig(texture_size=16, width=4, max_width=8, latent_dim=256),
                                     fm.topology.vertex_count)
    torch.nn.init.normal_(model.texture_head[0].weight, std=0.3)
    model.texture_mean.fill_(0.5)  # textures around mid-grey, so the clamp to [0, 1] keeps their detail
    mask = np.ones((16, 16), bool)
    mask[:3] = False
    return avatar.save_avatar(path, model, subject_id="alice", neutral=fm.to_topology(fm.neutral), mask=mask,
                              topology=fm.topology.describe())


def test_onnx_engine_decodes_textures_as_torch_does(checkpoint, exported, tmp_path, monkeypatch):
    """On the onnx backend D_i runs in onnxruntime (engine/runtime/avatar_onnx.py), exported once into
    the cache; its textures equal the torch decoder's for single and batched codes and views."""
    from engine.avatar import AvatarDecoder, load_avatar
    from engine.runtime.avatar_onnx import OnnxAvatar
    monkeypatch.setenv("MIA_CACHE_DIR", str(tmp_path / "cache"))
    file = tiny_avatar(tmp_path / "alice" / "avatar" / "avatar.pt")
    onnx_engine = InferenceEngine(checkpoint, backend="onnx", onnx_dir=exported[0])
    decoder = onnx_engine.set_subject("alice", avatar_dir=file).avatar
    assert isinstance(decoder, OnnxAvatar) and decoder.uv_mask.shape == (16, 16)
    cached = list((tmp_path / "cache" / "onnx-avatars").glob("*.onnx"))
    assert cached == [decoder.onnx_path]
    torch_avatar = load_avatar(file)
    rng = np.random.default_rng(3)
    for n, view in ((1, np.array([0.0, 0.0, 1.0])), (4, rng.normal(0, 0.3, (4, 3)) + [0, 0, 2])):
        z = rng.normal(0, 1, (n, 256)).astype(np.float32)
        want = torch_avatar.decode(z, view.astype(np.float32))
        got = decoder.decode(torch.from_numpy(z), torch.from_numpy(view.astype(np.float32)))
        assert got.shape == want.shape == (n, 16, 16) and want.std() > 0.01
        np.testing.assert_allclose(got, want, atol=1e-4)
        assert not got[:, :3].any()  # masked like the torch decoder
    frame = rng.integers(0, 256, (3, 40, 40), dtype=np.uint8)
    torch_engine = InferenceEngine(checkpoint)
    assert isinstance(torch_engine.set_subject("alice", avatar_dir=file).avatar, AvatarDecoder)
    np.testing.assert_allclose(onnx_engine(frame).texture, torch_engine(frame).texture, atol=1e-3)
    mtime = decoder.onnx_path.stat().st_mtime_ns
    again = InferenceEngine(checkpoint, backend="onnx", onnx_dir=exported[0]).set_subject("alice", avatar_dir=file)
    assert again.avatar.onnx_path == decoder.onnx_path and decoder.onnx_path.stat().st_mtime_ns == mtime
    with pytest.raises(Exception, match=r"codes must be \(N, 256\)"):
        decoder.decode(np.zeros((2, 3), np.float32))


def test_an_avatar_onnx_cannot_reproduce_stays_in_torch(tmp_path, monkeypatch, caplog):
    from engine.avatar import AvatarDecoder, load_avatar
    from engine.runtime import avatar_onnx
    monkeypatch.setenv("MIA_CACHE_DIR", str(tmp_path / "cache"))
    decoder = load_avatar(tiny_avatar(tmp_path / "a" / "avatar.pt"))
    monkeypatch.setattr(avatar_onnx, "TOLERANCE", -1.0)
    kept = avatar_onnx.onnx_avatar(decoder, threads=1)
    assert kept is decoder and isinstance(kept, AvatarDecoder)
    assert "stays in torch" in caplog.text and "differs from torch" in caplog.text
    assert not list((tmp_path / "cache" / "onnx-avatars").glob("*"))  # nothing half-written is kept
    stand_in = object()
    assert avatar_onnx.onnx_avatar(stand_in, threads=1) is stand_in  # not an avatar file: left alone
