"""Load a subject's neutral mesh and see whether it fits the model's topology.

MIA's shape network G only needs a neutral mesh S_N, but it must share the topology
the model was trained on. The panel asks for a file (``load_requested(path)``) and
shows what the session found: vertex count, units, size, and — on a mismatch — the
explanation in red (e.g. "expected 7492 vertices (topology ict-narrow-iris), got 5023").
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QFormLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from widgets.status_label import StatusLabel

MESH_FILTER = "Meshes (*.obj *.ply *.glb);;All files (*)"
OK_STYLE = "color: #3aa655;"
BAD_STYLE = "color: #e0453a;"


class NeutralMeshPanel(QWidget):
    """"Load neutral mesh…" button plus a read-out of the loaded mesh."""

    load_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.load_button = QPushButton("Load neutral mesh…")
        self.load_button.clicked.connect(self._browse)
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
        layout.addLayout(form)
        layout.addWidget(self.message)
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

    @property
    def message_text(self) -> str:
        return self.message.text()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load neutral mesh", self._last_dir,
                                              MESH_FILTER)
        if path:
            self._last_dir = os.path.dirname(path)
            self.load_requested.emit(path)
