"""The real MIA Studio window, driven with pytest-qt under Xvfb.

A tiny untrained model and a short synthetic dataset (app/sample_data.py) stand in for the shipped
files: id000 and id001 have an adaptation layer and an avatar (textured), id002 is shape-only.
Screenshots go to MIA_SCREENSHOT_DIR when set (else the test's tmp folder) and must not be blank.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt

pytestmark = [pytest.mark.gui, pytest.mark.opengl]
WAIT_MS = 90_000
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from app.sample_data import make_sample_data
    return make_sample_data(tmp_path_factory.mktemp("studio"), identities=3, frames=24, image_size=48, textured=2)


@pytest.fixture(autouse=True)
def studio_home(tmp_path, monkeypatch):
    """Settings, profiles and the log in a throw-away folder; no shipped model or demo capture."""
    monkeypatch.setenv("MIA_STUDIO_HOME", str(tmp_path / "home"))
    import app.paths as paths
    monkeypatch.setattr(paths, "DEFAULT_MODEL", tmp_path / "no_default_model.pt")
    monkeypatch.setattr(paths, "DEMO_CAPTURE", tmp_path / "no_demo_capture")
    return tmp_path / "home"


@pytest.fixture
def window(qtbot):
    from app.logs import setup_logging
    from app.main_window import MainWindow
    setup_logging()
    win = MainWindow(threads=2)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


class Frames:
    """Collects the bundles the session hands to the GUI."""

    def __init__(self, session) -> None:
        self.bundles: list = []
        session.frame_ready.connect(self.bundles.append)

    def answer(self, request: int):
        return next((b for b in reversed(self.bundles) if b.request == request), None)

    @property
    def last(self):
        return next((b for b in reversed(self.bundles) if b.fresh), None)


def screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("MIA_SCREENSHOT_DIR") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def assert_not_blank(rgb: np.ndarray, what: str) -> None:
    assert rgb.ndim == 3 and rgb.shape[0] > 100 and rgb.shape[1] > 100, what
    assert float(rgb.std()) > 15.0, f"{what} looks blank (std {rgb.std():.1f})"
    assert len(np.unique(rgb.reshape(-1, 3)[::97], axis=0)) > 50, f"{what} has too few colours"


def viewer_foreground(rgb: np.ndarray) -> float:
    """Share of viewer pixels that are not its background."""
    background = np.array([33, 36, 41])
    return float((np.abs(rgb.astype(int) - background).sum(-1) > 30).mean())


def open_capture(qtbot, window, sample, frames: int = 5) -> None:
    window.open_model(str(sample.model))
    window.open_capture(str(sample.capture))
    qtbot.waitUntil(lambda: bool(window.session.model_info), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.session.frames_shown >= frames and window.presenter.last is not None
                    and window.presenter.last.mesh is not None, timeout=WAIT_MS)


# --------------------------------------------------------------------------- capture playback
def test_open_capture_play_seek_and_screenshot(qtbot, window, sample, tmp_path):
    frames = Frames(window.session)
    open_capture(qtbot, window, sample, frames=12)
    s = window.session
    assert s.source_info["kind"] == "capture" and s.frame_count == 24 and s.playing
    assert s.model_info["backend"] == "onnx"  # a CPU machine with onnxruntime: B + G run there
    assert window.playback.slider.maximum() == 23
    assert s.subject_info["name"] == "id000" and s.subject_info["textured"]
    assert "texture" in window.neutral_panel._fields["mode"].text()
    last = frames.last
    assert last.mesh.shape == last.ground_truth.shape == (window.topology.vertex_count, 3)
    assert last.texture is not None and last.vertex_error is not None
    assert set(last.normals) == {"mesh", "ground_truth"}  # lit off the GUI thread
    canvas = window.viewer.canvas
    if hasattr(canvas, "submit"):  # offscreen canvases start drawing when Qt is about to paint the window
        submitted = []
        original = canvas.submit
        canvas.submit = lambda: submitted.append(1) or original()
        shown = window.session.frames_shown
        qtbot.waitUntil(lambda: window.session.frames_shown >= shown + 3, timeout=WAIT_MS)
        del canvas.submit
        assert submitted, "the viewer's drawing was never started before a paint"
    drawn = window.viewer._driven.visual.mesh_data.get_vertex_normals(indexed="faces")
    np.testing.assert_array_equal(drawn, window.presenter.last.normals["mesh"])  # the worker's, not recomputed
    assert set(last.region_error) == {"eyes", "mouth", "face"}
    assert window.viewer.ground_truth_shown
    assert [window.hmc.camera_state(c) for c in range(3)] == ["recorded"] * 3

    s.pause()
    qtbot.waitUntil(lambda: not s.playing, timeout=WAIT_MS)
    request = s.seek(7)
    qtbot.waitUntil(lambda: frames.answer(request) is not None, timeout=WAIT_MS)
    assert frames.answer(request).index == 7
    again = frames.answer(request)  # frame 7 was played before: its ground truth's normals are the kept ones
    from engine.mesh_normals import TopologyNormals
    np.testing.assert_allclose(again.normals["ground_truth"],
                               TopologyNormals(window.topology.faces)(again.ground_truth), atol=1e-6)
    qtbot.waitUntil(lambda: window.playback.frame == 7, timeout=WAIT_MS)
    request = s.step(+1)
    qtbot.waitUntil(lambda: frames.answer(request) is not None, timeout=WAIT_MS)
    assert frames.answer(request).index == 8 and not s.playing

    qtbot.mouseClick(window.playback.play_button, Qt.MouseButton.LeftButton)  # play from the bar
    qtbot.waitUntil(lambda: s.playing and s.frame_index > 9, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: s.errors.count >= 20, timeout=WAIT_MS)  # curves fill in as it plays
    window.presenter.refresh_plots(s.errors)
    x, y = window.error_plots.curve_data("face")
    assert np.isfinite(y).sum() == s.errors.count >= 20
    assert window.summary.rowCount() == 1 and "±" in window.summary.cell_text(0, "Eyes")

    qtbot.waitUntil(lambda: window.presenter.render_ms > 0, timeout=WAIT_MS)
    qtbot.wait(300)
    shot = window.grab_window()
    path = screenshot_dir(tmp_path) / "studio_capture.png"
    assert window.save_screenshot(str(path))
    assert_not_blank(shot, "window screenshot")
    saved = cv2.imread(str(path))
    assert saved is not None and saved.shape[:2] == shot.shape[:2]
    view = window.viewer.grab_image()
    assert viewer_foreground(view) > 0.05, "the 3D viewer shows no face"
    numbers = window.status.fields["fps"].text()
    assert "fps" in numbers and window.status.fields["model"].text() == "tiny_model.pt"


def test_a_model_onnxruntime_cannot_run_is_driven_in_torch(qtbot, window, sample, monkeypatch):
    import engine.runtime.inference as inference

    def refuse(*_args, **_kwargs):
        raise RuntimeError("onnxruntime cannot run this graph")
    monkeypatch.setattr(inference, "_OnnxRunner", refuse)
    open_capture(qtbot, window, sample, frames=3)
    assert window.session.model_info["backend"] == "torch"
    assert window.presenter.last.mesh is not None


def test_test_time_averaging_from_the_view_menu_reloads_the_model_and_keeps_the_subject(qtbot, window, sample):
    open_capture(qtbot, window, sample, frames=3)
    s = window.session
    assert s.model_info["averaging"] == 1 and s.model_info["mirror"]
    assert window.averaging_actions[1, True].isChecked()  # live default: the frame + its mirror image
    assert "mirror reads" in window.status.fields["device"].text()
    subject = s.subject_info["name"]
    window.averaging_actions[4, False].trigger()
    qtbot.waitUntil(lambda: s.model_info.get("averaging") == 4, timeout=WAIT_MS)
    assert window.averaging_actions[4, False].isChecked() and s.averaging == 4 and s.mirror is False
    assert "4-copy averaging" in window.status.fields["device"].text()
    shown = s.frames_shown
    qtbot.waitUntil(lambda: s.frames_shown > shown + 2, timeout=WAIT_MS)  # still driving
    assert s.subject_info["name"] == subject and window.presenter.last.mesh is not None
    window.averaging_actions[1, False].trigger()
    qtbot.waitUntil(lambda: s.model_info.get("averaging") == 1 and not s.model_info.get("mirror"), timeout=WAIT_MS)
    assert window.averaging_actions[1, False].isChecked() and s.mirror is False
    assert "averaging" not in window.status.fields["device"].text()
    assert "mirror" not in window.status.fields["device"].text()
    shown = s.frames_shown
    qtbot.waitUntil(lambda: s.frames_shown > shown + 2, timeout=WAIT_MS)  # still driving, read once
    window.averaging_actions[1, True].trigger()
    qtbot.waitUntil(lambda: s.model_info.get("averaging") == 1 and s.model_info.get("mirror"), timeout=WAIT_MS)
    assert window.averaging_actions[1, True].isChecked() and s.mirror is True
    assert "mirror reads" in window.status.fields["device"].text()
    assert "averaging" not in window.status.fields["device"].text()
    with pytest.raises(ValueError, match="at least one copy"):
        s.set_averaging(0)


def test_view_modes_and_click_to_seek(qtbot, window, sample, tmp_path):
    frames = Frames(window.session)
    open_capture(qtbot, window, sample, frames=24)
    s = window.session
    s.pause()
    qtbot.waitUntil(lambda: not s.playing, timeout=WAIT_MS)
    pictures = {}
    for mode in ("shaded", "textured", "wireframe", "error"):
        window.set_view_mode(mode)
        assert window.viewer.mode == mode and window.mode_actions[mode].isChecked()
        qtbot.wait(100)
        pictures[mode] = window.viewer.grab_image()
        assert viewer_foreground(pictures[mode]) > 0.05, mode
    assert np.abs(pictures["shaded"].astype(int) - pictures["error"].astype(int)).mean() > 1.0
    assert np.abs(pictures["shaded"].astype(int) - pictures["wireframe"].astype(int)).mean() > 0.5
    cv2.imwrite(str(screenshot_dir(tmp_path) / "viewer_error_map.png"), pictures["error"][..., ::-1])
    window.set_error_scale(2.0)
    assert window.presenter.error_scale_mm == 2.0 and window.scale_actions[2.0].isChecked()

    camera = window.viewer._view.camera  # orbit with a left drag, zoom with the wheel
    azimuth, scale = camera.azimuth, camera.scale_factor
    drag(qtbot, window.viewer.canvas_widget, (200, 200), (320, 230))
    assert abs(camera.azimuth - azimuth) > 5.0
    wheel(window.viewer.canvas_widget, (200, 200), 240)
    assert camera.scale_factor < scale
    window.viewer.reset_camera()
    assert abs(camera.azimuth - azimuth) < 1e-6

    window.presenter.refresh_plots(s.errors)
    plot = window.error_plots
    qtbot.waitUntil(lambda: "face" in plot.curve_names, timeout=WAIT_MS)
    pos = plot.view_to_widget(15, float(np.nanmean(plot.curve_data("face")[1]))).toPoint()
    count = len(frames.bundles)
    qtbot.mouseClick(plot.plot.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.waitUntil(lambda: any(b.index == 15 and b.request for b in frames.bundles[count:]), timeout=WAIT_MS)
    assert window.playback.frame == 15 and not s.playing


def drag(qtbot, widget, start: tuple[int, int], end: tuple[int, int], steps: int = 6) -> None:
    """A left-button drag delivered as real Qt mouse events."""
    from PySide6.QtCore import QEvent, QPointF
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton

    def send(kind, pos, button, buttons):
        point = QPointF(*pos)
        QApplication.sendEvent(widget, QMouseEvent(kind, point, widget.mapToGlobal(point), button, buttons,
                                                   Qt.KeyboardModifier.NoModifier))
    send(QEvent.Type.MouseButtonPress, start, left, left)
    for k in range(1, steps + 1):
        qtbot.wait(20)  # vispy ignores moves closer than 10 ms apart
        pos = tuple(a + (b - a) * k / steps for a, b in zip(start, end))
        send(QEvent.Type.MouseMove, pos, none, left)
    send(QEvent.Type.MouseButtonRelease, end, left, none)


def wheel(widget, pos: tuple[int, int], delta: int) -> None:
    from PySide6.QtCore import QPoint, QPointF
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication
    point = QPointF(*pos)
    QApplication.sendEvent(widget, QWheelEvent(point, widget.mapToGlobal(point), QPoint(), QPoint(0, delta),
                                               Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                                               Qt.ScrollPhase.NoScrollPhase, False))


# --------------------------------------------------------------------------- neutral meshes
def write_small_obj(path: Path, n: int = 100) -> Path:
    rng = np.random.default_rng(0)
    v = rng.normal(0, 50, (n, 3))
    lines = [f"v {a:.3f} {b:.3f} {c:.3f}" for a, b, c in v] + [f"f {i} {i + 1} {i + 2}" for i in range(1, n - 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_good_and_bad_neutral_meshes(qtbot, window, sample, tmp_path):
    open_capture(qtbot, window, sample)
    s, panel = window.session, window.neutral_panel
    frames = Frames(s)

    assert window.load_neutral(str(sample.subject_dir("id002") / "neutral.obj"))
    qtbot.waitUntil(lambda: s.subject_info.get("name") == "id002", timeout=WAIT_MS)
    assert panel._fields["topology"].text() == "matches the model"
    assert panel._fields["vertices"].text() == f"{window.topology.vertex_count:,}"
    assert panel._fields["units"].text() == "mm" and "×" in panel._fields["size"].text()
    assert panel._fields["mode"].text().startswith("shape only")  # no F_i for id002
    assert not s.subject_info["textured"]
    qtbot.waitUntil(lambda: frames.last is not None and frames.last.texture is None, timeout=WAIT_MS)

    import trimesh  # the same mesh as PLY and GLB (vertex order kept) is just as good
    verts, faces = trimesh.load(sample.subject_dir("id002") / "neutral.obj", process=False, force="mesh").vertices, \
        window.topology.faces
    for suffix in (".ply", ".glb"):
        path = tmp_path / f"id002_scan{suffix}"
        trimesh.Trimesh(verts, faces, process=False).export(path)
        assert window.load_neutral(str(path)), panel.message_text
        assert panel._fields["topology"].text() == "matches the model"

    assert window.load_neutral(str(sample.subject_dir("id001") / "neutral.obj"))
    qtbot.waitUntil(lambda: s.subject_info.get("name") == "id001", timeout=WAIT_MS)
    assert panel._fields["mode"].text().startswith("shape + texture") and s.subject_info["textured"]

    bad = write_small_obj(tmp_path / "scan.obj")
    assert not window.load_neutral(str(bad))
    assert panel._fields["topology"].text() == "does not match the model"
    assert f"expected {window.topology.vertex_count} vertices" in panel.message_text
    assert panel._fields["vertices"].text() == "100" and panel._fields["mode"].text() == "not drivable"
    assert window.status.is_error and "Traceback" not in window.status.message_text
    assert s.subject_info.get("name") == "id001"  # the bad mesh changed nothing

    broken = tmp_path / "broken.ply"
    broken.write_bytes(b"ply\nthis is not a mesh\n")
    assert not window.load_neutral(str(broken))
    assert panel.message.is_error and "broken.ply" in panel.message_text
    assert "Traceback" not in panel.message_text
    assert not window.load_neutral(str(tmp_path / "missing.obj"))
    assert "no such mesh file" in panel.message_text


# --------------------------------------------------------------------------- sources
def test_switch_between_capture_synthetic_and_live_cameras(qtbot, window, sample, tmp_path):
    from app.fake_headset import FakeHeadset, capture_frames
    frames = Frames(window.session)
    open_capture(qtbot, window, sample)
    s, panel = window.session, window.source_panel

    panel.set_kind("synthetic")
    panel.synthetic.subject_combo.setCurrentText("id002")
    panel.synthetic.seed_spin.setValue(4)
    qtbot.mouseClick(panel.open_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: s.source_info.get("kind") == "synthetic", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: frames.last is not None and frames.last.live and frames.last.mesh is not None,
                    timeout=WAIT_MS)
    assert frames.last.ground_truth is not None and frames.last.vertex_error is not None
    assert s.subject_info["name"] == "id002" and window.playback.frame_label.text() == "live"
    assert not window.playback.play_button.isEnabled()

    headset = FakeHeadset(capture_frames(sample.capture), fps=30).start()
    try:
        panel.set_kind("cameras")
        page = panel.cameras
        page.headset_combo.setCurrentText("bench-rig")
        for cam in range(3):
            page.url_edits[cam].setText(headset.url(cam))
        page.rotate_combos[2].setCurrentIndex(2)  # 180°
        qtbot.mouseClick(panel.open_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: s.source_info.get("kind") == "cameras", timeout=WAIT_MS)
        qtbot.waitUntil(lambda: all(window.hmc.camera_state(c).startswith("live") for c in range(3)),
                        timeout=WAIT_MS)
        assert "bench-rig" in s.profiles.names()
        assert s.profiles.get("bench-rig")[2].rotate == 180
        assert window.source_panel.cameras.headset_combo.findText("bench-rig") >= 0
        # live input with no subject id: the template face is driven until a neutral mesh is loaded
        qtbot.waitUntil(lambda: frames.last is not None and frames.last.mesh is not None and
                        frames.last.live, timeout=WAIT_MS)
        shot = window.grab_window()
        cv2.imwrite(str(screenshot_dir(tmp_path) / "studio_live_cameras.png"), shot[..., ::-1])
        assert_not_blank(shot, "live screenshot")

        headset.stop()
        qtbot.waitUntil(lambda: all("no signal" in window.hmc.camera_state(c) for c in range(3)), timeout=WAIT_MS)
        assert window.isVisible()
        headset.start()
        qtbot.waitUntil(lambda: all(window.hmc.camera_state(c).startswith("live") for c in range(3)),
                        timeout=WAIT_MS)
    finally:
        headset.stop()

    window.open_capture(str(sample.captures[1]))
    qtbot.waitUntil(lambda: s.source_info.get("kind") == "capture" and s.subject_info.get("name") == "id001",
                    timeout=WAIT_MS)


def test_window_keeps_qt_actions_and_long_jobs_apart(window):
    assert callable(window.actions) and isinstance(window.actions(), list)  # QWidget.actions(), not shadowed
    assert window.studio_actions.jobs == [] and window.studio_actions.window is window
    assert window.topology is window.session.topology is not None


def test_bad_capture_is_a_message_not_a_traceback(qtbot, window, tmp_path):
    window.open_capture(str(tmp_path / "nowhere"))
    qtbot.waitUntil(lambda: window.status.is_error, timeout=WAIT_MS)
    text = window.status.message_text
    assert "nowhere" in text and "capture" in text and "Traceback" not in text
    assert window.source_panel.status.is_error


def test_starts_without_model_or_demo_capture(qtbot, window):
    window.start()
    s = window.session
    qtbot.waitUntil(lambda: s.source_info.get("kind") == "synthetic" and s.frames_shown >= 2, timeout=WAIT_MS)
    assert "No model loaded" in window.status.message_text or "No model loaded" in window.status._standing
    assert window.status.fields["model"].text() == "no model"
    image = window.hmc._images[0].image
    assert image is not None and image.std() > 1.0  # the feeds show without a model


# --------------------------------------------------------------------------- retargeting
def test_retarget_subjects_shape_only_and_textured(qtbot, window, sample, tmp_path):
    frames = Frames(window.session)
    open_capture(qtbot, window, sample)
    s, grid = window.session, window.retarget
    qtbot.waitUntil(lambda: grid.subject_list.count() >= 3, timeout=WAIT_MS)
    for i in range(grid.subject_list.count()):
        item = grid.subject_list.item(i)
        if item.text() in ("id001", "id002"):
            item.setCheckState(Qt.CheckState.Checked)
    qtbot.waitUntil(lambda: sorted(s.driven_targets) == ["id001", "id002"], timeout=WAIT_MS)
    assert grid.view_names == ["id001", "id002"]
    qtbot.waitUntil(lambda: frames.last is not None and set(frames.last.targets) == {"id001", "id002"},
                    timeout=WAIT_MS)
    assert all(tex is None for _m, tex in frames.last.targets.values())  # shape only by default

    grid.set_textured(True)
    qtbot.waitUntil(lambda: frames.last is not None and frames.last.targets.get("id001", (0, None))[1] is not None,
                    timeout=WAIT_MS)
    assert frames.last.targets["id002"][1] is None  # no F_i: shape only even when textured is asked
    mesh_1, mesh_2 = frames.last.targets["id001"][0], frames.last.targets["id002"][0]
    assert not np.allclose(mesh_1, mesh_2)  # each target keeps its own identity
    qtbot.wait(300)
    picture = grid.grab_image()
    cv2.imwrite(str(screenshot_dir(tmp_path) / "retarget_grid.png"), picture[..., ::-1])
    assert viewer_foreground(picture) > 0.03
    assert window.settings.targets() == ["id001", "id002"]

    # tabbed behind the Output panel the grid is still isVisible() for Qt, but it is not drawn
    draws: list[int] = []
    grid.canvas.events.draw.connect(lambda _e: draws.append(1))
    window.docks["output"].raise_()
    qtbot.waitUntil(lambda: not window.on_screen(grid), timeout=WAIT_MS)
    assert grid.isVisible()
    qtbot.wait(200)
    draws.clear()
    shown = len(frames.bundles)
    qtbot.waitUntil(lambda: len(frames.bundles) >= shown + 10, timeout=WAIT_MS)  # the studio plays on
    assert draws == [], "a grid behind a tab was drawn"
    hidden = frames.bundles[shown + 5:]  # past the frames already in flight when the tab changed
    assert hidden and all(b.targets_drawable is False and set(b.targets) == {"id001", "id002"}
                          and all(tex is None for _m, tex in b.targets.values()) and not b.target_normals
                          for b in hidden if b.fresh), "textures and normals made for a grid nobody sees"
    window.docks["retarget"].raise_()  # in front again: drawn (and caught up) at once
    qtbot.waitUntil(lambda: window.on_screen(grid) and len(draws) > 0, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: frames.last.targets_drawable and frames.last.targets["id001"][1] is not None,
                    timeout=WAIT_MS)
    # paused behind the tab, then raised: the frame on screen is made again with the textures
    window.docks["output"].raise_()
    qtbot.waitUntil(lambda: frames.last.targets_drawable is False, timeout=WAIT_MS)
    s.pause()
    qtbot.waitUntil(lambda: not s.playing, timeout=WAIT_MS)
    qtbot.wait(200)
    assert frames.last.targets_drawable is False
    made = len(frames.bundles)
    window.docks["retarget"].raise_()
    qtbot.waitUntil(lambda: len(frames.bundles) > made and frames.last.targets_drawable
                    and frames.last.targets["id001"][1] is not None, timeout=WAIT_MS)


# --------------------------------------------------------------------------- export and tools
def wait_dialog(qtbot, dialog) -> None:
    qtbot.waitUntil(lambda: not dialog.running, timeout=WAIT_MS * 2)


def test_export_meshes_npz_and_video(qtbot, window, sample, tmp_path):
    open_capture(qtbot, window, sample)
    s = window.session

    dialog = window.studio_actions.export_sequence(("obj", tmp_path / "objs", 2, 7))
    wait_dialog(qtbot, dialog)
    assert dialog.error_text == ""
    objs = sorted((tmp_path / "objs").glob("frame_*.obj"))
    assert [p.name for p in objs] == [f"frame_{k:06d}.obj" for k in range(2, 7)]
    text = objs[0].read_text()
    assert text.count("\nv ") == window.topology.vertex_count and "vt " in text and "mtllib" in text
    assert (tmp_path / "objs" / "frame_000002.png").exists()  # id000 is textured

    dialog = window.studio_actions.export_sequence(("ply", tmp_path / "plys", 0, 3))
    wait_dialog(qtbot, dialog)
    import trimesh
    ply = trimesh.load(tmp_path / "plys" / "frame_000001.ply", process=False)
    assert len(ply.vertices) == window.topology.vertex_count

    dialog = window.studio_actions.export_sequence(("npz", tmp_path / "seq.npz", 0, 6))
    wait_dialog(qtbot, dialog)
    data = np.load(tmp_path / "seq.npz")
    assert data["meshes"].shape == (6, window.topology.vertex_count, 3)
    assert data["codes"].shape == (6, 256) and data["ground_truth"].shape == data["meshes"].shape
    assert data["frames"].tolist() == list(range(6)) and str(data["subject"]) == "id000"

    dialog = window.studio_actions.export_sequence(("mp4", tmp_path / "viewer.mp4", 0, 8))
    wait_dialog(qtbot, dialog)
    assert dialog.error_text == ""
    video = cv2.VideoCapture(str(tmp_path / "viewer.mp4"))
    pictures = []
    while True:
        ok, img = video.read()
        if not ok:
            break
        pictures.append(img)
    assert len(pictures) == 8 and float(pictures[3].std()) > 10

    dialog = window.studio_actions.export_sequence(("mkv", tmp_path / "viewer.mkv", 0, 24))
    dialog.cancel_requested.emit()  # cancel right away: the partial file is removed
    wait_dialog(qtbot, dialog)
    assert "cancelled" in dialog.error_text.lower() and not (tmp_path / "viewer.mkv").exists()
    assert s.source_info["kind"] == "capture"


def test_evaluate_capture_fills_curves_and_table(qtbot, window, sample):
    open_capture(qtbot, window, sample)
    dialog = window.studio_actions.evaluate_capture()
    assert dialog is not None
    wait_dialog(qtbot, dialog)
    assert dialog.error_text == "", dialog.error_text
    s = window.session
    assert s.errors.count == 24
    rows = [window.summary.verticalHeaderItem(r).text() for r in range(window.summary.rowCount())]
    assert any("MIA" in r for r in rows) and any("baseline" in r for r in rows)
    assert "±" in window.summary.cell_text(0, "Mouth")
    assert np.isfinite(window.error_plots.curve_data("eyes")[1]).sum() == 24


def test_export_onnx_and_adapt_from_the_gui(qtbot, window, sample, tmp_path):
    open_capture(qtbot, window, sample)
    dialog = window.studio_actions.export_onnx(str(tmp_path / "onnx"))
    wait_dialog(qtbot, dialog)
    assert dialog.error_text == "" and (tmp_path / "onnx" / "manifest.json").exists()

    # the sample captures have no avatar codes: adaptation must say so, not crash
    choice = {"data": str(sample.root), "subject": "id002", "steps": 5, "neutral": None,
              "out": str(tmp_path / "adapted.pt")}
    dialog = window.studio_actions.adapt_subject(choice)
    wait_dialog(qtbot, dialog)
    assert "codes.npy" in dialog.error_text and "Traceback" not in dialog.error_text

    # with codes it trains F_new only and loads the new model
    capture = sample.root / "captures" / "id002_c00"
    np.save(capture / "codes.npy", np.random.default_rng(0).normal(size=(24, 256)).astype(np.float32))
    try:
        dialog = window.studio_actions.adapt_subject(choice)
        wait_dialog(qtbot, dialog)
        assert dialog.error_text == "", dialog.error_text
        qtbot.waitUntil(lambda: "id002" in window.session.model_info.get("identities", []), timeout=WAIT_MS)
        assert window.session.model_path == str(tmp_path / "adapted.pt")
    finally:
        (capture / "codes.npy").unlink()


# --------------------------------------------------------------------------- settings
def test_settings_and_layout_persist(qtbot, sample, studio_home):
    from app.main_window import MainWindow
    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    first.set_view_mode("wireframe")
    first.set_error_scale(10.0)
    first.docks["latency"].hide()
    open_capture(qtbot, first, sample)
    first.close()
    assert (studio_home / "config" / "studio.ini").exists()

    second = MainWindow()
    qtbot.addWidget(second)
    second.show()
    try:
        assert second.viewer.mode == "wireframe" and second.presenter.error_scale_mm == 10.0
        assert second.settings.recent_captures()[0] == str(sample.capture)
        assert second.source_panel.capture.recent_list.item(0).text() == str(sample.capture)
        assert second.startup_model() == str(sample.model)
        assert not second.docks["latency"].isVisible()
        second.reset_layout()
        assert second.docks["latency"].toggleViewAction().isChecked()
    finally:
        second.close()


# --------------------------------------------------------------------------- the command line
def test_mia_studio_command_runs_unattended(sample, tmp_path, studio_home):
    shot = tmp_path / "cli.png"
    env = dict(os.environ, QT_QPA_PLATFORM="xcb")
    result = subprocess.run([sys.executable, "-m", "app.main", "--capture", str(sample.capture), "--model",
                             str(sample.model), "--screenshot", str(shot), "--frames", "10", "--quit-after",
                             "--timeout", "150"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "mia-studio summary" in result.stdout and '"frames_shown"' in result.stdout
    image = cv2.imread(str(shot))
    assert image is not None
    assert_not_blank(image[..., ::-1], "mia-studio --screenshot")
