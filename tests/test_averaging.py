"""Test-time averaging: the graph's warps are the documented ones, torch and ONNX agree, the
checkpoint's recommendation is what an engine uses by default, and copies=1 is the plain model;
mirroring averages the direct reading with the mirrored-back reading of the mirror image, which
makes the graph exactly mirror-equivariant."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.errors import ConfigError, ExportError
from engine.io.checkpoint import load_checkpoint
from engine.runtime.averaging import EXTRA_KEY, AveragingConfig, averaging_for, copy_warps, store_averaging
from engine.runtime.inference import InferenceEngine
from tests.test_export import tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("avg") / "tiny.pt", seed=3)


def expand(images: np.ndarray, warps: np.ndarray) -> np.ndarray:
    """The reference the graph is checked against: (N, 3, S, S) -> (copies * N, 3, S, S), the frames
    then each cv2.warpAffine copy of all of them (copy-major)."""
    n, cams, h, w = images.shape
    out = np.empty((len(warps) + 1, n, cams, h, w), np.float32)
    out[0] = images
    for k, per_camera in enumerate(warps, 1):
        for i in range(n):
            for c in range(cams):
                out[k, i, c] = cv2.warpAffine(images[i, c], per_camera[c], (w, h), flags=cv2.INTER_LINEAR,
                                              borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, cams, h, w)


def reduce(rows: np.ndarray, copies: int) -> np.ndarray:
    """Mean over the copies of an `expand`-laid-out (copies * N, ...) array -> (N, ...)."""
    return rows.reshape(copies, -1, *rows.shape[1:]).mean(axis=0)


def frames(n: int, size: int) -> np.ndarray:
    """Smooth images with structure (a warp of pure noise would average to almost anything)."""
    y, x = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(n)
    out = [[128 + 100 * np.sin(rng.uniform(3, 9) * x + rng.uniform(2, 7) * y + rng.uniform(0, 6))
            for _ in range(3)] for _ in range(n)]
    return np.asarray(out, np.float32)


def test_the_graph_averages_e_over_the_documented_warps(checkpoint) -> None:
    """B inside the graph sees exactly cv2.warpAffine's copies: e equals the mean of e over them."""
    cfg = AveragingConfig(copies=5, shift=0.04, scale=0.03, roll_deg=3.0, seed=2)
    averaged = InferenceEngine(checkpoint, averaging=5)
    averaged.averaging = cfg
    from engine.runtime.export import ShapeGraph
    averaged._runner.graph = ShapeGraph(averaged._runner.model, cfg)
    plain = InferenceEngine(checkpoint, averaging=1)
    size = plain.image_size
    x = frames(3, size)
    neutral = np.asarray(plain.checkpoint.template, np.float32)[None]
    e_avg, mesh_avg = averaged._runner.shape(x, neutral)
    e_copies, _ = plain._runner.shape(expand(x, copy_warps(cfg, size)), neutral)
    e_plain, mesh_plain = plain._runner.shape(x, neutral)
    assert np.allclose(reduce(e_copies, 5), e_avg, atol=1e-4)
    assert not np.allclose(e_avg, e_plain, atol=1e-3)  # the copies really differ from the frame
    assert mesh_avg.shape == mesh_plain.shape == (3, *neutral.shape[1:])


def test_copies_one_is_the_plain_model_and_config_errors_are_clear(checkpoint) -> None:
    plain = InferenceEngine(checkpoint)  # no recommendation stored: off
    assert plain.averaging.copies == 1
    one = InferenceEngine(checkpoint, averaging=1)
    x = frames(2, plain.image_size)
    neutral = np.asarray(plain.checkpoint.template, np.float32)[None]
    assert np.array_equal(plain._runner.shape(x, neutral)[1], one._runner.shape(x, neutral)[1])
    # one read is one read: a checkpoint's spreads do not make a copies=1 engine differ from plain
    assert averaging_for({EXTRA_KEY: {"copies": 16, "shift": 0.05}}, 1) == averaging_for(None)
    with pytest.raises(ConfigError, match="copies must be an integer >= 1"):
        AveragingConfig(copies=0)
    with pytest.raises(ConfigError, match="unknown fields"):
        averaging_for({EXTRA_KEY: {"copies": 4, "jitter": 1}})


def test_the_checkpoint_recommendation_is_the_default_and_onnx_matches_torch(checkpoint, tmp_path) -> None:
    stamped = store_averaging(checkpoint, AveragingConfig(copies=4), tmp_path / "stamped.pt")
    assert load_checkpoint(stamped).extra[EXTRA_KEY]["copies"] == 4
    torch_engine = InferenceEngine(stamped)
    onnx_engine = InferenceEngine(stamped, backend="onnx", onnx_dir=tmp_path / "onnx")
    assert torch_engine.averaging.copies == onnx_engine.averaging.copies == 4
    x = frames(2, torch_engine.image_size)
    neutral = np.asarray(torch_engine.checkpoint.template, np.float32)[None]
    e_t, mesh_t = torch_engine._runner.shape(x, neutral)
    e_o, mesh_o = onnx_engine._runner.shape(x, neutral)
    assert np.abs(e_t - e_o).max() < 1e-4 and np.abs(mesh_t - mesh_o).max() < 1e-4
    # an explicit export folder made with other copies is refused, not silently used
    with pytest.raises(ExportError, match=r"reads 4 copies \(4 reads\), 2 copies \(2 reads\) was asked for"):
        InferenceEngine(stamped, backend="onnx", onnx_dir=tmp_path / "onnx", averaging=2)


def test_the_mirror_map_is_the_face_models_left_right_symmetry() -> None:
    from engine.facemodel import load_face_model
    fm = load_face_model()
    index = fm.mirror_index
    verts = fm.to_topology(fm.neutral)
    assert np.array_equal(np.sort(index), np.arange(len(verts)))  # a permutation ...
    assert np.array_equal(index[index], np.arange(len(verts)))  # ... that is its own inverse
    assert (index != np.arange(len(verts))).mean() > 0.9  # only the midline maps to itself
    mirrored = (verts * np.array([-1, 1, 1], np.float32))[index]
    assert np.abs(mirrored - verts).max() < 0.1  # mm


def mirror_meshes(meshes: np.ndarray) -> np.ndarray:
    from engine.facemodel import load_face_model
    return (meshes * np.array([-1, 1, 1], np.float32))[..., load_face_model().mirror_index, :]


def test_mirroring_averages_the_mirrored_back_reading_and_is_mirror_equivariant(checkpoint) -> None:
    plain = InferenceEngine(checkpoint, averaging=1)
    mirrored = InferenceEngine(checkpoint, averaging=1, mirror=True)
    assert mirrored.averaging.mirror and mirrored.averaging.reads == 2 and mirrored.info()["mirror"]
    x = frames(3, plain.image_size)
    rng = np.random.default_rng(0)
    neutral = (np.asarray(plain.checkpoint.template, np.float32) + rng.normal(0, 1, (1, 1, 3)) * [4, 1, 1])
    neutral = neutral.astype(np.float32)  # moved off the midplane: the mirror really moves it
    flipped = x[:, [1, 0, 2], :, ::-1].copy()  # the eye cameras swapped, every image flipped
    e, mesh = mirrored._runner.shape(x, neutral)
    e_plain, mesh_plain = plain._runner.shape(x, neutral)
    _, mesh_of_mirror = plain._runner.shape(flipped, mirror_meshes(neutral))
    assert np.allclose(e, e_plain, atol=1e-5)  # e stays the direct reading
    assert np.allclose(mesh, 0.5 * (mesh_plain + mirror_meshes(mesh_of_mirror)), atol=1e-3)
    assert np.abs(mesh - mesh_plain).max() > 1e-2  # the mirrored reading changes the answer
    # the mirror image of the frames, on the mirrored face, gives exactly the mirrored meshes
    _, mesh_flipped = mirrored._runner.shape(flipped, mirror_meshes(neutral))
    assert np.allclose(mesh_flipped, mirror_meshes(mesh), atol=1e-3)


def test_a_mirroring_recommendation_reaches_every_engine_and_can_be_overridden(checkpoint, tmp_path) -> None:
    stamped = store_averaging(checkpoint, AveragingConfig(copies=2, mirror=True), tmp_path / "mirror.pt")
    extra = load_checkpoint(stamped).extra
    assert averaging_for(extra).reads == 4
    assert averaging_for(extra, 1).mirror and averaging_for(extra, 1).reads == 2  # copies alone keep the mirror
    assert averaging_for(extra, 1, False) == averaging_for(None)  # one read is one read
    assert averaging_for(None, mirror=True).reads == 2
    torch_engine = InferenceEngine(stamped)
    onnx_engine = InferenceEngine(stamped, backend="onnx", onnx_dir=tmp_path / "onnx")
    assert torch_engine.averaging == onnx_engine.averaging == averaging_for(extra)
    x = frames(2, torch_engine.image_size)
    neutral = np.asarray(torch_engine.checkpoint.template, np.float32)[None] + 1.0
    e_t, mesh_t = torch_engine._runner.shape(x, neutral)
    e_o, mesh_o = onnx_engine._runner.shape(x, neutral)
    assert np.abs(e_t - e_o).max() < 1e-4 and np.abs(mesh_t - mesh_o).max() < 1e-4
    with pytest.raises(ExportError, match=r"reads 2 copies \+ mirror \(4 reads\), 2 copies \(2 reads\) was"):
        InferenceEngine(stamped, backend="onnx", onnx_dir=tmp_path / "onnx", mirror=False)
    with pytest.raises(ConfigError, match="mirror must be true or false"):
        AveragingConfig(mirror="yes")  # type: ignore[arg-type]


def other_topology_checkpoint(path):
    """A tiny MIA on a 60-vertex mesh that is not the face model's: no mirror map is known for it."""
    import torch
    from engine.io.checkpoint import save_checkpoint
    from engine.mia.config import ModelConfig
    from engine.mia.model import MIA
    torch.manual_seed(0)
    template = np.random.default_rng(0).normal(0, 30, (60, 3)).astype(np.float32)
    model = MIA(ModelConfig.tiny(), torch.from_numpy(template))
    return save_checkpoint(path, model, topology={"name": "scan-60", "vertex_count": 60, "hash": "f00"},
                           template=template, identities={})


def test_mirroring_a_model_of_another_topology_is_refused_clearly(tmp_path):
    from engine.errors import NoMirrorError
    path = other_topology_checkpoint(tmp_path / "other.pt")
    with pytest.raises(NoMirrorError, match=r"mirroring needs the face model's topology.*scan-60"):
        InferenceEngine(path, mirror=True)
    assert not InferenceEngine(path).averaging.mirror  # nothing asked: one read


@pytest.mark.gui
def test_the_studio_reads_a_model_without_a_mirror_map_without_the_mirror(tmp_path, qapp):
    from app.frame_worker import FrameWorker
    worker = FrameWorker(lambda *_: None, averaging=1, mirror=True)  # the studio's default reading
    engine = worker._engine(str(other_topology_checkpoint(tmp_path / "other.pt")), "torch")
    assert not engine.averaging.mirror and engine.checkpoint.topology["name"] == "scan-60"
    kit = worker._engine(str(tiny_checkpoint(tmp_path / "kit.pt")), "torch")
    assert kit.averaging.mirror  # a face-model checkpoint keeps the mirror
