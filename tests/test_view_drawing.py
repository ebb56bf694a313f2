"""How the 3D views draw: depth, triangle order and captions (the studio's live path).

GUI tests need an X display (see conftest.py).
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.test_widgets import save, settle

gui = pytest.mark.gui
opengl = pytest.mark.opengl


def _live_pixels(viewer) -> np.ndarray:
    """What the studio shows: the offscreen canvas's own draw (submit + read back), not render()."""
    viewer.canvas_widget.submit()
    return np.asarray(viewer.canvas.draw_pixels()).astype(int)


# -- depth -----------------------------------------------------------------------------------
@gui
@opengl
def test_the_live_view_hides_what_lies_behind(viewer, qtbot):
    """A near square listed before a far one stays in front (the view has a depth buffer; drawn
    in triangle order the far square, drawn last, covered it)."""
    from widgets.offscreen_canvas import OffscreenSceneCanvas

    if not isinstance(viewer.canvas, OffscreenSceneCanvas):
        pytest.skip("no offscreen canvas on this machine")
    square = np.array([[-40, -40], [40, -40], [40, 40], [-40, 40]], np.float32)
    vertices = np.concatenate([np.column_stack([square, np.full(4, 20.0)]),        # near: 0-3
                               np.column_stack([square * 1.2, np.full(4, -20.0)])])  # far: 4-7
    near, far = np.array([[0, 1, 2], [0, 2, 3]]), np.array([[4, 5, 6], [4, 6, 7]])
    error = np.r_[np.zeros(4), np.full(4, 5.0)]  # near: the colour map's low end, far: its high end
    centre = {}
    for name, faces in (("near", near), ("far", far), ("both", np.concatenate([near, far]))):
        viewer.set_topology(faces)
        viewer.set_mode("error")
        viewer.set_mesh(vertices)
        viewer.set_error(error, 5.0)
        settle(qtbot, 30)
        image = _live_pixels(viewer)
        h, w, _ = image.shape
        centre[name] = image[h // 2 - 5:h // 2 + 5, w // 2 - 5:w // 2 + 5].reshape(-1, 3).mean(0)
    assert np.abs(centre["near"] - centre["far"]).max() > 60, "the two squares look alike"
    assert np.abs(centre["both"] - centre["near"]).max() < 8, "the far square covers the near one"


@gui
@opengl
def test_a_face_seen_from_the_side_looks_the_same_live_and_in_a_screenshot(viewer, qtbot):
    """The kit face turned 60 degrees: the live draw equals grab_image (vispy's render into its own
    framebuffer with a depth buffer), where before the far cheek was painted over the near one."""
    from engine.facemodel import load_face_model
    from widgets.offscreen_canvas import OffscreenSceneCanvas

    if not isinstance(viewer.canvas, OffscreenSceneCanvas):
        pytest.skip("no offscreen canvas on this machine")
    fm = load_face_model()
    viewer.set_topology(fm.topology.faces, fm.topology.uvs)
    viewer.set_mesh(fm.to_topology(np.asarray(fm.neutral, np.float32)))
    viewer._view.camera.azimuth = 30.0  # 60 degrees off the front view
    settle(qtbot, 30)
    live, shot = _live_pixels(viewer), viewer.grab_image().astype(int)
    save("side_view_live_and_screenshot.png", np.concatenate([live, shot], 1).astype(np.uint8))
    differs = np.abs(live - shot).max(-1) > 8
    assert live.std() > 20 and differs.mean() < 0.002, f"{differs.sum()} pixels differ"


# -- triangle order --------------------------------------------------------------------------
def _modelled_shading_runs(faces: np.ndarray, segment: int = 1023, slots: int = 256) -> int:
    """Vertex-shader runs for an index list in the cache model of widgets/triangle_order.py."""
    runs, flat = 0, np.asarray(faces).ravel().tolist()
    for start in range(0, len(flat), segment):
        cache: dict[int, int] = {}
        for v in flat[start:start + segment]:
            if cache.get(v % slots) != v:
                cache[v % slots] = v
                runs += 1
    return runs


def test_the_cache_friendly_order_keeps_every_triangle_and_shades_fewer_vertices():
    from engine.facemodel import load_face_model
    from widgets.triangle_order import cache_friendly_order

    faces = np.asarray(load_face_model().topology.faces)
    ordered = cache_friendly_order(faces)
    assert ordered.dtype == faces.dtype and ordered.shape == faces.shape

    def canonical(tris: np.ndarray) -> list[tuple[int, ...]]:  # rotate so the smallest index leads
        return sorted(tuple(np.roll(t, -int(np.argmin(t)))) for t in tris.tolist())
    assert canonical(ordered) == canonical(faces), "triangles lost, added or turned over"
    assert _modelled_shading_runs(ordered) < 0.75 * _modelled_shading_runs(faces)
    ordered[0] = 0  # a copy: the memoised order is not touched
    np.testing.assert_array_equal(cache_friendly_order(faces)[1:], ordered[1:])
    assert cache_friendly_order(faces)[0].tolist() != [0, 0, 0]
    with pytest.raises(ValueError, match="faces must be"):
        cache_friendly_order(faces.ravel())


# -- captions ------------------------------------------------------------------------------
@gui
@opengl
def test_captions_draw_like_one_label_per_slot_in_one_draw(qtbot, monkeypatch):
    """One Captions node paints the picture of a StillLabel in each slot's place, also after a
    text change, a resize and a removed slot, and draws all its texts with one text visual."""
    from vispy import scene

    from widgets.captions import Captions, CaptionSlot, CaptionsVisual
    from widgets.face_camera import BACKGROUND, TITLE_COLOR
    from widgets.offscreen_canvas import make_canvas
    from widgets.stable_grid import StableGrid
    from widgets.still_label import StillLabel

    texts = ["Driven: id001", "Ground truth", "id004"]
    canvases, titles = {}, {}
    for kind in ("labels", "captions"):
        canvas, widget = make_canvas(BACKGROUND)
        qtbot.addWidget(widget)
        canvas.size = (600, 300)
        grid = canvas.central_widget.add_widget(StableGrid(spacing=4))
        if kind == "labels":
            titles[kind] = [StillLabel(t, color=TITLE_COLOR, font_size=10) for t in texts]
        else:
            titles[kind] = [CaptionSlot(t) for t in texts]
            Captions(canvas.central_widget, titles[kind], color=TITLE_COLOR, font_size=10)
        for col, title in enumerate(titles[kind]):
            title.height_max = 26
            grid.add_widget(title, row=0, col=col)
            grid.add_widget(scene.ViewBox(), row=1, col=col)
        canvases[kind] = canvas

    prepared = []
    original = CaptionsVisual._prepare_draw
    monkeypatch.setattr(CaptionsVisual, "_prepare_draw", lambda self, view: prepared.append(1) or original(self, view))

    def same_picture(a: np.ndarray, b: np.ndarray) -> None:
        # a caption's centre is summed up the widget tree here and by the GPU's transform for a
        # label: the glyph edges' anti-aliasing may differ by a grey level or two, nothing more
        assert np.abs(a - b).max() <= 3

    def both() -> dict[str, np.ndarray]:
        return {kind: c.render(alpha=False)[..., :3].astype(int) for kind, c in canvases.items()}

    first = both()
    assert first["labels"][:26].std() > 5, "no text drawn"
    same_picture(first["captions"], first["labels"])
    assert len(prepared) == 1, "one text visual for all the captions"
    for kind in canvases:
        titles[kind][1].text = "Ground truth (id001)"
        canvases[kind].size = (720, 320)
    changed = both()
    same_picture(changed["captions"], changed["labels"])
    assert np.abs(changed["captions"][:26, :600] - first["captions"][:26]).mean() > 0.5, "the change was not drawn"
    for kind in canvases:
        titles[kind][2].parent = None  # a cell taken out of the grid takes its caption along
    gone = both()
    same_picture(gone["captions"], gone["labels"])
    assert np.abs(gone["captions"][:26] - changed["captions"][:26]).mean() > 0.1


@gui
@opengl
def test_retarget_grid_captions_every_cell_with_one_text_draw(qtbot, monkeypatch):
    from vispy.visuals import TextVisual

    from tests.test_widgets import dome_mesh, foreground, shown_retarget_grid

    drawn = []
    original = TextVisual._prepare_draw
    monkeypatch.setattr(TextVisual, "_prepare_draw", lambda self, view: drawn.append(self.text) or original(self, view))
    grid = shown_retarget_grid(qtbot)
    vertices, faces, uvs = dome_mesh()
    grid.set_topology(faces, uvs)
    names = ["ann", "bob", "cyd", "dee"]
    grid.set_subjects(names, checked=names)
    grid.set_meshes({name: (vertices, None) for name in names})
    drawn.clear()
    image = grid.grab_image()
    assert drawn == [names], "one text draw holding every cell's caption"
    h, w, _ = image.shape
    for top in (image[:20, : w // 2], image[:20, w // 2:], image[h // 2:h // 2 + 22, : w // 2],
                image[h // 2:h // 2 + 22, w // 2:]):
        assert foreground(top).sum() > 20, "a cell without its caption"
    grid.set_targets(["bob"])
    drawn.clear()
    grid.grab_image()
    assert drawn == [["bob"]]
