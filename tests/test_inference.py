"""The streaming inference engine: outputs, retargeting through G, ROI preprocessing, clear errors."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from engine.io.checkpoint import save_checkpoint
from engine.errors import CheckpointError
from engine.facemodel import load_face_model
from engine.runtime.inference import InferenceEngine, crop_roi, resize_square
from engine.mia.config import ModelConfig
from engine.mia.model import MIA

TEXTURE = 32


class StandInAvatar:
    """A tiny decoder with the engine.avatar interface: decode(z, view) -> (N, S, S) in [0, 1]."""

    texture_size = TEXTURE

    def __init__(self, seed: int = 0) -> None:
        self.weights = torch.randn(256, TEXTURE * TEXTURE, generator=torch.Generator().manual_seed(seed)) / 16
        self.uv_mask = np.ones((TEXTURE, TEXTURE), bool)

    def decode(self, z, view):
        z = torch.as_tensor(np.asarray(z), dtype=torch.float32)
        return torch.sigmoid(z @ self.weights).view(-1, TEXTURE, TEXTURE)


def neutrals() -> dict[str, np.ndarray]:
    fm = load_face_model()
    template = fm.to_topology(fm.neutral).astype(np.float32)
    rng = np.random.default_rng(0)
    return {"template": template, **{name: template + rng.normal(0, 1.5, template.shape).astype(np.float32)
                                     for name in ("id000", "id001")}}


@pytest.fixture(scope="module")
def meshes() -> dict[str, np.ndarray]:
    return neutrals()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, meshes):
    """An untrained tiny MIA: id000 has an adaptation layer, id001 is shape-only."""
    torch.manual_seed(0)
    model = MIA(ModelConfig.tiny(), torch.from_numpy(meshes["template"]))
    model.add_identity("id000", torch.randn(40, 256))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model,
                           topology=load_face_model().topology.describe(), template=meshes["template"],
                           identities={"id000": {"neutral": meshes["id000"]}},
                           subjects={n: {"neutral": meshes[n]} for n in ("id000", "id001")})


@pytest.fixture
def engine(checkpoint) -> InferenceEngine:
    return InferenceEngine(checkpoint)


def frames(h: int = 48, w: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (3, h, w), dtype=np.uint8)


def test_frame_result_shapes_and_latency(engine, meshes):
    engine.set_subject("id000", avatar_dir=StandInAvatar())
    r = engine(frames())
    v = len(meshes["template"])
    assert r.mesh.shape == (v, 3) and r.code.shape == (256,) and r.texture.shape == (TEXTURE, TEXTURE)
    assert r.embedding.shape == (engine.checkpoint.model_config.embedding_dim,)
    assert set(r.latency_ms) == {"preprocess", "backbone+shape", "texture", "total"}
    assert r.latency_ms["total"] >= r.latency_ms["backbone+shape"] > 0
    assert 0.0 <= r.texture.min() and r.texture.max() <= 1.0 and r.targets == {}


def test_targets_are_driven_with_their_own_neutral(engine, meshes):
    """An untrained G outputs exactly the neutral it is given, so each row shows whose neutral it got."""
    engine.set_subject("id000")
    engine.add_target("id001")
    other = meshes["template"] + 3.0
    engine.add_target("visitor", other, avatar_dir=StandInAvatar())
    r = engine(frames())
    np.testing.assert_array_equal(r.mesh, meshes["id000"])
    np.testing.assert_array_equal(r.targets["id001"].mesh, meshes["id001"])
    np.testing.assert_array_equal(r.targets["visitor"].mesh, other)
    assert r.targets["visitor"].texture is None, "no adaptation layer: no code, so no texture"
    assert r.code is not None and r.texture is None
    engine.remove_target("id001")
    assert list(engine(frames()).targets) == ["visitor"]


def test_one_backbone_call_per_frame_for_all_targets(engine):
    calls = []
    hook = engine._runner.model.backbone.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    try:
        engine.set_subject("id000")
        for name in ("id001", "a", "b"):
            engine.add_target(name, engine.checkpoint.subjects["id001"]["neutral"])
        engine(frames())
    finally:
        hook.remove()
    assert calls == [1]


def test_texture_for_target_with_adapter_and_avatar(engine):
    engine.set_subject("id001")
    engine.add_target("id000", avatar_dir=StandInAvatar(1))
    r = engine(frames())
    assert r.code is None and r.texture is None
    assert r.targets["id000"].texture.shape == (TEXTURE, TEXTURE)


def test_target_textures_can_be_skipped_while_meshes_and_the_subject_stay(engine):
    """What the studio asks while its retarget grid is off screen: the targets' meshes (outputs and
    exports use them) and the subject's texture, without the targets' codes and textures."""
    engine.set_subject("id000", avatar_dir=StandInAvatar(0))
    engine.add_target("id000", avatar_dir=StandInAvatar(1))  # a textured target (its own F_i)
    engine.add_target("id001")
    full, lean = engine(frames()), engine(frames(), target_textures=False)
    assert full.targets["id000"].texture is not None
    assert lean.targets["id000"].texture is None and lean.targets["id001"].texture is None
    for name in ("id000", "id001"):
        np.testing.assert_array_equal(lean.targets[name].mesh, full.targets[name].mesh)
    np.testing.assert_array_equal(lean.texture, full.texture)
    np.testing.assert_array_equal(lean.code, full.code)
    assert engine(frames()).targets["id000"].texture is not None, "the default makes them again"


def test_roi_crop_and_resize(engine):
    size = engine.image_size
    image = np.zeros((3, 100, 120), np.uint8)
    image[0, 10:60, 20:70] = 200  # ROI of camera 0 is uniformly 200
    image[1] = np.arange(120, dtype=np.uint8)[None]
    x = engine.preprocess(image, rois=[(20, 10, 50, 50), None, (100, 80, 500, 500)])
    assert x.shape == (1, 3, size, size) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], 200.0)
    np.testing.assert_allclose(x[0, 1], resize_square(image[1], size))
    np.testing.assert_allclose(x[0, 2], resize_square(image[2, 80:, 100:], size))
    with pytest.raises(ValueError, match="camera 1: ROI"):
        engine.preprocess(image, rois=[None, (200, 200, 10, 10), None])
    assert crop_roi(image[0], (-5, -5, 10, 10)).shape == (5, 5)


def test_stored_rois_and_mixed_camera_sizes(engine):
    views = [np.full((40, 50), 10, np.uint8), np.full((80, 64, 3), 30, np.uint8), np.full((20, 20), 50, np.uint8)]
    x = engine.preprocess(views)
    np.testing.assert_allclose(x[0, :, 0, 0], [10, 30, 50])
    engine.set_rois([(0, 0, 8, 8), None, None])
    assert engine.preprocess(views).shape == (1, 3, engine.image_size, engine.image_size)


def test_wrong_vertex_count_is_a_clear_checkpoint_error(engine, meshes):
    with pytest.raises(CheckpointError, match=r"has 100 vertices but the model .* with \d+ vertices"):
        engine.set_subject("someone", meshes["template"][:100])
    with pytest.raises(CheckpointError, match="not in"):
        engine.add_target("stranger")


def test_call_before_subject_is_an_error(engine):
    with pytest.raises(RuntimeError, match="set_subject"):
        engine(frames())


def test_predict_batches_frames(engine, meshes):
    subject = engine.make_subject("id000")
    pred = engine.predict(np.stack([frames(seed=s) for s in range(4)]), subject)
    assert pred.mesh.shape == (4, len(meshes["template"]), 3) and pred.code.shape == (4, 256)
    np.testing.assert_allclose(engine.mean_code("id000").shape, (256,))


def test_info(engine):
    info = engine.info()
    assert info["identities"] == ["id000"] and set(info["subjects"]) == {"id000", "id001"}
    assert info["image_size"] == 32 and info["parameters"]["total"] > 0
    assert info["topology"]["vertex_count"] == load_face_model().topology.vertex_count


def test_targets_change_while_a_worker_runs(engine):
    engine.set_subject("id000")
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for k in range(30):
                r = engine(frames(seed=k))
                assert all(t.mesh.shape == r.mesh.shape for t in r.targets.values())
        except BaseException as err:  # surfaced in the main thread
            errors.append(err)

    thread = threading.Thread(target=worker)
    thread.start()
    for k in range(30):
        engine.add_target(f"t{k % 3}", engine.checkpoint.subjects["id001"]["neutral"])
        engine.remove_target(f"t{(k + 1) % 3}")
    thread.join()
    assert not errors


def test_avatar_folder_goes_through_engine_avatar(engine, monkeypatch, tmp_path):
    avatar_module = pytest.importorskip("engine.avatar")
    seen = []
    monkeypatch.setattr(avatar_module, "load_avatar", lambda path: seen.append(path) or StandInAvatar())
    engine.set_subject("id000", avatar_dir=tmp_path)
    assert seen == [tmp_path] and engine(frames()).texture is not None


def test_batched_codes_equal_per_subject_codes(tmp_path, meshes):
    """The retarget rows' F_j and P_j run as one batched product; each z_j equals the per-subject eq. 4."""
    torch.manual_seed(1)
    model = MIA(ModelConfig.tiny(), torch.from_numpy(meshes["template"]))
    names = ("id000", "id001", "id002")
    for name in names:
        model.add_identity(name, torch.randn(40, 256))
    path = save_checkpoint(tmp_path / "three.pt", model, topology=load_face_model().topology.describe(),
                           template=meshes["template"],
                           identities={n: {"neutral": meshes.get(n, meshes["template"])} for n in names})
    engine = InferenceEngine(path)
    e = np.random.default_rng(3).normal(0, 1, (2, engine.checkpoint.model_config.embedding_dim)).astype(np.float32)
    batched = engine._runner.codes(list(names), e)
    assert batched.shape == (3, 2, 256)
    for k, name in enumerate(names):
        np.testing.assert_allclose(batched[k], engine._runner.code(name, e), rtol=0, atol=1e-5)

    engine.set_subject("id001", avatar_dir=StandInAvatar(0))
    engine.add_target("id002", avatar_dir=StandInAvatar(2))
    engine.add_target("id000")
    r = engine(frames())
    e1 = r.embedding[None]
    np.testing.assert_allclose(r.code, engine._runner.code("id001", e1)[0], rtol=0, atol=1e-5)
    z2 = engine._runner.code("id002", e1)
    np.testing.assert_allclose(r.targets["id002"].texture, StandInAvatar(2).decode(z2, None)[0].numpy(),
                               rtol=0, atol=1e-5)
    assert r.targets["id000"].texture is None  # F_j but no avatar: a code, no texture
