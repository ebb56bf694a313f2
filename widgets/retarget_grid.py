"""Retargeting: the same expression code driving several target subjects at once.

The user ticks target subjects; each gets a small titled view. All views live in ONE
vispy SceneCanvas (a grid of ViewBoxes with linked cameras), which costs one GL
context and one draw per frame instead of one per subject. ``textured_changed`` asks
the session for textured avatars (F_j/D_j) or shape only (G with the neutral mesh).

The cells are small, so they draw a coarser display mesh over the same vertices (about half the
triangles, widgets/display_lod.py), made once per topology from the first meshes shown, and shaded
with the full mesh's smooth normals. With software GL that took four retarget subjects from 27-28
to 32-33 fps (docs/studio_speed.md). ``coarse_rounds = 0`` draws the full mesh.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QListWidget, QListWidgetItem, QSplitter,
                               QVBoxLayout, QWidget)
from vispy import scene

from widgets.captions import Captions, CaptionSlot
from widgets.display_lod import coarse_faces
from widgets.face_camera import BACKGROUND, TITLE_COLOR, frame_camera, headlight, make_front_camera
from widgets.face_mesh import FaceMesh, face_to_vertex, smooth_vertex_normals
from widgets.offscreen_canvas import make_canvas
from widgets.stable_grid import StableGrid

MeshAndTexture = tuple[np.ndarray, np.ndarray | None]
COARSE_ROUNDS = 4  # rounds of display_lod.coarse_faces: ~51 % of the kit's 14,606 triangles
COARSE_MIN_FACES = 2000  # smaller meshes are drawn as they are


class _SubjectView:
    """One grid cell: a title's place (the canvas's Captions draw it), a view box and the subject's
    face mesh."""

    def __init__(self, name: str, faces: np.ndarray | None, uvs: np.ndarray | None) -> None:
        self.title = CaptionSlot(name, height_max=22)
        self.view = scene.ViewBox()
        self.mesh = FaceMesh(self.view.scene)
        if faces is not None:
            self.mesh.set_topology(faces, uvs)
        self.use_camera(make_front_camera())

    def use_camera(self, camera: scene.TurntableCamera) -> None:
        """Give the view a (fresh) camera; the head-light follows it."""
        self.view.camera = camera
        camera.events.transform_change.connect(self.follow_light)

    def follow_light(self, event: object = None) -> None:
        """Point the light along the camera's current view (a head-light)."""
        lit = headlight(self.view.camera)
        if lit is not None:
            self.mesh.set_light_dir(*lit)


class RetargetGrid(QWidget):
    """Checkable target list + a grid of driven target faces in one canvas."""

    targets_changed = Signal(list)
    textured_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.subject_list = QListWidget()
        self.subject_list.itemChanged.connect(self._on_item_changed)
        self.textured_check = QCheckBox("Textured avatars")
        self.textured_check.setToolTip("Off: shape only (G with each neutral mesh)")
        self.textured_check.toggled.connect(self._on_textured)
        self.canvas, self.canvas_widget = make_canvas(BACKGROUND)  # offscreen where GL is software
        self._grid: scene.widgets.Grid | None = None
        self._captions = Captions(self.canvas.central_widget, color=TITLE_COLOR, font_size=9)
        self._faces: np.ndarray | None = None
        self._uvs: np.ndarray | None = None
        self._shown_faces: np.ndarray | None = None  # what the cells draw: _faces or a coarser set
        self._normal_op = None  # the full topology's face -> vertex sum, for normals not given
        self.coarse_rounds = COARSE_ROUNDS
        self._cells: dict[str, _SubjectView] = {}
        self._shown: list[str] = []
        self._needs_framing = True
        self._emitting = True

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.subject_list)
        left_layout.addWidget(self.textured_check)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self.canvas_widget)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([160, 480])
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

    # -- targets ------------------------------------------------------------------------
    def set_subjects(self, subjects: Sequence[str], checked: Sequence[str] = ()) -> None:
        """Subjects that can be driven; ``checked`` ones start ticked (no signal)."""
        self._emitting = False
        self.subject_list.clear()
        for name in subjects:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if name in checked
                               else Qt.CheckState.Unchecked)
            self.subject_list.addItem(item)
        self._emitting = True
        self._update_views()

    def set_targets(self, names: Sequence[str]) -> None:
        """Tick exactly these subjects (no signal)."""
        self._emitting = False
        for i in range(self.subject_list.count()):
            item = self.subject_list.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.text() in names
                               else Qt.CheckState.Unchecked)
        self._emitting = True
        self._update_views()

    def targets(self) -> list[str]:
        """Ticked subjects in list order."""
        items = (self.subject_list.item(i) for i in range(self.subject_list.count()))
        return [it.text() for it in items if it.checkState() == Qt.CheckState.Checked]

    # -- meshes -------------------------------------------------------------------------
    def set_topology(self, faces: np.ndarray, uvs: np.ndarray | None = None) -> None:
        """The shared topology of all targets (F, 3) and optional UVs (V, 2)."""
        self._faces = np.asarray(faces)
        self._uvs = None if uvs is None else np.asarray(uvs)
        self._shown_faces = self._faces  # until the first meshes give the coarse set its geometry
        self._normal_op = None
        for cell in self._cells.values():
            cell.mesh.set_topology(self._faces, self._uvs)
        self._needs_framing = True

    @property
    def drawn_faces(self) -> np.ndarray | None:
        """The triangles the cells draw (the topology's, or its coarser display set)."""
        return self._shown_faces

    def _coarsen(self, vertices: np.ndarray) -> None:
        """Switch the cells to a coarser display mesh made on `vertices` (once per topology)."""
        if (self._faces is None or self._shown_faces is not self._faces or self.coarse_rounds <= 0
                or len(self._faces) < COARSE_MIN_FACES or len(vertices) <= int(self._faces.max())):
            return
        self._shown_faces = coarse_faces(vertices, self._faces, rounds=self.coarse_rounds)
        self._normal_op = face_to_vertex(self._faces, int(self._faces.max()) + 1)
        for cell in self._cells.values():
            cell.mesh.set_topology(self._shown_faces, self._uvs)

    def _full_normals(self, vertices: np.ndarray) -> np.ndarray | None:
        """Smooth normals of the full mesh for a coarse cell whose normals were not given (the coarse
        triangles' own would shade the face in blotches); None when the cells draw the full mesh."""
        if self._normal_op is None or self._faces is None:
            return None
        return smooth_vertex_normals(np.asarray(vertices, np.float32), self._faces, self._normal_op)

    def set_meshes(self, meshes: Mapping[str, MeshAndTexture],
                   normals: Mapping[str, np.ndarray] | None = None) -> None:
        """Per target: (vertices (V, 3) mm, texture or None), and their vertex normals by name when
        already computed. Unticked names are ignored."""
        textured = self.textured_check.isChecked()
        normals = normals or {}
        if meshes:
            self._coarsen(np.asarray(next(iter(meshes.values()))[0]))
        for name, (vertices, texture) in meshes.items():
            cell = self._cells.get(name)
            if cell is None:
                continue
            given = normals.get(name)
            cell.mesh.set_vertices(vertices, given if given is not None else self._full_normals(vertices))
            cell.mesh.set_texture(texture if textured else None)
        if self._needs_framing and self._shown:
            self.reset_camera()
        self.canvas.update()

    def set_textured(self, textured: bool) -> None:
        """Tick or untick "Textured avatars" (emits textured_changed when it changes)."""
        self.textured_check.setChecked(textured)

    def reset_camera(self) -> None:
        """Frame all targets' meshes from the front (one camera, the others are linked)."""
        boxes = [b for b in (self._cells[n].mesh.bounds() for n in self._shown) if b is not None]
        if not boxes:
            return
        lo = np.min([b[0] for b in boxes], axis=0)
        hi = np.max([b[1] for b in boxes], axis=0)
        frame_camera(self._cells[self._shown[0]].view.camera, lo, hi)
        self._needs_framing = False
        for cell in self._cells.values():
            cell.follow_light()

    def grab_image(self) -> np.ndarray:
        """An (H, W, 3) uint8 offscreen render of the whole grid."""
        return np.ascontiguousarray(self.canvas.render(alpha=False)[..., :3])

    @property
    def view_names(self) -> list[str]:
        """Subjects that currently have a view, in grid order."""
        return list(self._shown)

    # -- internals --------------------------------------------------------------------
    def _on_item_changed(self, _item: QListWidgetItem) -> None:
        if not self._emitting:
            return
        self._update_views()
        self.targets_changed.emit(self.targets())

    def _on_textured(self, textured: bool) -> None:
        for cell in self._cells.values():
            cell.mesh.set_mode("textured" if textured else "shaded")
        self.canvas.update()
        self.textured_changed.emit(textured)

    def _update_views(self) -> None:
        """Create/drop cells for the ticked subjects and rebuild the grid."""
        wanted = self.targets()
        if wanted == self._shown:
            return
        for name in list(self._cells):
            if name not in wanted:
                del self._cells[name]
        mode = "textured" if self.textured_check.isChecked() else "shaded"
        for name in wanted:
            if name not in self._cells:
                self._cells[name] = _SubjectView(name, self._shown_faces, self._uvs)
                self._cells[name].mesh.set_mode(mode)
        self._shown = wanted
        self._relayout()

    def _relayout(self) -> None:
        if self._grid is not None:
            for cell in self._cells.values():
                cell.title.parent = cell.view.parent = None
            self.canvas.central_widget.remove_widget(self._grid)
        grid = self._grid = self.canvas.central_widget.add_widget(StableGrid(spacing=2))
        ncols = max(1, math.ceil(math.sqrt(len(self._shown))))
        leader = None
        for i, name in enumerate(self._shown):
            cell = self._cells[name]
            row, col = divmod(i, ncols)
            cell_grid = grid.add_grid(row=row, col=col)  # title over view, sized per cell
            cell_grid.add_widget(cell.title, row=0, col=0)
            cell_grid.add_widget(cell.view, row=1, col=0)
            cell.use_camera(make_front_camera())  # fresh cameras: no stale links
            if leader is None:
                leader = cell.view.camera
            else:
                cell.view.camera.link(leader)
        self._captions.set_slots(self._cells[name].title for name in self._shown)
        self._needs_framing = True
        self.reset_camera()
        self.canvas.update()
