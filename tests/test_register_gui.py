"""The neutral panel's Register button and heat map, and the window running a registration off the
GUI thread (pytest-qt under Xvfb)."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

pytestmark = [pytest.mark.gui]
WAIT_MS = 300_000  # a registration takes ~5 s alone, minutes on this machine when it is busy


@pytest.fixture(autouse=True)
def studio_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MIA_STUDIO_HOME", str(tmp_path / "home"))
    import app.paths as paths
    monkeypatch.setattr(paths, "DEFAULT_MODEL", tmp_path / "no_default_model.pt")
    monkeypatch.setattr(paths, "DEMO_CAPTURE", tmp_path / "no_demo_capture")


def write_scan(path, seed: int = 0):
    from engine.facemodel import load_face_model
    from engine.registration.synthetic import ScanSpec, make_scan
    model = load_face_model()
    weights = np.random.default_rng(seed).normal(0, 1, 40).astype(np.float32)
    verts, faces, truth = make_scan(model, weights, ScanSpec(remesh="decimate", cell_mm=3.0, units="cm", seed=seed))
    trimesh.Trimesh(verts, faces, process=False).export(path)
    return truth


def test_panel_register_button_and_heat_map(qtbot, monkeypatch, tmp_path):
    from PySide6.QtWidgets import QFileDialog

    from widgets.neutral_panel import NeutralMeshPanel
    panel = NeutralMeshPanel()
    qtbot.addWidget(panel)
    scan, out = str(tmp_path / "scan.stl"), str(tmp_path / "me" / "neutral.obj")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (scan, ""))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (out, ""))
    with qtbot.waitSignal(panel.register_requested) as blocker:
        panel.register_button.click()
    assert blocker.args == [scan, out]

    verts = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [10, 10, 1]], np.float64)
    faces = np.array([[0, 1, 2], [1, 3, 2]])
    panel.show_registration(verts, faces, np.array([0.1, 0.2, np.nan, 0.9]), "residual mean 0.40 mm",
                            ["poor fit: check"], scale_mm=1.0)
    assert panel.residual_map.has_map and "0.40 mm" in panel.registration_text
    assert "poor fit" in panel.registration_text
    image = panel.residual_map.pixmap().toImage()
    assert image.width() > 0 and len({image.pixel(x, y) for x in range(0, image.width(), 7)
                                      for y in range(0, image.height(), 7)}) > 2  # drawn, not blank
    panel.set_registering(True)
    assert not panel.register_button.isEnabled()
    panel.clear_registration()
    assert not panel.residual_map.has_map


def test_window_registers_a_scan_and_drives_it(qtbot, tmp_path):
    from app.logs import setup_logging
    from app.main_window import MainWindow
    setup_logging()
    win = MainWindow(threads=1)
    qtbot.addWidget(win)
    try:
        scan, out = tmp_path / "scan.ply", tmp_path / "me" / "neutral.obj"
        truth = write_scan(scan)
        task, dialog = win.register_scan(str(scan), str(out))
        qtbot.waitUntil(lambda: not dialog.running and win.neutral_panel.register_button.isEnabled(),
                        timeout=WAIT_MS)
        assert dialog.error_text == "", dialog.error_text
        assert out.exists() and (tmp_path / "me" / "neutral.registration.json").exists()
        assert win.neutral_panel.residual_map.has_map
        assert "me" in win.session.subject_names()  # driven like any loaded neutral
        assert "coverage" in win.neutral_panel.registration_text
        from engine.io.mesh import load_mesh
        verts, _ = load_mesh(out)
        assert np.linalg.norm(verts - truth, axis=1).mean() < 0.5

        sphere = tmp_path / "sphere.obj"
        trimesh.creation.icosphere(4, radius=9.0).export(sphere)
        task, dialog = win.register_scan(str(sphere), str(tmp_path / "s" / "neutral.obj"))
        qtbot.waitUntil(lambda: not dialog.running, timeout=WAIT_MS)
        assert "does not look like a face" in dialog.error_text and "Traceback" not in dialog.error_text
        assert not (tmp_path / "s" / "neutral.obj").exists()
    finally:
        win.close()


def test_cancelled_registration_writes_nothing(qtbot, tmp_path):
    from app.workers import Task
    from app.registration import register
    scan, out = tmp_path / "scan.ply", tmp_path / "neutral.obj"
    write_scan(scan, seed=1)
    task = Task(lambda ctx: register(ctx, str(scan), str(out)), "Register scan")
    task.cancel()
    with qtbot.waitSignal(task.cancelled, timeout=WAIT_MS):
        task.start_task()
    task.wait(WAIT_MS)
    assert not out.exists()


def write_front_scan(path, seed: int = 2):
    """A decimated scan in cm, looking along +z (so the picker's front view sees the face); returns
    {landmark name: point in the scan's cm} for the names the picker asks for."""
    from engine.facemodel import load_face_model
    from engine.registration.landmarks import landmark_index
    from engine.registration.synthetic import ScanSpec, make_scan
    from widgets.landmark_picker import PICK_ORDER
    model = load_face_model()
    weights = np.random.default_rng(seed).normal(0, 1, 40).astype(np.float32)
    verts, faces, truth = make_scan(model, weights, ScanSpec(remesh="decimate", cell_mm=3.0, units="cm", pose=False,
                                                             seed=seed))
    trimesh.Trimesh(verts, faces, process=False).export(path)
    lm = {int(k): i for i, k in enumerate(model.topology.kit_index)}
    return {name: truth[lm[int(model.landmarks68[landmark_index(name)])]] / 10.0 for name, _ in PICK_ORDER}


def on_skin(path, points):
    """Each point moved to the nearest scan vertex off the open border that faces the viewer (the eye
    corners lie on the border of the eye openings, where a click can go through the hole)."""
    mesh = trimesh.load(path, process=False)
    border = np.zeros(len(mesh.vertices), bool)
    border[mesh.edges[trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)].ravel()] = True
    ok = ~border & (mesh.vertex_normals[:, 2] > 0.5)
    ok[mesh.edges[border[mesh.edges].any(1)].ravel()] = False  # and off the ring next to it
    candidates = np.flatnonzero(ok)
    return {name: mesh.vertices[candidates[np.argmin(np.linalg.norm(mesh.vertices[candidates] - p, axis=1))]]
            for name, p in points.items()}


def click(qtbot, picker, point):
    from PySide6.QtCore import QPoint, Qt
    x, y = picker.screen_position(point)
    qtbot.mouseClick(picker.canvas_widget, Qt.MouseButton.LeftButton, pos=QPoint(round(x), round(y)))


def test_picker_names_are_the_engines():
    from engine.registration.landmarks import landmark_index
    from widgets.landmark_picker import PICK_ORDER
    assert [landmark_index(name) for name, _ in PICK_ORDER]  # raises on a name the engine does not know


def test_landmarks_are_picked_by_clicking_the_scan(qtbot, tmp_path):
    from widgets.neutral_panel import NeutralMeshPanel
    panel = NeutralMeshPanel()
    qtbot.addWidget(panel)
    panel.resize(420, 900)
    panel.show()
    qtbot.waitExposed(panel)
    scan = str(tmp_path / "scan.ply")
    targets = on_skin(scan, write_front_scan(scan))
    assert not panel.open_scan_for_picking(str(tmp_path / "missing.ply"))
    assert panel.open_scan_for_picking(scan)
    picker = panel.picker
    qtbot.waitUntil(lambda: picker.canvas_widget.width() > 100)
    assert picker.picks.current == "nose_tip" and not panel.register_picked_button.isEnabled()
    for name in ("nose_tip", "right_eye_outer", "right_eye_inner"):
        click(qtbot, picker, targets[name])
        assert name in picker.picks.points, (name, picker.hint.text())
        assert np.linalg.norm(picker.picks.points[name] - targets[name]) < 0.15  # cm: the scan point clicked (to a pixel)
    x, y = picker.screen_position(targets["chin"])
    from PySide6.QtCore import QPoint, Qt
    qtbot.mousePress(picker.canvas_widget, Qt.MouseButton.LeftButton, pos=QPoint(round(x), round(y)))
    qtbot.mouseRelease(picker.canvas_widget, Qt.MouseButton.LeftButton, pos=QPoint(round(x) + 40, round(y)))
    assert len(picker.picks.points) == 3  # a drag orbits, it does not pick
    assert picker.pick_at((2.0, 2.0)) is None and "No scan" in picker.hint.text()  # the background
    assert panel.register_picked_button.isEnabled() and panel.landmarks_for(scan) is not None
    assert panel.landmarks_for(str(tmp_path / "other.ply")) is None
    picker.undo_button.click()
    assert list(picker.picks.points) == ["nose_tip", "right_eye_outer"] and panel.landmarks_for(scan) is None
    assert not panel.register_picked_button.isEnabled()
    for name in ("right_eye_inner", "left_eye_inner", "left_eye_outer", "mouth_right"):
        click(qtbot, picker, targets[name])
    assert set(panel.landmarks_for(scan)) == {"nose_tip", "right_eye_outer", "right_eye_inner", "left_eye_inner",
                                              "left_eye_outer", "mouth_right"}
    picker.clear_button.click()
    assert picker.picks.points == {} and picker.picks.current == "nose_tip"


def test_window_registers_with_picked_landmarks(qtbot, monkeypatch, tmp_path):
    import json

    from PySide6.QtWidgets import QFileDialog

    from app.logs import setup_logging
    from app.main_window import MainWindow
    from engine.registration.landmarks import load_landmarks
    setup_logging()
    win = MainWindow(threads=1)
    qtbot.addWidget(win)
    try:
        scan, out = tmp_path / "scan.ply", tmp_path / "me" / "neutral.obj"
        targets = write_front_scan(scan, seed=3)
        panel = win.neutral_panel
        assert panel.open_scan_for_picking(str(scan))
        names = ("nose_tip", "right_eye_outer", "left_eye_outer", "chin")
        for name in names:
            panel.picker.picks.add(targets[name], name)  # through the model (the clicks are tested above)
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
        panel.register_picked_button.click()
        qtbot.waitUntil(lambda: win.studio_actions.jobs and not win.studio_actions.jobs[-1][1].running
                        and panel.register_button.isEnabled(), timeout=WAIT_MS)
        dialog = win.studio_actions.jobs[-1][1]
        assert dialog.error_text == "", dialog.error_text
        report = json.loads((tmp_path / "me" / "neutral.registration.json").read_text())
        assert report["landmarks"] == sorted(names)  # the registration got the picks
        saved = load_landmarks(tmp_path / "me" / "neutral.landmarks.json")  # the --landmarks format
        assert set(saved) == set(names)
        for name in names:
            assert np.allclose(saved[name], targets[name])
        assert "me" in win.session.subject_names()
    finally:
        win.close()
