"""Widgets driven with synthetic numpy data: what they show and what they emit.

GUI tests need an X display (see conftest.py). Set MIA_SCREENSHOT_DIR to keep the
rendered images for a look.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication
from on_screen import show_widget

from widgets.colormap import apply_colormap, available_colormaps, colormap_lut

gui = pytest.mark.gui
opengl = pytest.mark.opengl  # vispy canvases: also checked for a stray EGL context
BACKGROUND_RGB = np.array([33, 36, 41])  # widgets.face_camera.BACKGROUND in 0..255


# -- helpers ------------------------------------------------------------------------------
def dome_mesh(n: int = 40, size_mm: float = 140.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A face-sized bump on a square grid, looking along +z, y up: (V,3) mm, (F,3), (V,2)."""
    t = np.linspace(-0.5, 0.5, n, dtype=np.float32)
    x, y = np.meshgrid(t * size_mm, t * size_mm)
    z = 40.0 * np.exp(-(x**2 + y**2) / (2 * 40.0**2))
    vertices = np.stack([x, y, z], -1).reshape(-1, 3).astype(np.float32)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3),
                            np.stack([a, d, c], -1).reshape(-1, 3)]).astype(np.int32)
    uvs = np.stack([(x / size_mm + 0.5), (y / size_mm + 0.5)], -1).reshape(-1, 2)
    return vertices, faces, uvs.astype(np.float32)


def qimage_array(image: QImage) -> np.ndarray:
    """QImage -> (H, W, 3) uint8."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    h, w, stride = image.height(), image.width(), image.bytesPerLine()
    data = np.frombuffer(image.constBits(), np.uint8, count=h * stride).reshape(h, stride)
    return data[:, : w * 3].reshape(h, w, 3).copy()


def save(name: str, rgb: np.ndarray) -> None:
    """Write a screenshot when MIA_SCREENSHOT_DIR is set."""
    folder = os.environ.get("MIA_SCREENSHOT_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        h, w, _ = rgb.shape
        QImage(np.ascontiguousarray(rgb).data, w, h, 3 * w,
               QImage.Format.Format_RGB888).save(os.path.join(folder, name))


def foreground(rgb: np.ndarray, skip_title_rows: int = 0) -> np.ndarray:
    """Pixels that are not the viewer background (optionally ignoring the title row)."""
    mask = np.abs(rgb.astype(int) - BACKGROUND_RGB).sum(-1) > 30
    mask[:skip_title_rows] = False
    return mask


def settle(qtbot, ms: int = 100) -> None:
    qtbot.wait(ms)


def shown_retarget_grid(qtbot, coarse_rounds: int | None = None):
    """A RetargetGrid shown at 900x600 (``coarse_rounds`` set before it shows anything)."""
    from widgets.retarget_grid import RetargetGrid

    grid = RetargetGrid()
    if coarse_rounds is not None:
        grid.coarse_rounds = coarse_rounds
    return show_widget(qtbot, grid, 900, 600)


# -- colormap (no display needed) ---------------------------------------------------------------
def test_colormap_maps_range_and_clips():
    lut = colormap_lut("turbo", 256)
    rgba = apply_colormap(np.array([-1.0, 0.0, 2.5, 5.0, 9.0, np.nan]), vmax=5.0, name="turbo")
    assert rgba.shape == (6, 4) and rgba.dtype == np.float32
    np.testing.assert_allclose(rgba[0], lut[0])
    np.testing.assert_allclose(rgba[1], lut[0])
    np.testing.assert_allclose(rgba[3], lut[-1])
    np.testing.assert_allclose(rgba[4], lut[-1])
    np.testing.assert_allclose(rgba[5], lut[0])
    assert np.all(rgba[:, 3] == 1.0)
    assert "viridis" in available_colormaps()
    with pytest.raises(ValueError, match="unknown colour map"):
        colormap_lut("nope")


def test_qt_signal_emit_keeps_true_alive():
    """PySide6 6.12.0 drops a reference to True on every Signal.emit(); on Python < 3.12
    (True not immortal) the GUI then aborts with "bool_dealloc" after a few thousand
    signals. Needs PySide6-Essentials < 6.12 (6.11.3 is fine) or Python >= 3.12."""
    import sys

    from PySide6.QtCore import QObject, Signal

    class Emitter(QObject):
        fired = Signal()

    emitter = Emitter()
    before = sys.getrefcount(True)
    for _ in range(50):
        emitter.fired.emit()
    assert sys.getrefcount(True) - before > -10, (
        "this PySide6 build leaks references to True on Signal.emit(); pin "
        "PySide6-Essentials<6.12 (or run on Python >= 3.12)")


def test_widgets_do_not_import_torch_or_engine():
    import ast
    import pathlib
    for path in pathlib.Path(__file__).resolve().parents[1].joinpath("widgets").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in ("torch", "engine"), f"{path.name} imports {name}"


def test_normals_from_the_frame_worker_light_faces_as_the_widget_would():
    """The studio's worker computes vertex normals off the GUI thread; a face lit with them must
    look exactly as one whose normals the widget computes itself, and they are not computed twice."""
    from engine.mesh_normals import TopologyNormals
    from widgets.face_mesh import FaceMeshData, face_to_vertex
    vertices, faces, _ = dome_mesh(n=30)
    vertices = vertices + np.random.default_rng(0).normal(0, 0.3, vertices.shape).astype(np.float32)
    op = face_to_vertex(faces, len(vertices))
    own = FaceMeshData(vertices, faces, op, per_vertex=True).get_vertex_normals(indexed="faces")
    given = TopologyNormals(faces)(vertices)
    np.testing.assert_allclose(given, own, atol=1e-5)
    data = FaceMeshData(vertices, faces, None, per_vertex=True, normals=given)  # no operator: cannot compute
    assert data.get_vertex_normals(indexed="faces") is given
    corners = FaceMeshData(vertices, faces, None, per_vertex=False, normals=given).get_vertex_normals("faces")
    np.testing.assert_array_equal(corners, given[faces])


# -- HMC views -------------------------------------------------------------------------------
@gui
def test_hmc_views_show_frames_states_and_roi(qtbot):
    from widgets.hmc_views import HMCViews

    views = show_widget(qtbot, HMCViews(), 900, 300)
    settle(qtbot)
    blank = qimage_array(views.grab().toImage())

    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (120, 1))
    frames = np.stack([ramp, ramp[:, ::-1], rng.integers(0, 256, (120, 160), dtype=np.uint8)])
    views.set_frames(frames)
    for cam, (text, ok) in enumerate([("live", True), ("dropped frames: 3", False),
                                      ("no signal", False)]):
        views.set_camera_state(cam, text, ok)
    settle(qtbot)
    shown = qimage_array(views.grab().toImage())
    save("hmc_views.png", shown)
    assert shown.std() > blank.std() + 20, "frames did not appear"
    third = shown.shape[1] // 3
    left, right = shown[:, :third].astype(float), shown[:, 2 * third:].astype(float)
    assert left.std() > 30 and right.std() > 30
    assert views.camera_state(1) == "dropped frames: 3"

    views.show_roi(True)
    with qtbot.assertNotEmitted(views.roi_changed):
        views.set_roi(2, (20, 10, 100, 80))
    assert views.roi(2) == (20, 10, 100, 80)
    with qtbot.waitSignal(views.roi_changed) as blocker:
        views._rois[2].setPos((30, 15))  # what a user's drag ends with
    assert blocker.args == [2, (30, 15, 100, 80)]


@gui
def test_three_new_camera_frames_cost_one_window_repaint(qtbot):
    """The three cameras share one graphics scene. A QGraphicsScene repaints its window as soon as
    it has processed its changes, so with a scene per camera every frame repainted (and sent to
    the X server) the window three times."""
    from PySide6.QtCore import QEvent, QObject

    from widgets.hmc_views import HMCViews

    class Counter(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.repaints = 0

        def eventFilter(self, obj, event) -> bool:
            if event.type() == QEvent.Type.UpdateRequest:
                self.repaints += 1
            return False

    views = show_widget(qtbot, HMCViews(), 600, 200)
    counter = Counter()
    views.window().installEventFilter(counter)
    rng = np.random.default_rng(2)
    views.set_frames(rng.integers(0, 256, (3, 40, 48), dtype=np.uint8))  # the first sizes the boxes
    counts = []
    for _ in range(3):
        settle(qtbot, 50)
        counter.repaints = 0
        views.set_frames(rng.integers(0, 256, (3, 40, 48), dtype=np.uint8))
        qtbot.waitUntil(lambda: counter.repaints > 0, timeout=10_000)
        settle(qtbot, 100)  # time for any further repaint of the same frame
        counts.append(counter.repaints)
    assert counts == [1, 1, 1]
    assert len({round(view.geometry().width()) for view in (views.view_box(c) for c in range(3))}) == 1, \
        "the cameras' panels are not equally wide"


@gui
def test_hmc_views_pass_frames_through_unscaled(qtbot):
    """A dim, low-contrast frame is shown as its own gray values (no level stretch), through the
    pass-through Grayscale8 image, not pyqtgraph's per-render colour-table path."""
    from PySide6.QtGui import QImage

    from widgets.hmc_views import HMCViews

    views = HMCViews()
    qtbot.addWidget(views)
    rng = np.random.default_rng(1)
    frames = rng.integers(100, 121, (3, 48, 40), dtype=np.uint8)
    views.set_frames(frames)
    for cam, item in enumerate(views._images):
        item.render()
        assert item.qimage.format() == QImage.Format.Format_Grayscale8
        bits = item.qimage.constBits()
        rows = np.frombuffer(bits, np.uint8, item.qimage.sizeInBytes()).reshape(48, -1)
        np.testing.assert_array_equal(rows[:, :40], frames[cam])


# -- mesh viewer -----------------------------------------------------------------------------
# (the ``viewer`` fixture, a shown MeshViewer, is in conftest.py)


@gui
@opengl
def test_mesh_viewer_modes_render_differently(viewer, qtbot):
    vertices, faces, uvs = dome_mesh()
    viewer.set_topology(faces, uvs)
    with qtbot.waitSignal(viewer.render_ms, timeout=30_000) as blocker:
        viewer.set_mesh(vertices)
    assert blocker.args[0] > 0.0
    images = {}
    for mode in ("shaded", "wireframe", "error"):
        viewer.set_mode(mode)
        if mode == "error":
            viewer.set_error(np.abs(vertices[:, 0]) / 10.0, vmax_mm=5.0)
        images[mode] = viewer.grab_image()
        save(f"mesh_{mode}.png", images[mode])
    for mode, img in images.items():
        assert img.shape == (450, 800, 3) and img.dtype == np.uint8
        assert img.std() > 15, f"{mode} render is blank"
        assert foreground(img).mean() > 0.15, f"{mode}: the mesh fills too little of the view"
    diff = lambda a, b: np.abs(images[a].astype(int) - images[b].astype(int)).mean()
    assert diff("shaded", "wireframe") > 2
    assert diff("shaded", "error") > 5
    # error mode: saturated heat-map colours on the mesh and a colour bar at the right edge
    sat = lambda img: img.max(-1).astype(int) - img.min(-1)
    assert (sat(images["error"]) > 120).mean() > 0.05 > (sat(images["shaded"]) > 120).mean()
    assert (sat(images["error"][:, -80:]) > 120).sum() > 500


@gui
@opengl
def test_mesh_viewer_front_camera_texture_and_heat_map_orientation(viewer, qtbot):
    vertices, faces, uvs = dome_mesh()
    viewer.set_topology(faces, uvs)
    texture = np.zeros((64, 64, 3), np.uint8)
    texture[:32, :, 0] = 255  # top rows of the image (v near 1) red
    texture[32:, :, 2] = 255  # bottom rows blue
    viewer.set_mesh(vertices, texture)
    viewer.set_mode("textured")
    img = viewer.grab_image().astype(int)
    save("mesh_textured.png", img.astype(np.uint8))
    rows = np.nonzero(foreground(img, skip_title_rows=30).any(1))[0]
    top, bottom = img[rows[0] + 10: rows[0] + 60], img[rows[-1] - 60: rows[-1] - 10]
    assert top[..., 0].mean() > top[..., 2].mean() + 40, "y up: +y (v = 1, red) must be on top"
    assert bottom[..., 2].mean() > bottom[..., 0].mean() + 40

    viewer.set_mode("error")
    viewer.set_error(np.where(vertices[:, 0] > 0, 5.0, 0.0), vmax_mm=5.0)  # +x hot
    img = viewer.grab_image().astype(int)
    save("mesh_error_plus_x.png", img.astype(np.uint8))
    cols = np.nonzero(foreground(img[:, :-120]).any(0))[0]
    mid = (cols[0] + cols[-1]) // 2
    left = img[100:350, cols[0] + 20: mid - 20]
    right = img[100:350, mid + 20: cols[-1] - 20]
    assert right[..., 0].mean() > left[..., 0].mean() + 40, "front view: +x must be on the right"


@gui
@opengl
def test_mesh_viewer_ground_truth_view_appears(viewer, qtbot):
    vertices, faces, _ = dome_mesh()
    viewer.set_topology(faces, None)
    viewer.set_mesh(vertices)
    alone = viewer.grab_image()
    assert not viewer.ground_truth_shown
    assert foreground(alone[:, -200:]).mean() < 0.01, "nothing should be drawn at the right"
    viewer.set_ground_truth(vertices + np.float32([0, 0, 5]))
    both = viewer.grab_image()
    save("mesh_with_ground_truth.png", both)
    assert viewer.ground_truth_shown
    half = both.shape[1] // 2
    assert foreground(both[:, :half]).mean() > 0.1 and foreground(both[:, half:]).mean() > 0.1
    viewer.set_ground_truth(None)
    assert not viewer.ground_truth_shown
    viewer.reset_camera()
    np.testing.assert_array_equal(viewer.grab_image(), alone)


@gui
@opengl
def test_headlight_shading_looks_like_vispys_per_pixel_phong(viewer, qtbot):
    """The per-vertex head-light (widgets/headlight_shading.py) replaced vispy's per-pixel
    ShadingFilter for speed: on the kit's face, turned so that both sides of the surface show, the
    two must look alike, and the light must follow the camera (a face lit from behind is dark)."""
    from vispy.visuals.filters import ShadingFilter

    from engine.facemodel import load_face_model
    from engine.mesh_normals import TopologyNormals
    model = load_face_model()
    topo = model.topology
    vertices = np.asarray(model.neutral[topo.kit_index], np.float32)
    viewer.set_topology(topo.faces, topo.uvs)
    viewer.set_mode("shaded")
    viewer.set_mesh(vertices, None, TopologyNormals(topo.faces)(vertices))
    viewer._view.camera.azimuth = 55.0  # shows the open side of the face mask from inside too
    settle(qtbot)
    ours = viewer.grab_image()
    face = viewer._driven
    vispy_phong = ShadingFilter(shading="smooth", shininess=40, specular_coefficient=0.25,
                                ambient_light=(1, 1, 1, 0.35), diffuse_light=(1, 1, 1, 0.75),
                                light_dir=face._shading.light_dir)
    face.visual.detach(face._shading)
    face.visual.attach(vispy_phong)
    reference = viewer.grab_image()
    save("headlight_ours.png", ours)
    save("headlight_vispy.png", reference)
    mask = foreground(reference, skip_title_rows=30)
    assert mask.mean() > 0.1
    diff = np.abs(ours.astype(int) - reference.astype(int)).max(-1)[mask]
    assert diff.mean() < 4.0 and np.percentile(diff, 95) < 14, (diff.mean(), np.percentile(diff, 95))

    face.visual.detach(vispy_phong)
    face.visual.attach(face._shading)
    face.set_light_dir(-np.asarray(face._shading.light_dir))  # the light now travels towards the camera
    viewer.canvas.update()
    behind = viewer.grab_image()
    lum = lambda img: img.astype(float).mean(-1)[mask].mean()  # noqa: E731
    assert lum(behind) < 0.75 * lum(ours)


@gui
@opengl
def test_stable_grid_lays_out_on_changes_only(viewer, qtbot, monkeypatch):
    """The viewer's grid (widgets/stable_grid.py) must follow resizes and new cells like vispy's Grid,
    and not lay itself out again on draws where nothing changed."""
    from vispy.scene.widgets import Grid
    layouts = []
    original = Grid._update_child_widget_dim
    monkeypatch.setattr(Grid, "_update_child_widget_dim", lambda self: layouts.append(1) or original(self))
    vertices, faces, uvs = dome_mesh()
    viewer.set_topology(faces, uvs)
    viewer.set_mesh(vertices)
    viewer.set_ground_truth(vertices)
    viewer.grab_image()
    gt_left = viewer._gt_view.pos[0]
    before = len(layouts)
    for shift in (1.0, 2.0, 3.0):
        viewer.set_mesh(vertices + shift)
        viewer.grab_image()
    assert len(layouts) == before, "laid out again although nothing changed"
    assert gt_left >= viewer._view.pos[0] + viewer._view.size[0]  # ground truth right of the driven view
    viewer.resize(1200, 450)
    settle(qtbot)
    viewer.grab_image()
    assert len(layouts) > before
    assert viewer._gt_view.pos[0] > 1.3 * gt_left  # the wider canvas moved the second column
    assert "StableGrid at" in repr(viewer._grid)


@gui
@opengl
def test_a_submitted_draw_shows_the_scene_of_its_repaint(viewer, qtbot):
    """The studio starts a frame's drawing early (submit) and reads the pixels back at the repaint:
    the widget must show exactly what a synchronous draw shows, and a change made after the submit
    must not be lost (it is drawn again at the repaint)."""
    widget = viewer.canvas_widget
    if not hasattr(widget, "submit"):
        pytest.skip("a native (QOpenGLWidget) canvas: nothing is submitted")
    vertices, faces, uvs = dome_mesh()
    viewer.set_topology(faces, uvs)
    viewer.set_mesh(vertices)
    settle(qtbot)

    def shown() -> np.ndarray:
        widget.repaint()
        return widget._pixels.copy()

    moved = vertices + np.array([25.0, 0.0, 0.0], np.float32)
    viewer.set_mesh(moved)
    widget.submit()
    assert viewer.canvas._submitted
    early = shown()
    assert not viewer.canvas._submitted  # read back once
    viewer.set_mesh(moved)
    synchronous = shown()
    np.testing.assert_array_equal(early, synchronous)

    viewer.set_mesh(vertices)
    widget.submit()
    viewer.set_mode("error")  # after the submit: the repaint must draw again
    viewer.set_error(np.abs(vertices[:, 0]) / 10.0, vmax_mm=5.0)
    later = shown()
    sat = later.max(-1).astype(int) - later.min(-1)
    assert (sat > 120).mean() > 0.05, "the change made after the submit is missing"
    assert np.abs(later.astype(int) - early).mean() > 5


@gui
@opengl
def test_still_label_draws_like_a_label_without_reuploading_its_kernel(qtbot, monkeypatch):
    """StillLabel's pixels equal vispy's Label's, also after a text change and a resize, while the
    font kernel is uploaded once instead of on every draw."""
    from vispy import gloo, scene

    from widgets.face_camera import BACKGROUND, TITLE_COLOR
    from widgets.offscreen_canvas import make_canvas
    from widgets.still_label import StillLabel

    uploads: list[str] = []
    drawing = {"kind": ""}
    set_data = gloo.Texture2D.set_data

    def counting(self, data, *args, **kwargs):
        if getattr(data, "shape", None) == (16, 1024, 4):  # the SDF font's filter kernel
            uploads.append(drawing["kind"])
        return set_data(self, data, *args, **kwargs)
    monkeypatch.setattr(gloo.Texture2D, "set_data", counting)

    labels = {}
    canvases = {}
    for kind, make in (("vispy", scene.Label), ("still", StillLabel)):
        canvas, widget = make_canvas(BACKGROUND)
        qtbot.addWidget(widget)
        canvas.size = (220, 60)
        labels[kind] = canvas.central_widget.add_widget(make("Ground truth", color=TITLE_COLOR, font_size=10))
        canvases[kind] = canvas

    def draw(kind: str) -> np.ndarray:
        drawing["kind"] = kind
        return canvases[kind].render(alpha=False)[..., :3]

    for _ in range(3):
        first = {kind: draw(kind) for kind in canvases}
        assert first["still"].std() > 5, "no text drawn"
        np.testing.assert_array_equal(first["still"], first["vispy"])
    # vispy's Label re-sends the kernel from its second draw on (the first creates the texture)
    assert uploads.count("vispy") == 2 and uploads.count("still") == 0

    for kind in canvases:
        labels[kind].text = "Driven"
        canvases[kind].size = (260, 80)
    changed = {kind: draw(kind) for kind in canvases}
    np.testing.assert_array_equal(changed["still"], changed["vispy"])
    assert np.abs(changed["still"][:60, :220].astype(int) - first["still"]).mean() > 0.5, "the change was not drawn"


@gui
@opengl
def test_mesh_viewer_streams_a_face_sized_mesh(viewer, qtbot):
    """~8k vertices / 16k faces, new vertices and errors every frame."""
    vertices, faces, uvs = dome_mesh(n=90)  # 8100 vertices, 15842 faces
    viewer.set_topology(faces, uvs)
    viewer.set_mode("error")
    viewer.set_mesh(vertices)
    settle(qtbot)
    draws: list[float] = []
    viewer.render_ms.connect(draws.append)
    rng = np.random.default_rng(1)
    frames = [vertices + rng.normal(0, 0.5, vertices.shape).astype(np.float32) for _ in range(8)]
    errors = [rng.uniform(0, 5, len(vertices)).astype(np.float32) for _ in range(8)]
    updates = []
    start = time.perf_counter()
    for i in range(40):
        t0 = time.perf_counter()
        viewer.set_mesh(frames[i % 8])
        viewer.set_error(errors[i % 8], 5.0)
        updates.append(time.perf_counter() - t0)
        QApplication.processEvents()  # the canvas draws once per event-loop turn
    fps = 40 / (time.perf_counter() - start)
    print(f"\nmesh viewer: {fps:.1f} fps, set_mesh+set_error {1e3 * np.median(updates):.2f} ms, "
          f"draw {np.median(draws):.1f} ms (median)")
    assert len(draws) >= 20  # timing is measured by benchmarks/studio_fps.py, not asserted here


# -- error plots ------------------------------------------------------------------------------
@gui
def test_error_plots_click_seeks_to_frame(qtbot):
    from widgets.error_plots import ErrorPlots

    plots = ErrorPlots()
    qtbot.addWidget(plots)
    plots.resize(700, 300)
    plots.show()
    qtbot.waitExposed(plots)
    t = np.arange(200)
    plots.set_curves({"eyes": 1 + 0.2 * np.sin(t / 9), "mouth": 2 + 0.5 * np.sin(t / 5),
                      "face": 1.5 + 0.1 * np.cos(t / 7)})
    plots.set_current_frame(120)
    settle(qtbot)
    save("error_plots.png", qimage_array(plots.grab().toImage()))
    assert plots.curve_names == ["eyes", "mouth", "face"]
    assert len(plots.plot.getPlotItem().legend.items) == 3
    assert plots.current_frame == 120

    pos = plots.view_to_widget(57, 1.5).toPoint()
    with qtbot.waitSignal(plots.seek_requested, timeout=10_000) as blocker:
        qtbot.mouseClick(plots.plot.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert blocker.args == [57]

    plots.clear()
    for frame in range(5):
        plots.append_point(frame, {"eyes": 1.0 + frame, "mouth": 2.0})
    x, y = plots.curve_data("eyes")
    np.testing.assert_array_equal(x, np.arange(5))
    np.testing.assert_array_equal(y, 1.0 + np.arange(5))


# -- summary table ---------------------------------------------------------------------------
@gui
def test_summary_table_formats_mean_std(qtbot):
    from widgets.summary_table import SummaryTable

    table = SummaryTable()
    qtbot.addWidget(table)
    table.set_rows([("subject 07", {"eyes": (1.08, 0.16), "Mouth": (2.345, 0.5),
                                    "texture": (0.041, 0.01)}),
                    ("capture B", {"face": (1.5, 0.25)})])
    assert table.rowCount() == 2
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers == ["Eyes", "Mouth", "Face", "Texture"]
    assert table.cell_text(0, "Eyes") == "1.08 ± 0.16"
    assert table.cell_text(0, "mouth") == "2.35 ± 0.50"
    assert table.cell_text(0, "Face") == "–"
    assert table.cell_text(1, "Face") == "1.50 ± 0.25"
    assert table.verticalHeaderItem(0).text() == "subject 07"


# -- latency plot ------------------------------------------------------------------------------
@gui
def test_latency_plot_keeps_a_rolling_window(qtbot):
    from widgets.latency_plot import LatencyPlot

    plot = LatencyPlot(window=100)
    qtbot.addWidget(plot)
    for i in range(130):
        plot.add_sample(infer_ms=5.0 + i, render_ms=2.0, fps=30.0)
    infer = plot.series("inference")
    assert len(infer) == 100
    assert infer[0] == 5.0 + 30 and infer[-1] == 5.0 + 129
    assert np.all(plot.series("fps") == 30.0)
    plot.clear()
    assert len(plot.series("render")) == 0


# -- playback bar ------------------------------------------------------------------------------
@gui
def test_playback_bar_signals(qtbot):
    from widgets.playback_bar import PlaybackBar

    bar = PlaybackBar()
    qtbot.addWidget(bar)
    bar.show()
    qtbot.waitExposed(bar)
    bar.set_frame_count(300)
    with qtbot.assertNotEmitted(bar.seek):
        bar.set_frame(12)
    assert bar.frame_label.text() == "12 / 300"
    with qtbot.waitSignal(bar.seek) as blocker:
        bar.slider.setValue(40)  # as a user drag does
    assert blocker.args == [40]
    with qtbot.waitSignal(bar.play_toggled) as blocker:
        qtbot.mouseClick(bar.play_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [True]
    with qtbot.waitSignal(bar.step) as blocker:
        qtbot.mouseClick(bar.back_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [-1]
    with qtbot.waitSignal(bar.step) as blocker:
        qtbot.mouseClick(bar.forward_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [1]
    with qtbot.waitSignal(bar.speed_changed) as blocker:
        bar.speed_combo.setCurrentIndex(bar.speed_combo.findText("2x"))
    assert blocker.args == [2.0]
    with qtbot.waitSignal(bar.loop_changed) as blocker:
        qtbot.mouseClick(bar.loop_check, Qt.MouseButton.LeftButton)
    assert blocker.args == [True]
    with qtbot.assertNotEmitted(bar.play_toggled):
        bar.set_playing(False)
    assert not bar.playing
    bar.set_live(True)
    assert not bar.slider.isEnabled() and not bar.play_button.isEnabled()
    assert bar.frame_label.text() == "live"
    bar.set_live(False)
    assert bar.slider.isEnabled()


# -- source panel ------------------------------------------------------------------------------
@gui
def test_source_panel_emits_specs(qtbot):
    from widgets.source_panel import SourcePanel

    panel = SourcePanel()
    qtbot.addWidget(panel)
    panel.set_recent(["/data/caps/s01", "/data/caps/s02"])
    panel.set_subjects(["synth_000", "synth_001"])

    panel.set_kind("capture")
    panel.capture.path_edit.clear()
    with qtbot.assertNotEmitted(panel.open_requested):
        qtbot.mouseClick(panel.open_button, Qt.MouseButton.LeftButton)
    assert panel.status.is_error and "capture folder" in panel.status.text()
    panel.capture.recent_list.setCurrentRow(1)
    with qtbot.waitSignal(panel.open_requested) as blocker:
        qtbot.mouseClick(panel.open_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [{"kind": "capture", "path": "/data/caps/s02"}]

    panel.set_kind("cameras")
    page = panel.cameras
    page.url_edits[2].setText(" http://host:8080/video ")
    page.rotate_combos[1].setCurrentIndex(1)
    page.flip_checks[2].setChecked(True)
    with qtbot.waitSignal(panel.open_requested) as blocker:
        qtbot.mouseClick(panel.open_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [{"kind": "cameras", "headset": "", "urls": ["0", "1", "http://host:8080/video"],
                             "rotate": [0, 90, 0], "flip": [False, False, True]}]

    panel.set_kind("synthetic")
    panel.synthetic.subject_combo.setCurrentText("synth_001")
    panel.synthetic.seed_spin.setValue(7)
    with qtbot.waitSignal(panel.open_requested) as blocker:
        qtbot.mouseClick(panel.open_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [{"kind": "synthetic", "subject": "synth_001", "seed": 7}]

    panel.set_status("Traceback (most recent call last):\n  File x\nOSError: camera 2 not found",
                     ok=False)
    assert panel.status.text() == "OSError: camera 2 not found"
    assert "e0453a" in panel.status.styleSheet()
    panel.set_spec({"kind": "cameras", "urls": ["3", "4", "5"], "rotate": [270, 0, 180],
                    "flip": [True, False, False]})
    assert panel.spec() == {"kind": "cameras", "headset": "", "urls": ["3", "4", "5"],
                            "rotate": [270, 0, 180], "flip": [True, False, False]}


# -- neutral mesh panel --------------------------------------------------------------------------
@gui
def test_neutral_panel_shows_mismatch_in_red(qtbot):
    from widgets.neutral_panel import NeutralMeshPanel

    panel = NeutralMeshPanel()
    qtbot.addWidget(panel)
    message = "expected 8306 vertices (topology ict-narrow-iris), got 5023"
    panel.show_info({"path": "/subjects/bob/neutral.obj", "vertex_count": 5023, "units": "mm",
                     "bbox_mm": (150.2, 210.0, 120.5), "matches_topology": False,
                     "message": message, "mode": "shape only (G)"})
    assert panel.message_text == message
    assert panel.message.is_error and "e0453a" in panel.message.styleSheet()
    assert panel._fields["vertices"].text() == "5,023"
    assert panel._fields["size"].text() == "150.2 × 210.0 × 120.5"
    assert panel._fields["topology"].text() == "does not match the model"

    panel.show_info({"path": "/subjects/ann/neutral.ply", "vertex_count": 8306, "units": "cm→mm",
                     "bbox_mm": (150, 200, 120), "matches_topology": True, "message": "",
                     "mode": "shape + texture"})
    assert not panel.message.is_error
    assert panel._fields["topology"].text() == "matches the model"
    assert panel._fields["file"].text() == "neutral.ply"
    panel.show_error("Could not read /x.glb: not a mesh file")
    assert panel.message.is_error and panel._fields["vertices"].text() == "–"


# -- retargeting grid ------------------------------------------------------------------------------
@gui
@opengl
def test_retarget_grid_renders_one_view_per_target(qtbot):
    grid = shown_retarget_grid(qtbot)
    names = ["ann", "bob", "cyd", "dee"]
    vertices, faces, uvs = dome_mesh()
    grid.set_topology(faces, uvs)
    grid.set_subjects(names)
    with qtbot.waitSignal(grid.targets_changed) as blocker:
        grid.subject_list.item(0).setCheckState(Qt.CheckState.Checked)  # a user's tick
    assert blocker.args == [["ann"]]
    grid.set_targets(names)
    assert grid.view_names == names
    texture = np.full((8, 8, 3), 200, np.uint8)
    grid.set_meshes({name: (vertices * (1 + 0.1 * i), texture) for i, name in enumerate(names)})
    img = grid.grab_image()
    save("retarget_grid.png", img)
    h, w, _ = img.shape
    for quadrant in (img[: h // 2, : w // 2], img[: h // 2, w // 2:],
                     img[h // 2:, : w // 2], img[h // 2:, w // 2:]):
        assert foreground(quadrant).mean() > 0.1, "each of the 4 targets gets a view"
    with qtbot.waitSignal(grid.textured_changed) as blocker:
        grid.set_textured(True)
    assert blocker.args == [True]
    grid.set_targets(["bob"])
    assert grid.view_names == ["bob"]


# -- progress dialog ---------------------------------------------------------------------------
@gui
def test_progress_dialog_cancel_and_error(qtbot):
    from widgets.progress_dialog import TaskProgressDialog

    dialog = TaskProgressDialog("Training")
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.set_progress(3, 10, "epoch 3 / 10")
    assert dialog.bar.value() == 3 and dialog.text_label.text() == "epoch 3 / 10"
    with qtbot.waitSignal(dialog.cancel_requested):
        qtbot.mouseClick(dialog.button, Qt.MouseButton.LeftButton)
    assert not dialog.button.isEnabled()
    with qtbot.assertNotEmitted(dialog.cancel_requested):
        dialog.reject()  # a second request (Esc) is not repeated
    dialog.fail("Traceback (most recent call last):\n  File \"train.py\", line 3\n"
                "RuntimeError: CUDA out of memory; lower the batch size")
    assert dialog.error_text == "RuntimeError: CUDA out of memory; lower the batch size"
    assert not dialog.running and dialog.button.text() == "Close" and dialog.button.isEnabled()


# -- coarse display mesh (retarget thumbnails) -----------------------------------------------------
def _open_mouth_face():
    from engine.facemodel import load_face_model

    fm = load_face_model()
    weights = np.zeros(fm.expression_dim, np.float32)
    weights[fm.expression_index("jawOpen")] = 0.8
    return fm, fm.to_topology(fm.neutral), fm.to_topology(fm.expressed(fm.neutral, weights))


def _edge_counts(faces: np.ndarray) -> dict[tuple[int, int], int]:
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    return {tuple(e): int(c) for e, c in zip(unique.tolist(), counts)}


def test_coarse_faces_halve_the_kit_face_and_keep_its_surface():
    """About half the triangles, over a subset of the same vertices; every border edge (eye and
    mouth openings, rims) kept; still a manifold; no triangle turned over, also once the mouth opens."""
    from widgets.display_lod import coarse_faces

    fm, rest, opened = _open_mouth_face()
    faces = np.asarray(fm.topology.faces)
    coarse = coarse_faces(rest, faces, rounds=4)
    assert 0.4 < len(coarse) / len(faces) < 0.6
    assert set(np.unique(coarse)) <= set(np.unique(faces))
    before, after = _edge_counts(faces), _edge_counts(coarse)
    assert max(after.values()) == 2, "a non-manifold edge"
    borders = {e for e, c in before.items() if c == 1}
    assert borders == {e for e, c in after.items() if c == 1}
    funnel = np.zeros(fm.expression_dim, np.float32)
    funnel[fm.expression_index("mouthFunnel")] = 0.9
    for mesh in (rest, opened, fm.to_topology(fm.expressed(fm.neutral, funnel))):
        # coarse triangles face the way the surface around them does, in other poses too
        smooth = np.zeros_like(mesh)
        normals = np.cross(mesh[faces[:, 1]] - mesh[faces[:, 0]], mesh[faces[:, 2]] - mesh[faces[:, 0]])
        for k in range(3):
            np.add.at(smooth, faces[:, k], normals)
        smooth /= np.linalg.norm(smooth, axis=1, keepdims=True) + 1e-12

        def agreement(tris: np.ndarray) -> np.ndarray:
            drawn = np.cross(mesh[tris[:, 1]] - mesh[tris[:, 0]], mesh[tris[:, 2]] - mesh[tris[:, 0]])
            drawn /= np.linalg.norm(drawn, axis=1, keepdims=True) + 1e-12
            return np.einsum("ij,ij->i", drawn, smooth[tris].mean(axis=1))
        # the kit itself holds a few triangles at odds with their vertices' normals (closed or
        # pursed lips); the coarse set may add a handful in a pose it was not made on, no more
        assert (agreement(coarse) < 0).sum() <= (agreement(faces) < 0).sum() + 5, "triangles turned over"
        assert (agreement(coarse) < 0.5).mean() < 0.005
    assert coarse_faces(rest, faces, rounds=0).shape == faces.shape


@gui
@opengl
def test_retarget_cells_draw_the_coarse_mesh_like_the_full_one(qtbot):
    """The thumbnails draw about half the triangles, and look the same as with the full mesh: the
    same silhouette and shading, with the mouth open."""
    fm, _, opened = _open_mouth_face()
    images, drawn = {}, {}
    for rounds in (0, 4):
        grid = shown_retarget_grid(qtbot, coarse_rounds=rounds)
        grid.set_topology(fm.topology.faces, fm.topology.uvs)
        grid.set_subjects(["ann", "bob"])
        grid.set_targets(["ann", "bob"])
        grid.set_meshes({"ann": (opened, None), "bob": (opened, None)})
        images[rounds], drawn[rounds] = grid.grab_image().astype(int), len(grid.drawn_faces)
    save("retarget_coarse.png", np.concatenate([images[0], images[4]], axis=1).astype(np.uint8))
    assert drawn[0] == len(fm.topology.faces) and 0.4 < drawn[4] / drawn[0] < 0.6
    full, coarse = foreground(images[0].astype(np.uint8)), foreground(images[4].astype(np.uint8))
    assert full.mean() > 0.05
    assert (full & coarse).sum() / (full | coarse).sum() > 0.98, "the silhouette changed"
    inside = full & coarse
    assert np.abs(images[0] - images[4]).max(axis=-1)[inside].mean() < 6.0, "the shading changed"
