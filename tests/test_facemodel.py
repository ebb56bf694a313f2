"""The face model reproduces the kit, its masks cover the intended regions, mesh I/O keeps vertex order."""
from pathlib import Path

import numpy as np
import pytest

from engine.errors import MeshError
from engine.facemodel import KIT_PATH, FaceModel, load_face_model
from engine.io.mesh import load_neutral, save_mesh

SHARED_KIT = Path(__file__).resolve().parents[2] / "shared" / "facekit" / "ict_facekit.npz"


@pytest.fixture(scope="module")
def model() -> FaceModel:
    return load_face_model()


def test_reproduces_kit_vertices(model):
    kit = np.load(SHARED_KIT if SHARED_KIT.exists() else KIT_PATH)
    np.testing.assert_allclose(model.neutral, kit["neutral"] * 10.0, atol=1e-5)
    w = np.zeros(model.identity_dim, np.float32)
    w[3] = 1.5
    np.testing.assert_allclose(model.identity_shape(w), (kit["neutral"] + 1.5 * kit["identity_modes"][3].astype(np.float32)) * 10,
                               atol=1e-3)
    e = np.zeros(model.expression_dim, np.float32)
    e[model.expression_index("jawOpen")] = 0.7
    expected = (kit["neutral"] + 0.7 * kit["expression_modes"][list(kit["expression_names"]).index("jawOpen")].astype(np.float32)) * 10
    np.testing.assert_allclose(model.expressed(model.neutral, e), expected, atol=1e-3)


def test_units_are_millimetres(model):
    width = np.ptp(model.neutral[model.vertex_range("narrow_face")][:, 0])
    assert 120 < width < 180, f"narrow face width {width} mm is not a human face width"


def test_region_masks_cover_intended_regions(model):
    m = model.region_masks
    topo = model.topology
    kit_pos = {k: i for i, k in enumerate(topo.kit_index)}
    eye_lm = [kit_pos[v] for v in model.landmarks68[36:48]]
    mouth_lm = [kit_pos[v] for v in model.landmarks68[48:68]]
    assert m["eyes"][eye_lm].all() and m["mouth"][mouth_lm].all()
    assert not (m["eyes"] & m["mouth"]).any(), "a vertex is both eyes and mouth"
    assert m["face"].all() and len(m["face"]) == topo.vertex_count
    verts = model.neutral[topo.kit_index]
    eye_y = model.eye_centre("left")[1]
    assert verts[m["eyes"], 1].min() > model.mouth_centre[1], "eye region reaches the mouth"
    assert verts[m["mouth"], 1].max() < eye_y, "mouth region reaches the eyes"
    nose_tip = verts[kit_pos[model.landmarks68[30]]]
    assert not m["mouth"][kit_pos[model.landmarks68[30]]] and nose_tip[1] > verts[m["mouth"], 1].mean()


def test_eyeballs_rotate_with_gaze(model):
    e = np.zeros(model.expression_dim, np.float32)
    sl = model.vertex_range("eyeball_left")
    rest = model.expressed(model.neutral, e, np.zeros((2, 2), np.float32))
    looked = model.expressed(model.neutral, e, np.array([[0.3, 0.0], [0.3, 0.0]], np.float32))
    c = model.eye_centre("left")
    np.testing.assert_allclose(np.linalg.norm(rest[sl] - c, axis=1), np.linalg.norm(looked[sl] - c, axis=1), atol=1e-3)
    iris = model.cornea("left")
    assert np.linalg.norm(looked[iris].mean(0) - rest[iris].mean(0)) > 2.0  # the iris moves by millimetres
    np.testing.assert_array_equal(rest[model.vertex_range("narrow_face")], looked[model.vertex_range("narrow_face")])


def test_jaw_moves_teeth(model):
    e = np.zeros(model.expression_dim, np.float32)
    e[model.expression_index("jawOpen")] = 1.0
    moved = np.linalg.norm(model.expressed(model.neutral, e) - model.neutral, axis=1)
    assert moved[model.vertex_range("teeth")].max() > 20.0


def test_mesh_roundtrip_keeps_vertex_order(model, tmp_path):
    topo = model.topology
    verts = model.to_topology(model.neutral)
    for suffix in (".obj", ".ply", ".glb"):
        path = save_mesh(tmp_path / f"n{suffix}", verts, topo.faces)
        loaded, info = load_neutral(path, topo.vertex_count, topo.faces, topo.name)
        np.testing.assert_allclose(loaded, verts, atol=1e-3)
        assert info.matches_topology and info.units == "mm"


def test_wrong_topology_mesh_is_explained(model, tmp_path):
    topo = model.topology
    strip = np.arange(4998)[:, None] + np.arange(3)[None]
    path = save_mesh(tmp_path / "bad.obj", model.neutral[:5000], strip)
    with pytest.raises(MeshError, match=rf"expected {topo.vertex_count} vertices .* got 5000"):
        load_neutral(path, topo.vertex_count, topo.faces, topo.name)
    with pytest.raises(MeshError, match="no such mesh file"):
        load_neutral(tmp_path / "missing.obj", topo.vertex_count)
    (tmp_path / "junk.ply").write_text("this is not a mesh")
    with pytest.raises(MeshError, match="junk.ply"):
        load_neutral(tmp_path / "junk.ply", topo.vertex_count)
