"""Pick a few named landmarks on a face scan in a 3D view, to fix the pose a registration starts from.

The automatic rigid search finds a face by its nose; a scan where that fails (a flattened nose, a
lot of extra geometry) or a user who wants to be sure clicks a few named points instead: nose tip,
eye corners, mouth corners, chin. ``LandmarkPicks`` holds them (plain Python: names in picking
order, the points, undo) and knows nothing of Qt; ``LandmarkPicker`` shows the scan in a vispy view
(drag to orbit, wheel to zoom), turns a click (press and release within a few pixels, left button)
into a ray through the camera and puts the current landmark where it first meets the scan's
triangles (``ray_hit``, numpy), draws the picks as labelled markers and lists them with Undo and
Clear. Picking rides on the canvas's own mouse events (``canvas.events.mouse_press/release``), so
it works on both canvases ``make_canvas`` returns.

Points are in the scan file's own coordinates and units, as ``mia register --landmarks`` expects;
``LandmarkPicks.to_json`` is that file's object form (``{"nose_tip": [x, y, z], ...}``). "Left" and
"right" are the person's own: seen from the front, their right eye is on the viewer's left. The
names are the ones ``engine/registration/landmarks.py`` accepts (a test checks they agree; widgets
do not import the engine).
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget
from vispy import scene

from widgets.face_camera import BACKGROUND, frame_camera, make_front_camera
from widgets.offscreen_canvas import make_canvas

PICK_ORDER: tuple[tuple[str, str], ...] = (  # engine name, what the user sees
    ("nose_tip", "nose tip"),
    ("right_eye_outer", "right eye, outer corner (person's right)"),
    ("right_eye_inner", "right eye, inner corner"),
    ("left_eye_inner", "left eye, inner corner"),
    ("left_eye_outer", "left eye, outer corner (person's left)"),
    ("mouth_right", "mouth, right corner"),
    ("mouth_left", "mouth, left corner"),
    ("chin", "chin"),
)
MIN_PICKS = 3
CLICK_SLOP_PX = 5.0
SCAN_COLOR = (0.78, 0.74, 0.70, 1.0)
MARK_COLOR = (1.0, 0.35, 0.2, 1.0)
CURRENT_MARK = "▶ "


class LandmarkPicks:
    """Named points picked on one scan, in picking order; ``listeners`` are called after each change."""

    def __init__(self, names: tuple[str, ...] = tuple(n for n, _ in PICK_ORDER)) -> None:
        self.names = names
        self.points: dict[str, np.ndarray] = {}
        self.listeners: list[Callable[[], None]] = []

    @property
    def current(self) -> str | None:
        """The next name to pick (the first not yet picked), or None when all are."""
        return next((n for n in self.names if n not in self.points), None)

    def add(self, point: Any, name: str | None = None) -> str | None:
        """Put ``name`` (default: the current one) at ``point``; returns the name set."""
        name = name or self.current
        if name is None:
            return None
        self.points.pop(name, None)
        self.points[name] = np.asarray(point, np.float64).reshape(3)
        self._changed()
        return name

    def undo(self) -> str | None:
        """Remove the last pick; returns its name."""
        if not self.points:
            return None
        name = list(self.points)[-1]
        del self.points[name]
        self._changed()
        return name

    def clear(self) -> None:
        self.points.clear()
        self._changed()

    @property
    def enough(self) -> bool:
        return len(self.points) >= MIN_PICKS

    def to_json(self) -> dict[str, list[float]]:
        """The ``--landmarks`` file's object form: ``{name: [x, y, z]}``."""
        return {name: [float(c) for c in p] for name, p in self.points.items()}

    def _changed(self) -> None:
        for listener in list(self.listeners):
            listener()


def ray_hit(verts: np.ndarray, faces: np.ndarray, origin: np.ndarray, direction: np.ndarray,
            edges: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray | None:
    """The first point where the ray ``origin + s * direction`` (s > 0) meets a triangle (Moller-Trumbore,
    all triangles at once), or None. ``edges`` = (v1 - v0, v2 - v0) per triangle, precomputed."""
    v0 = verts[faces[:, 0]]
    e1, e2 = edges if edges is not None else (verts[faces[:, 1]] - v0, verts[faces[:, 2]] - v0)
    d = np.asarray(direction, np.float64)
    p = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, p)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    tv = np.asarray(origin, np.float64) - v0
    u = np.einsum("ij,ij->i", tv, p) * inv
    q = np.cross(tv, e1)
    v = (q @ d) * inv
    s = np.einsum("ij,ij->i", e2, q) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (s > 0)
    if not hit.any():
        return None
    k = np.flatnonzero(hit)[np.argmin(s[hit])]
    return np.asarray(origin, np.float64) + s[k] * d


class LandmarkPicker(QWidget):
    """The scan in a 3D view, the landmarks to pick (current one marked), Undo and Clear."""

    picks_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.picks = LandmarkPicks()
        self.picks.listeners.append(self._show_picks)
        self.scan_path = ""
        self._verts = np.zeros((0, 3))
        self._faces = np.zeros((0, 3), np.int64)
        self._edges: tuple[np.ndarray, np.ndarray] | None = None
        self._press: tuple[float, float] | None = None

        self.canvas, self.canvas_widget = make_canvas(BACKGROUND)
        self.view = self.canvas.central_widget.add_view(camera=make_front_camera())
        self._mesh = scene.visuals.Mesh(parent=self.view.scene, color=SCAN_COLOR, shading="smooth")
        self._marks = scene.visuals.Markers(parent=self.view.scene)
        self._marks.set_gl_state("translucent", depth_test=False)
        self._labels = scene.visuals.Text("", parent=self.view.scene, color="white", font_size=7,
                                          anchor_x="left", anchor_y="bottom")
        self._labels.set_gl_state("translucent", depth_test=False)
        self.canvas.events.mouse_press.connect(self._on_press)
        self.canvas.events.mouse_release.connect(self._on_release)

        self.names_list = QListWidget()
        self.names_list.setMaximumHeight(150)
        self.names_list.itemClicked.connect(self._choose)
        self.undo_button = QPushButton("Undo")
        self.undo_button.clicked.connect(lambda: self.picks.undo())
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(lambda: self.picks.clear())
        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.undo_button)
        buttons.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas_widget, 1)
        layout.addWidget(self.hint)
        layout.addWidget(self.names_list)
        layout.addLayout(buttons)
        self.canvas_widget.setMinimumSize(240, 240)
        self._chosen: str | None = None
        self._show_picks()

    # -- data in ------------------------------------------------------------------------
    def load_scan(self, path: str) -> str:
        """Read a scan file (trimesh) and show it; returns "" or what went wrong."""
        import trimesh
        try:
            mesh = trimesh.load(path, force="mesh", process=False)
        except Exception as err:  # trimesh raises many types for a broken file
            return f"{path}: could not be read as a mesh ({type(err).__name__}: {err})"
        faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), np.int64).reshape(-1, 3)
        if len(faces) == 0:
            return f"{path}: the file holds no triangles; landmarks are picked on a triangle mesh of a face"
        self.set_scan(np.asarray(mesh.vertices, np.float64), faces, path)
        return ""

    def set_scan(self, verts: np.ndarray, faces: np.ndarray, path: str = "") -> None:
        """Show a scan (its own coordinates and units); the picks start empty."""
        self._verts = np.asarray(verts, np.float64)
        self._faces = np.asarray(faces, np.int64)
        v0 = self._verts[self._faces[:, 0]]
        self._edges = (self._verts[self._faces[:, 1]] - v0, self._verts[self._faces[:, 2]] - v0)
        self.scan_path = str(path)
        self._mesh.set_data(vertices=self._verts.astype(np.float32), faces=self._faces.astype(np.uint32),
                            color=SCAN_COLOR)
        lo, hi = self._verts.min(0), self._verts.max(0)
        frame_camera(self.view.camera, lo, hi)
        self._chosen = None
        self.picks.clear()
        self.canvas.update()

    @property
    def has_scan(self) -> bool:
        return len(self._faces) > 0

    # -- picking --------------------------------------------------------------------------
    def ray(self, pos: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """(origin, unit direction) in scan coordinates of the ray under canvas pixel ``pos``."""
        tr = self._mesh.get_transform(map_from="canvas", map_to="visual")
        near = np.asarray(tr.map([pos[0], pos[1], -1.0, 1.0]), np.float64)
        far = np.asarray(tr.map([pos[0], pos[1], 1.0, 1.0]), np.float64)
        near, far = near[:3] / near[3], far[:3] / far[3]
        d = far - near
        return near, d / max(float(np.linalg.norm(d)), 1e-12)

    def screen_position(self, point: np.ndarray) -> tuple[float, float]:
        """Canvas pixel where a scan point is drawn (for tests and tooltips)."""
        p = np.asarray(self._mesh.get_transform(map_from="visual", map_to="canvas").map(np.append(point, 1.0)))
        return float(p[0] / p[3]), float(p[1] / p[3])

    def pick_at(self, pos: tuple[float, float]) -> str | None:
        """Put the current landmark where the ray under ``pos`` meets the scan; returns its name or None."""
        if not self.has_scan:
            return None
        hit = ray_hit(self._verts, self._faces, *self.ray(pos), edges=self._edges)
        if hit is None:
            self.hint.setText("No scan under the pointer: click on the face.")
            return None
        name = self.picks.add(hit, self._chosen)
        self._chosen = None
        return name

    def _on_press(self, event: Any) -> None:
        self._press = tuple(event.pos[:2]) if event.button == 1 else None

    def _on_release(self, event: Any) -> None:
        press, self._press = self._press, None
        if press is None or event.button != 1:
            return
        if np.hypot(event.pos[0] - press[0], event.pos[1] - press[1]) <= CLICK_SLOP_PX:  # a click, not an orbit
            self.pick_at(tuple(event.pos[:2]))

    def _choose(self, item: QListWidgetItem) -> None:
        """Clicking a name in the list makes it the next one to place (re-pick one that is wrong)."""
        self._chosen = item.data(256)
        self._show_picks()

    # -- drawing --------------------------------------------------------------------------
    def _show_picks(self) -> None:
        current = self._chosen or self.picks.current
        self.names_list.clear()
        for name, title in PICK_ORDER:
            done = name in self.picks.points
            item = QListWidgetItem(f"{CURRENT_MARK if name == current else '   '}{title}{'  ✓' if done else ''}")
            item.setData(256, name)
            self.names_list.addItem(item)
        if not self.has_scan:
            self.hint.setText("Open a scan to pick landmarks on it.")
        elif current is None:
            self.hint.setText(f"All {len(self.picks.points)} landmarks placed.")
        else:
            need = max(MIN_PICKS - len(self.picks.points), 0)
            self.hint.setText(f"Click the {dict(PICK_ORDER)[current]} on the scan"
                              + (f" ({need} more needed)." if need else " (or register now)."))
        points = np.array(list(self.picks.points.values()), np.float32).reshape(-1, 3)
        if len(points):
            self._marks.set_data(points, face_color=MARK_COLOR, edge_color="white", size=11)
            self._labels.text = [n.replace("_", " ") for n in self.picks.points]
            self._labels.pos = points
        else:
            self._marks.set_data(np.zeros((0, 3), np.float32))
            self._labels.text = ""
        self._marks.visible = self._labels.visible = bool(len(points))
        self.undo_button.setEnabled(bool(self.picks.points))
        self.clear_button.setEnabled(bool(self.picks.points))
        self.canvas.update()
        self.picks_changed.emit()

    @property
    def scan_name(self) -> str:
        return os.path.basename(self.scan_path)
