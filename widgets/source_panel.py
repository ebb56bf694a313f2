"""Where the HMC frames come from: a recorded capture, three live cameras, or the
synthetic world streamed live.

The panel only assembles a plain ``spec`` dict and emits ``open_requested(spec)``; the
session opens the source and reports back with ``set_status`` (errors in red, one
sentence, never a traceback). Specs:

- ``{"kind": "capture", "path": str}``
- ``{"kind": "cameras", "headset": str, "urls": [str]*3, "rotate": [int]*3, "flip": [bool]*3}``
  (each url is an OpenCV device index written as digits, e.g. "0", or a stream URL; the
  headset name keys the saved camera profile, offered back through ``set_headsets``)
- ``{"kind": "synthetic", "subject": str, "seed": int}``
"""
from __future__ import annotations

from typing import Any, Sequence

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGridLayout, QHBoxLayout,
                               QLabel, QLineEdit, QListWidget, QPushButton, QSpinBox,
                               QTabWidget, QVBoxLayout, QWidget)

from widgets.hmc_views import CAMERA_NAMES
from widgets.status_label import StatusLabel

KINDS: tuple[str, ...] = ("capture", "cameras", "synthetic")
ROTATIONS: tuple[int, ...] = (0, 90, 180, 270)
Spec = dict[str, Any]


class _CapturePage(QWidget):
    """Folder of a recorded HMC capture, with a browse button and recent folders."""

    def __init__(self) -> None:
        super().__init__()
        self.path_edit = QLineEdit(placeholderText="capture folder (capture.json, cam0..2)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.recent_list = QListWidget()
        self.recent_list.setMaximumHeight(90)
        self.recent_list.currentTextChanged.connect(self.path_edit.setText)
        row = QHBoxLayout()
        row.addWidget(self.path_edit, stretch=1)
        row.addWidget(browse)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(QLabel("Recent:"))
        layout.addWidget(self.recent_list)

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open HMC capture folder",
                                                self.path_edit.text())
        if path:
            self.path_edit.setText(path)


class _CamerasPage(QWidget):
    """A headset name and three camera sources (device index or URL) with rotation and flip."""

    def __init__(self) -> None:
        super().__init__()
        self.url_edits: list[QLineEdit] = []
        self.rotate_combos: list[QComboBox] = []
        self.flip_checks: list[QCheckBox] = []
        self.headset_combo = QComboBox(editable=True, toolTip="Camera settings are saved per headset")
        self.headset_combo.lineEdit().setPlaceholderText("headset name, e.g. my-headset")
        grid = QGridLayout(self)
        grid.addWidget(QLabel("Headset"), 3, 0)
        grid.addWidget(self.headset_combo, 3, 1, 1, 3)
        for cam, name in enumerate(CAMERA_NAMES):
            edit = QLineEdit(str(cam), placeholderText="device index or http://host:8080/video")
            rotate = QComboBox()
            for degrees in ROTATIONS:
                rotate.addItem(f"{degrees}°", degrees)
            flip = QCheckBox("flip")
            grid.addWidget(QLabel(name), cam, 0)
            grid.addWidget(edit, cam, 1)
            grid.addWidget(rotate, cam, 2)
            grid.addWidget(flip, cam, 3)
            self.url_edits.append(edit)
            self.rotate_combos.append(rotate)
            self.flip_checks.append(flip)
        grid.setColumnStretch(1, 1)


class _SyntheticPage(QWidget):
    """A subject of the synthetic world and the random seed of its performance."""

    def __init__(self) -> None:
        super().__init__()
        self.subject_combo = QComboBox()
        self.seed_spin = QSpinBox(minimum=0, maximum=2**31 - 1)
        grid = QGridLayout(self)
        grid.addWidget(QLabel("Subject"), 0, 0)
        grid.addWidget(self.subject_combo, 0, 1)
        grid.addWidget(QLabel("Seed"), 1, 0)
        grid.addWidget(self.seed_spin, 1, 1)
        grid.setColumnStretch(1, 1)
        grid.setRowStretch(2, 1)


class SourcePanel(QWidget):
    """Source chooser emitting ``open_requested(spec)`` (see the module docstring)."""

    open_requested = Signal(dict)
    headset_selected = Signal(str)  # a saved headset picked from the list: fill in its profile

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.capture = _CapturePage()
        self.cameras = _CamerasPage()
        self.synthetic = _SyntheticPage()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.capture, "Recorded capture")
        self.tabs.addTab(self.cameras, "Live cameras")
        self.tabs.addTab(self.synthetic, "Synthetic live")
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(self.request_open)
        self.capture.recent_list.itemDoubleClicked.connect(lambda _item: self.request_open())
        self.cameras.headset_combo.activated.connect(
            lambda i: self.headset_selected.emit(self.cameras.headset_combo.itemText(i)))
        self.status = StatusLabel()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.tabs)
        row = QHBoxLayout()
        row.addWidget(self.status, stretch=1)
        row.addWidget(self.open_button)
        layout.addLayout(row)

    # -- state in ---------------------------------------------------------------------
    def set_subjects(self, subjects: Sequence[str]) -> None:
        """Subjects offered for the synthetic live source."""
        combo = self.synthetic.subject_combo
        current = combo.currentText()
        combo.clear()
        combo.addItems(list(subjects))
        if current in subjects:
            combo.setCurrentText(current)

    def set_headsets(self, names: Sequence[str]) -> None:
        """Headsets with saved camera profiles (the current text is kept)."""
        combo = self.cameras.headset_combo
        current = combo.currentText()
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(list(names))
        combo.setCurrentText(current)
        combo.blockSignals(False)

    def set_recent(self, paths: Sequence[str]) -> None:
        """Recently opened capture folders, newest first."""
        self.capture.recent_list.blockSignals(True)
        self.capture.recent_list.clear()
        self.capture.recent_list.addItems(list(paths))
        self.capture.recent_list.blockSignals(False)

    def set_status(self, text: str, ok: bool = True) -> None:
        """One line under the panel: neutral when ok, red when something failed."""
        self.status.show_message(text, ok)

    def set_kind(self, kind: str) -> None:
        """Switch to the 'capture', 'cameras' or 'synthetic' page."""
        self.tabs.setCurrentIndex(KINDS.index(kind))

    def set_spec(self, spec: Spec) -> None:
        """Fill the panel from a spec (e.g. restored from QSettings)."""
        kind = spec.get("kind", "capture")
        self.set_kind(kind)
        if kind == "capture":
            self.capture.path_edit.setText(str(spec.get("path", "")))
        elif kind == "cameras":
            page = self.cameras
            page.headset_combo.setCurrentText(str(spec.get("headset", "")))
            for cam in range(3):
                page.url_edits[cam].setText(str(spec.get("urls", ["0", "1", "2"])[cam]))
                rotate = int(spec.get("rotate", [0, 0, 0])[cam])
                page.rotate_combos[cam].setCurrentIndex(ROTATIONS.index(rotate))
                page.flip_checks[cam].setChecked(bool(spec.get("flip", [False] * 3)[cam]))
        else:
            self.synthetic.subject_combo.setCurrentText(str(spec.get("subject", "")))
            self.synthetic.seed_spin.setValue(int(spec.get("seed", 0)))

    # -- spec out ----------------------------------------------------------------------
    def spec(self) -> Spec:
        """The spec the current page describes (not validated)."""
        kind = KINDS[self.tabs.currentIndex()]
        if kind == "capture":
            return {"kind": "capture", "path": self.capture.path_edit.text().strip()}
        if kind == "cameras":
            page = self.cameras
            return {"kind": "cameras", "headset": page.headset_combo.currentText().strip(),
                    "urls": [e.text().strip() for e in page.url_edits],
                    "rotate": [int(c.currentData()) for c in page.rotate_combos],
                    "flip": [c.isChecked() for c in page.flip_checks]}
        return {"kind": "synthetic", "subject": self.synthetic.subject_combo.currentText(),
                "seed": int(self.synthetic.seed_spin.value())}

    def request_open(self) -> None:
        """Validate the current page and emit ``open_requested``, or say what is missing."""
        spec = self.spec()
        problem = _problem_with(spec)
        if problem:
            self.set_status(problem, ok=False)
            return
        self.set_status("opening…", ok=True)
        self.open_requested.emit(spec)


def _problem_with(spec: Spec) -> str:
    """Empty when the spec is complete, else what the user must fill in."""
    if spec["kind"] == "capture" and not spec["path"]:
        return "Choose a capture folder first."
    if spec["kind"] == "cameras":
        missing = [CAMERA_NAMES[i] for i, url in enumerate(spec["urls"]) if not url]
        if missing:
            return f"Enter a device index or URL for: {', '.join(missing)}."
    if spec["kind"] == "synthetic" and not spec["subject"]:
        return "No synthetic subjects are available (generate a synthetic world first)."
    return ""
