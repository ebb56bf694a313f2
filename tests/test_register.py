"""Registration of neutral scans of any topology, units and pose (engine/registration, `mia register`).

Scans are made from the kit's identities but not in its topology (engine/registration/synthetic.py):
remeshed, cropped, noisy, in other units and at random poses, so the error against the true neutral
can be measured. Decimated scans keep each registration to a few seconds.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from engine.errors import MeshError, MiaError
from engine.facemodel import load_face_model
from engine.registration import (RegistrationCancelled, load_report, register_file, register_scan,
                                 report_path)
from engine.registration.landmarks import LANDMARKS, parse_landmarks
from engine.registration.synthetic import ScanSpec, make_scan
from engine.registration.units import unit_candidates
from engine.synth.config import IdentityConfig
from engine.synth.identity import make_identity

MAX_MEAN_MM = 0.5


@pytest.fixture(scope="module")
def model():
    return load_face_model()


def identity(model, index: int) -> np.ndarray:
    return make_identity(model, index, 11, IdentityConfig()).shape_weights


def errors(verts: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    e = np.linalg.norm(np.asarray(verts, np.float64) - truth, axis=1)
    return float(e.mean()), float(np.percentile(e, 95))


@pytest.mark.parametrize("spec", [
    ScanSpec(remesh="retriangulate", cell_mm=3.0, units="cm", seed=1),
    ScanSpec(remesh="decimate", cell_mm=3.0, units="in", noise_mm=0.1, seed=2),
    ScanSpec(remesh="retriangulate", cell_mm=3.0, crop_front=True, units="m", seed=3),
], ids=["retriangulated-cm", "decimated-noisy-in", "front-crop-m"])
def test_remeshed_scans_register_within_half_a_millimetre(model, spec):
    verts, faces, truth = make_scan(model, identity(model, spec.seed), spec)
    assert len(verts) != len(truth)  # not the model topology
    result = register_scan(verts, faces)
    mean, p95 = errors(result.verts, truth)
    assert mean < MAX_MEAN_MM and p95 < 3 * MAX_MEAN_MM, (mean, p95)
    assert result.verts.shape == truth.shape and np.array_equal(result.faces, model.topology.faces)
    report = result.report
    assert report.units == spec.units
    assert report.mean_mm < 0.5 and report.coverage > 0.6
    assert report.residual_mm.shape == (len(truth),)
    if spec.crop_front:
        assert report.coverage < 0.95  # the sides of the face come from the model fit


def test_units_are_given_or_judged_from_the_size():
    face = np.random.default_rng(0).uniform(-1, 1, (500, 3)) * [70, 100, 50]  # ~200 mm across
    assert [u for u, _ in unit_candidates(face)] == ["mm"]
    assert [u for u, _ in unit_candidates(face / 1000)] == ["m"]
    assert [u for u, _ in unit_candidates(face / 10)] == ["cm"]
    assert {u for u, _ in unit_candidates(face / 10 * 0.6)} == {"cm", "in"}  # ambiguous: the fit decides
    assert unit_candidates(face, "in") == [("in", 25.4)]
    with pytest.raises(MeshError, match="no face size"):
        unit_candidates(face * 100)
    with pytest.raises(MeshError, match="unknown unit"):
        unit_candidates(face, "ft")


def _nose_only(model):
    verts, faces, _ = make_scan(model, identity(model, 5), ScanSpec(remesh="subdivide", pose=False))
    tip = model.identity_shape(identity(model, 5))[model.landmarks68[30]]
    return verts, faces[(np.linalg.norm(verts[faces] - tip, axis=2) < 28).all(1)]


@pytest.mark.parametrize("case, words", [
    ("empty", "no vertices"),
    ("point cloud", "no triangles"),
    ("sphere", "does not look like a face"),
    ("nose only", "fragment"),
])
def test_bad_scans_get_a_clear_message(model, case, words):
    if case == "empty":
        verts, faces = np.zeros((0, 3)), None
    elif case == "point cloud":
        verts, faces = np.random.default_rng(0).normal(size=(2000, 3)) * 60, None
    elif case == "sphere":
        sphere = trimesh.creation.icosphere(4, radius=90.0)
        verts, faces = sphere.vertices, sphere.faces
    else:
        verts, faces = _nose_only(model)
    with pytest.raises(MiaError, match=words) as err:
        register_scan(verts, faces, where="bad.obj")
    assert "bad.obj" in str(err.value)


def test_register_file_writes_a_driveable_neutral_and_its_report(model, tmp_path):
    """An STL export of a neutral in the model topology (STL splits every vertex per triangle)."""
    from engine.io.mesh import load_neutral
    truth = model.to_topology(model.identity_shape(identity(model, 7))).astype(np.float64)
    scan = tmp_path / "scan.stl"
    trimesh.Trimesh(truth / 10.0, model.topology.faces, process=False).export(scan)  # in cm
    out = tmp_path / "me" / "neutral.obj"
    stages = []
    result = register_file(scan, out, progress=lambda done, total, text: stages.append(done))
    topo = model.topology
    verts, info = load_neutral(out, topo.vertex_count, topo.faces, topo.name)
    assert info.matches_topology and stages[-1] == 5
    mean, _ = errors(verts, truth)
    assert mean < 0.2, mean
    report = load_report(report_path(out))
    assert report_path(out).name == "neutral.registration.json"
    assert report.units == "cm" and report.scan_faces == len(topo.faces)
    saved = json.loads(report_path(out).read_text())
    assert len(saved["residual_mm"]) == topo.vertex_count
    assert {"mean_mm", "p95_mm", "coverage", "warnings"} <= set(saved)
    assert np.allclose(np.nan_to_num(report.residual_mm), np.nan_to_num(result.report.residual_mm), atol=1e-3)


def test_landmarks_fix_the_pose(model):
    from scipy.spatial.transform import Rotation
    weights = identity(model, 8)
    verts, faces, truth = make_scan(model, weights, ScanSpec(remesh="retriangulate", cell_mm=3.0, pose=False))
    R = Rotation.from_euler("xyz", [170, -40, 60], degrees=True).as_matrix()
    t = np.array([300.0, -20.0, 55.0])
    marks = {name: (truth[model.landmarks68[i]] @ R.T + t) / 10.0 for name, i in LANDMARKS.items()
             if name in ("nose_tip", "left_eye_outer", "right_eye_outer", "chin")}
    result = register_scan((verts @ R.T + t) / 10.0, faces, landmarks=marks)
    mean, _ = errors(result.verts, truth)
    assert mean < MAX_MEAN_MM and result.report.landmarks == sorted(marks)
    assert result.report.units == "cm"


def test_landmark_files_are_checked():
    ok = parse_landmarks([{"name": "nose_tip", "point": [0, 0, 1]}, {"name": "chin", "point": [0, -5, 0]},
                          {"name": "lm68_36", "point": [-3, 3, 0]}])
    assert set(ok) == {"nose_tip", "chin", "lm68_36"}
    with pytest.raises(MeshError, match="at least 3"):
        parse_landmarks({"nose_tip": [0, 0, 1]})
    with pytest.raises(MeshError, match="unknown landmark"):
        parse_landmarks({"nose": [0, 0, 1], "chin": [0, 1, 0], "lm68_1": [1, 1, 1]})
    with pytest.raises(MeshError, match="three finite numbers"):
        parse_landmarks({"nose_tip": [0, 0], "chin": [0, 1, 0], "lm68_1": [1, 1, 1]})


def test_cancel_writes_nothing(model, tmp_path):
    verts, faces, _ = make_scan(model, identity(model, 9), ScanSpec(remesh="decimate", cell_mm=3.0))
    scan = tmp_path / "scan.ply"
    trimesh.Trimesh(verts, faces, process=False).export(scan)
    with pytest.raises(RegistrationCancelled):
        register_file(scan, tmp_path / "neutral.obj", cancel=lambda: True)
    assert not (tmp_path / "neutral.obj").exists() and not report_path(tmp_path / "neutral.obj").exists()


def test_cli_register_and_its_errors(model, tmp_path, capsys):
    from app.cli import main
    verts, faces, truth = make_scan(model, identity(model, 10), ScanSpec(remesh="decimate", cell_mm=3.0, seed=4))
    scan = tmp_path / "scan.obj"
    trimesh.Trimesh(verts, faces, process=False).export(scan)
    out = tmp_path / "neutral.obj"
    assert main(["register", str(scan), "--out", str(out), "--units", "mm", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "coverage" in printed and out.exists() and report_path(out).exists()
    cloud = tmp_path / "cloud.ply"
    trimesh.PointCloud(verts).export(cloud)
    assert main(["register", str(cloud), "--out", str(tmp_path / "x.obj"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no triangles" in err and "Traceback" not in err
    assert main(["register", str(tmp_path / "missing.obj"), "--out", str(tmp_path / "x.obj"), "--quiet"]) == 2
    assert "no such scan file" in capsys.readouterr().err


@pytest.mark.parametrize("crop", [False, True], ids=["whole-head", "front-crop"])
def test_the_nose_tip_and_looking_direction_are_found_at_any_pose(model, crop):
    """The rigid search's nose-tip starts: at eight random poses the most protruding candidate is the
    nose tip, looking the way the face looks (a whole head's overall shape does not say which way)."""
    from scipy.spatial.transform import Rotation

    from engine.registration.config import RigidConfig
    from engine.registration.rigid import nose_candidates
    from engine.registration.scan import sample_surface
    from engine.registration.template import load_template
    cfg = RigidConfig()
    verts, faces, truth = make_scan(model, identity(model, 12), ScanSpec(remesh="retriangulate", cell_mm=3.0,
                                                                         crop_front=crop, pose=False, seed=12))
    tip = truth[load_template().landmarks68[30]]
    for i, R in enumerate(Rotation.random(8, random_state=0).as_matrix()):
        t = np.array([40.0, -300.0, 120.0]) * (i - 3)
        scan = sample_surface(verts @ R.T + t, faces)
        sub = scan.subsample(cfg.coarse_scan_points)
        found = nose_candidates(scan.points[sub], scan.normals[sub], scan.border[sub], cfg)
        protrusion, point, direction = found[0]
        assert np.linalg.norm(point - (R @ tip + t)) < 10.0, i
        assert np.degrees(np.arccos(np.clip(direction @ R[:, 2], -1, 1))) < 25.0, i
        assert protrusion > 1.3 * found[1][0], i  # the nose stands out clearly from the next candidate


def test_whole_head_scan_the_old_pose_search_missed_registers(model):
    """The speed benchmark's 5th head (identity and pose of its run 4), re-triangulated on a 3 mm grid:
    the search from principal axes alone (with the whole-head template) put the face 5.6 mm off, without
    a warning; the nose-tip starts find it."""
    weights = make_identity(model, 204, 3, IdentityConfig()).shape_weights
    verts, faces, truth = make_scan(model, weights, ScanSpec(remesh="retriangulate", cell_mm=3.0, units="cm", seed=4))
    result = register_scan(verts, faces, units="cm")
    mean, p95 = errors(result.verts, truth)
    assert mean < MAX_MEAN_MM and p95 < 3 * MAX_MEAN_MM, (mean, p95)
    assert result.report.warnings == []


def test_a_face_put_in_the_wrong_place_is_never_written_silently(model):
    """With the nose-tip starts switched off, the search misses the face of this whole-head scan (inches
    and centimetres both tried); the result is 26 mm off and must carry a warning, not pass quietly."""
    from engine.registration.config import RegistrationConfig
    cfg = RegistrationConfig()
    cfg.rigid.nose_tips = 0
    weights = make_identity(model, 503, 3, IdentityConfig()).shape_weights
    verts, faces, truth = make_scan(model, weights, ScanSpec(remesh="retriangulate", cell_mm=2.5, units="in",
                                                             seed=1003))
    try:
        result = register_scan(verts, faces, units="in", config=cfg)
    except MiaError as error:
        assert "does not look like a face" in str(error)
        return
    mean, _ = errors(result.verts, truth)
    assert mean < 2.0 or any("uncertain pose" in w for w in result.report.warnings), (mean, result.report.warnings)


def test_scan_noise_is_estimated_and_a_noisy_scan_registers(model):
    """0.5 mm vertex noise: the estimate reads it, and the wider border and the model's normals keep the
    registration within the target (it was 0.53 mm for this head before them)."""
    from engine.registration.scan import estimate_noise
    weights = make_identity(model, 500, 3, IdentityConfig()).shape_weights
    clean, faces, _ = make_scan(model, weights, ScanSpec(remesh="retriangulate", cell_mm=2.5, pose=False, seed=500))
    assert estimate_noise(clean, faces) < 0.1
    noisy = clean + np.random.default_rng(0).normal(0, 0.5, clean.shape)
    assert 0.4 < estimate_noise(noisy, faces) < 0.6
    verts, faces, truth = make_scan(model, weights, ScanSpec(remesh="retriangulate", cell_mm=2.5, noise_mm=0.5,
                                                             seed=500))
    result = register_scan(verts, faces, units="mm")
    mean, p95 = errors(result.verts, truth)
    assert mean < MAX_MEAN_MM and p95 < 3 * MAX_MEAN_MM, (mean, p95)
    assert 0.4 < result.report.scan_noise_mm < 0.6


def test_landmarks_given_are_saved_beside_the_result(model, tmp_path):
    from engine.registration.landmarks import landmarks_path, load_landmarks
    weights = identity(model, 8)
    verts, faces, truth = make_scan(model, weights, ScanSpec(remesh="decimate", cell_mm=3.0, pose=False))
    scan = tmp_path / "scan.ply"
    trimesh.Trimesh(verts, faces, process=False).export(scan)
    kit = list(map(int, model.topology.kit_index))
    marks = {name: truth[kit.index(int(model.landmarks68[i]))] for name, i in LANDMARKS.items()
             if name in ("nose_tip", "chin", "left_eye_outer")}
    out = tmp_path / "me" / "neutral.obj"
    result = register_file(scan, out, landmarks={k: v.tolist() for k, v in marks.items()})
    assert result.report.landmarks == sorted(marks)
    saved = load_landmarks(landmarks_path(out))
    assert landmarks_path(out).name == "neutral.landmarks.json"
    assert set(saved) == set(marks) and all(np.allclose(saved[k], marks[k]) for k in marks)
    again = tmp_path / "again" / "neutral.obj"
    register_file(scan, again, landmarks_path=landmarks_path(out))  # the saved file is a --landmarks file
    assert set(load_landmarks(landmarks_path(again))) == set(marks)
    with pytest.raises(MeshError, match="at least 3"):
        register_file(scan, tmp_path / "x.obj", landmarks={"nose_tip": [0, 0, 0]})


def test_a_coarse_front_crop_is_fitted_to_the_measured_vertices_not_the_chords(model):
    """A 2.5 mm front crop of identity 602 (the kit's identity furthest from average among the benchmark's
    crops): its triangles are chords that cut the curved skin, and fitted to them (model vertex -> scan
    triangle only) the face slid along itself to 0.72 mm off. Fitted to the scan's own vertices it is
    within the target, and clearly closer than that way."""
    from engine.registration.config import RegistrationConfig
    weights = make_identity(model, 602, 3, IdentityConfig()).shape_weights
    verts, faces, truth = make_scan(model, weights, ScanSpec(remesh="retriangulate", cell_mm=2.5, crop_front=True,
                                                             units="m", seed=1002))
    measured, _ = errors(register_scan(verts, faces, units="m").verts, truth)
    chords_only = RegistrationConfig()
    chords_only.identity.measured_vertices = False
    chords, _ = errors(register_scan(verts, faces, units="m", config=chords_only).verts, truth)
    assert measured < MAX_MEAN_MM and measured < 0.6 * chords, (measured, chords)
