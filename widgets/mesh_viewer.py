"""The 3D viewer: the driven face, optionally its ground truth beside it, and an error map.

One vispy SceneCanvas holds a grid: titles on top (drawn by one Captions node,
widgets/captions.py), the driven view and (when given) the ground-truth view side by side with
linked turntable cameras, and a colour bar in mm shown in error mode. Everything the user sees
is inside the canvas, so ``grab_image`` (an offscreen render) is a faithful screenshot for
reports and exports.

Coordinates are millimetres, the face looks along +z with y up; ``reset_camera`` puts
the camera in front of the face. Data in: numpy arrays. Out: ``render_ms`` per draw.
"""
from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget
from vispy import scene
from vispy.color import Colormap

from widgets.captions import Captions, CaptionSlot
from widgets.colormap import DEFAULT_COLORMAP, apply_colormap, colormap_lut
from widgets.face_camera import BACKGROUND, TITLE_COLOR, frame_camera, headlight, make_front_camera
from widgets.face_mesh import MODES, FaceMesh
from widgets.offscreen_canvas import make_canvas
from widgets.stable_grid import StableGrid
from widgets.still_label import StillLabel


class MeshViewer(QWidget):
    """Driven mesh (+ ground truth) viewer with shaded/textured/wireframe/error modes."""

    render_ms = Signal(float)
    MODES = MODES

    def __init__(self, parent: QWidget | None = None, colormap: str = DEFAULT_COLORMAP) -> None:
        super().__init__(parent)
        self._colormap = colormap
        self._mode = "shaded"
        self._vmax = 5.0
        self._needs_framing = True
        self._draw_start = 0.0

        self.canvas, self.canvas_widget = make_canvas(BACKGROUND)  # offscreen where GL is software
        self._grid: scene.widgets.Grid | None = None
        self._title = CaptionSlot("Driven", height_max=26)
        self._gt_title = CaptionSlot("Ground truth", height_max=26)
        self._captions = Captions(self.canvas.central_widget, (self._title, self._gt_title),
                                  color=TITLE_COLOR, font_size=10)
        self._bar_title = StillLabel("error (mm)", color=TITLE_COLOR, font_size=9)  # error mode only
        self._bar_title.height_max = 26
        self._view = scene.ViewBox(camera=make_front_camera())
        self._gt_view = scene.ViewBox(camera=make_front_camera())
        self._gt_view.camera.link(self._view.camera)
        self._colorbar = scene.ColorBarWidget(
            cmap=Colormap(colormap_lut(colormap, 64)), orientation="right",
            label="", clim=(0.0, self._vmax), label_color="white",
            border_width=1, border_color="white", axis_ratio=0.06)
        self._colorbar.width_max = self._bar_title.width_max = 110
        self._driven = FaceMesh(self._view.scene)
        self._gt = FaceMesh(self._gt_view.scene)
        self._gt_shown = False
        self._relayout()

        self._view.camera.events.transform_change.connect(self._follow_light)
        self.canvas.events.draw.connect(self._on_draw_start, position="first")
        self.canvas.events.draw.connect(self._on_draw_end, position="last")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas_widget)
        self.setMinimumSize(320, 240)

    # -- data in ------------------------------------------------------------------------
    def set_topology(self, faces: np.ndarray, uvs: np.ndarray | None = None) -> None:
        """Triangles (F, 3) int and optional per-vertex UVs (V, 2); resets the meshes."""
        self._driven.set_topology(faces, uvs)
        self._gt.set_topology(faces, None)
        self._needs_framing = True
        self._apply_mode()
        self._set_gt_shown(False)

    def set_mesh(self, vertices: np.ndarray, texture: np.ndarray | None = None,
                 normals: np.ndarray | None = None) -> None:
        """Show the driven mesh (V, 3) mm; texture (h, w[, 3]) uint8/float or None (none); its
        vertex normals when already computed."""
        self._driven.set_vertices(vertices, normals)
        self._driven.set_texture(texture)
        if self._needs_framing:
            self.reset_camera()
        self.canvas.update()

    def set_ground_truth(self, vertices: np.ndarray | None, normals: np.ndarray | None = None) -> None:
        """Show the ground-truth mesh beside the driven one; None removes that view."""
        self._gt.set_vertices(vertices, normals)
        self._set_gt_shown(vertices is not None)
        self.canvas.update()

    def set_error(self, per_vertex_mm: np.ndarray | None, vmax_mm: float = 5.0) -> None:
        """Per-vertex error (V,) in mm for the heat map, clipped at vmax_mm; None clears."""
        if vmax_mm <= 0:
            raise ValueError(f"vmax_mm must be > 0, got {vmax_mm}")
        if vmax_mm != self._vmax:
            self._vmax = float(vmax_mm)
            self._colorbar.clim = (0.0, self._vmax)
        colors = None
        if per_vertex_mm is not None:
            colors = apply_colormap(np.asarray(per_vertex_mm).ravel(), self._vmax, self._colormap)
        self._driven.set_vertex_colors(colors)
        self.canvas.update()

    def set_titles(self, driven: str = "Driven", ground_truth: str = "Ground truth") -> None:
        """Captions above the two views (e.g. subject names)."""
        self._title.text, self._gt_title.text = driven, ground_truth

    # -- display ------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        """'shaded', 'textured', 'wireframe' or 'error' (heat map + colour bar)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == self._mode:
            return
        show_bar_changed = (mode == "error") != (self._mode == "error")
        self._mode = mode
        self._apply_mode()
        if show_bar_changed:
            self._relayout()
        self.canvas.update()

    def reset_camera(self) -> None:
        """Look at the face from the front, framing the driven (or ground-truth) mesh."""
        box = self._driven.bounds() or self._gt.bounds()
        if box is None:
            return
        frame_camera(self._view.camera, *box)
        self._needs_framing = False
        self._follow_light()

    def grab_image(self) -> np.ndarray:
        """An (H, W, 3) uint8 offscreen render of the whole canvas."""
        return np.ascontiguousarray(self.canvas.render(alpha=False)[..., :3])

    @property
    def ground_truth_shown(self) -> bool:
        return self._gt_shown

    # -- internals ----------------------------------------------------------------------
    def _apply_mode(self) -> None:
        self._driven.set_mode(self._mode)
        self._gt.set_mode(self._mode if self._mode in ("shaded", "wireframe") else "shaded")

    def _set_gt_shown(self, shown: bool) -> None:
        if shown != self._gt_shown:
            self._gt_shown = shown
            self._relayout()

    def _relayout(self) -> None:
        """Rebuild the grid: the ground-truth column and the colour bar come and go.

        vispy's Grid does not forget removed cells, so a fresh grid is cheaper and
        more predictable than editing the old one.
        """
        parts = (self._title, self._gt_title, self._bar_title, self._view, self._gt_view,
                 self._colorbar)
        for widget in parts:
            widget.parent = None
        if self._grid is not None:
            self.canvas.central_widget.remove_widget(self._grid)
        grid = self._grid = self.canvas.central_widget.add_widget(StableGrid(spacing=4))
        grid.add_widget(self._title, row=0, col=0)
        grid.add_widget(self._view, row=1, col=0)
        col = 1
        if self._gt_shown:
            grid.add_widget(self._gt_title, row=0, col=1)
            grid.add_widget(self._gt_view, row=1, col=1)
            col = 2
        if self._mode == "error":
            grid.add_widget(self._bar_title, row=0, col=col)
            grid.add_widget(self._colorbar, row=1, col=col)

    def _follow_light(self, event: object = None) -> None:
        lit = headlight(self._view.camera)
        if lit is not None:
            self._driven.set_light_dir(*lit)
            self._gt.set_light_dir(*lit)

    def _on_draw_start(self, event: object) -> None:
        self._draw_start = time.perf_counter()

    def _on_draw_end(self, event: object) -> None:
        self.render_ms.emit((time.perf_counter() - self._draw_start) * 1000.0)
