"""The neutral panel's Register button and heat map, and the window running a registration off the
GUI thread (pytest-qt under Xvfb)."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

pytestmark = [pytest.mark.gui]
WAIT_MS = 120_000


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
        from engine.meshio import load_mesh
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
