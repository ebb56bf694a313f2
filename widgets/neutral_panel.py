"""Load a subject's neutral mesh and see whether it fits the model's topology.

MIA's shape network G only needs a neutral mesh S_N, but it must share the topology
the model was trained on. The panel asks for a file (``load_requested(path)``) and
shows what the session found: vertex count, units, size, and — on a mismatch — the
explanation in red (e.g. "expected 7492 vertices (topology ict-narrow-iris), got 5023").

A scan in any other topology, units or pose is registered to the model first: "Register scan…"
asks for the scan and where to write the registered neutral (``register_requested(scan, out)``);
the window runs the registration off the GUI thread and hands back its quality report
(``show_registration``): a heat map of the per-vertex residual on the face, the mean, 95th
percentile and coverage, and any warnings.

"Pick landmarks on a scan…" opens a scan in a 3D view (``widgets/landmark_picker.py``) where the user
clicks a few named points (nose tip, eye and mouth corners, chin), with Undo and Clear; "Register with
these landmarks…" then asks where to write the result and emits ``register_requested`` like the plain
button. The registration asks ``landmarks_for(scan)`` for the points picked on that scan (None when
there are fewer than three or they were picked on another file), so the pose starts from them.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QFormLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from widgets.landmark_picker import LandmarkPicker
from widgets.residual_map import ResidualMap
from widgets.status_label import StatusLabel

MESH_FILTER = "Meshes (*.obj *.ply *.glb);;All files (*)"
SCAN_FILTER = "Scans (*.obj *.ply *.stl *.glb *.gltf *.off);;All files (*)"
REGISTERED_FILTER = "Meshes (*.obj *.ply)"
OK_STYLE = "color: #3aa655;"
BAD_STYLE = "color: #e0453a;"


class NeutralMeshPanel(QWidget):
    """"Load neutral mesh…" button plus a read-out of the loaded mesh."""

    load_requested = Signal(str)
    register_requested = Signal(str, str)  # scan file, registered neutral to write

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.load_button = QPushButton("Load neutral mesh…")
        self.load_button.clicked.connect(self._browse)
        self.register_button = QPushButton("Register scan…")
        self.register_button.setToolTip("Register a face scan of any topology, units and pose to the model")
        self.register_button.clicked.connect(self._browse_scan)
        self.pick_button = QPushButton("Pick landmarks on a scan…")
        self.pick_button.setToolTip("Click a few named points on a scan (nose tip, eye and mouth corners, chin) "
                                    "so that its registration starts from them")
        self.pick_button.clicked.connect(self._browse_pick_scan)
        self._picker: LandmarkPicker | None = None  # made on first use: it holds a GL canvas
        self.register_picked_button = QPushButton("Register with these landmarks…")
        self.register_picked_button.clicked.connect(self._register_picked)
        self.register_picked_button.hide()
        self.residual_map = ResidualMap()
        self.registration_label = QLabel("")
        self.registration_label.setWordWrap(True)
        self.registration_label.hide()
        self._fields = {key: QLabel("–") for key in
                        ("file", "vertices", "units", "size", "topology", "mode")}
        form = QFormLayout()
        for key, title in (("file", "File"), ("vertices", "Vertices"), ("units", "Units"),
                           ("size", "Size (mm)"), ("topology", "Topology"),
                           ("mode", "Drives")):
            form.addRow(title, self._fields[key])
        self.message = StatusLabel()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.load_button)
        layout.addWidget(self.register_button)
        layout.addWidget(self.pick_button)
        self._picker_index = layout.count()
        layout.addWidget(self.register_picked_button)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(self.residual_map)
        layout.addWidget(self.registration_label)
        layout.addStretch(1)
        self._last_dir = ""

    def show_info(self, info: Mapping[str, Any]) -> None:
        """Show a validated mesh: path, vertex_count, units, bbox_mm, matches_topology,
        message, mode (missing keys show "–")."""
        path = str(info.get("path", ""))
        self._fields["file"].setText(os.path.basename(path) or "–")
        self._fields["file"].setToolTip(path)
        count = info.get("vertex_count")
        self._fields["vertices"].setText("–" if count is None else f"{int(count):,}")
        self._fields["units"].setText(str(info.get("units", "–")))
        bbox = info.get("bbox_mm")
        self._fields["size"].setText("–" if bbox is None else
                                     " × ".join(f"{float(v):.1f}" for v in bbox))
        self._fields["mode"].setText(str(info.get("mode", "–")))
        matches = bool(info.get("matches_topology", False))
        topology = self._fields["topology"]
        topology.setText("matches the model" if matches else "does not match the model")
        topology.setStyleSheet(OK_STYLE if matches else BAD_STYLE)
        self.message.show_message(str(info.get("message", "")), ok=matches)

    def show_error(self, text: str) -> None:
        """The mesh could not be loaded at all: clear the read-out, say why in red."""
        for label in self._fields.values():
            label.setText("–")
            label.setStyleSheet("")
        self.message.show_message(text, ok=False)

    def show_registration(self, verts: Any, faces: Any, residual: Any, summary: str,
                          warnings: list[str] | None = None, scale_mm: float = 1.0) -> None:
        """A registration's quality: heat map of ``residual`` (mm per vertex, NaN = not covered)
        on the registered mesh, its summary line and warnings (red when there are any)."""
        self.residual_map.show_residuals(verts, faces, residual, scale_mm)
        text = f"Registration: {summary}. Colour: 0 (blue) to {scale_mm:g} mm (red); grey: not in the scan."
        if warnings:
            text += "\n" + "\n".join(f"⚠ {w}" for w in warnings)
        self.registration_label.setText(text)
        self.registration_label.setStyleSheet(BAD_STYLE if warnings else "")
        self.registration_label.show()

    def clear_registration(self) -> None:
        self.residual_map.clear_map()
        self.registration_label.clear()
        self.registration_label.hide()

    @property
    def registration_text(self) -> str:
        return self.registration_label.text()

    def set_registering(self, busy: bool) -> None:
        """Only one registration at a time: the button is off while one runs."""
        self._registering = busy
        self.register_button.setEnabled(not busy)
        self._update_pick_buttons()

    @property
    def picker(self) -> LandmarkPicker:
        """The landmark picker (a 3D view of the scan), made the first time it is needed."""
        if self._picker is None:
            self._picker = LandmarkPicker()
            self._picker.hide()
            self._picker.picks_changed.connect(self._update_pick_buttons)
            self.layout().insertWidget(self._picker_index, self._picker, 1)
        return self._picker

    def open_scan_for_picking(self, path: str) -> bool:
        """Show a scan in the landmark picker; False (and the reason in red) when it cannot be read."""
        problem = self.picker.load_scan(path)
        if problem:
            self.message.show_message(problem, ok=False)
            return False
        self.picker.show()
        self.register_picked_button.show()
        self._update_pick_buttons()
        return True

    def landmarks_for(self, scan: str) -> dict[str, list[float]] | None:
        """The landmarks picked on ``scan`` ({name: [x, y, z]} in its own units), or None when fewer than
        three were picked on it."""
        if self._picker is None or not self._picker.has_scan or not self._picker.picks.enough:
            return None
        if os.path.abspath(self.picker.scan_path) != os.path.abspath(scan):
            return None
        return self.picker.picks.to_json()

    def _update_pick_buttons(self) -> None:
        busy = getattr(self, "_registering", False)
        self.register_picked_button.setEnabled(not busy and self._picker is not None and self._picker.picks.enough)
        self.pick_button.setEnabled(not busy)

    @property
    def message_text(self) -> str:
        return self.message.text()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load neutral mesh", self._last_dir,
                                              MESH_FILTER)
        if path:
            self._last_dir = os.path.dirname(path)
            self.load_requested.emit(path)

    def _browse_scan(self) -> None:
        scan, _ = QFileDialog.getOpenFileName(self, "Register a face scan", self._last_dir, SCAN_FILTER)
        if not scan:
            return
        self._last_dir = os.path.dirname(scan)
        self._ask_out_and_register(scan)

    def _browse_pick_scan(self) -> None:
        scan, _ = QFileDialog.getOpenFileName(self, "Pick landmarks on a face scan", self._last_dir, SCAN_FILTER)
        if scan:
            self._last_dir = os.path.dirname(scan)
            self.open_scan_for_picking(scan)

    def _register_picked(self) -> None:
        if self._picker is not None and self._picker.has_scan and self._picker.picks.enough:
            self._ask_out_and_register(self.picker.scan_path)

    def _ask_out_and_register(self, scan: str) -> None:
        stem = os.path.splitext(os.path.basename(scan))[0]
        default = os.path.join(os.path.dirname(scan), f"{stem}_registered", "neutral.obj")
        out, _ = QFileDialog.getSaveFileName(self, "Save the registered neutral as", default, REGISTERED_FILTER)
        if out:
            self.register_requested.emit(scan, out)
