"""Small forms that ask what a long job should do: export a driven sequence, adapt a new subject.

They only collect choices (paths, formats, ranges) and hand them back; the window starts the job.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QPushButton, QSpinBox, QWidget)

EXPORT_FORMATS: tuple[tuple[str, str], ...] = (
    ("obj", "OBJ sequence (one mesh per frame, + texture PNG when textured)"),
    ("ply", "PLY sequence (one binary mesh per frame)"),
    ("npz", "NPZ (meshes, codes, ground truth, retarget meshes)"),
    ("mp4", "MP4 video of the 3D viewer (mp4v)"),
    ("mkv", "MKV video of the 3D viewer (MJPG)"),
    ("avi", "AVI video of the 3D viewer (MJPG)"),
)
FOLDER_FORMATS = ("obj", "ply")


def _path_row(edit: QLineEdit, browse) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    button = QPushButton("Browse…")
    button.clicked.connect(browse)
    layout.addWidget(edit, 1)
    layout.addWidget(button)
    return row


class ExportDialog(QDialog):
    """Format, frame range and destination of a driven-sequence export."""

    def __init__(self, frame_count: int, default_dir: str, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export driven sequence")
        self.setMinimumWidth(520)
        self._name = name or "driven"
        self._dir = default_dir
        self.format_combo = QComboBox()
        for key, text in EXPORT_FORMATS:
            self.format_combo.addItem(text, key)
        self.first = QSpinBox(minimum=0, maximum=max(0, frame_count - 1))
        self.last = QSpinBox(minimum=0, maximum=max(0, frame_count - 1), value=max(0, frame_count - 1))
        self.path_edit = QLineEdit()
        self.format_combo.currentIndexChanged.connect(self._suggest_path)
        form = QFormLayout(self)
        form.addRow("Format", self.format_combo)
        form.addRow("First frame", self.first)
        form.addRow("Last frame", self.last)
        form.addRow("Save to", _path_row(self.path_edit, self._browse))
        self.note = QLabel("")
        self.note.setWordWrap(True)
        form.addRow(self.note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self._suggest_path()

    @property
    def fmt(self) -> str:
        return str(self.format_combo.currentData())

    def set_format(self, fmt: str) -> None:
        self.format_combo.setCurrentIndex([k for k, _ in EXPORT_FORMATS].index(fmt))

    def choice(self) -> tuple[str, Path, int, int]:
        """(format, path, first frame, stop frame exclusive)."""
        return self.fmt, Path(self.path_edit.text().strip()), self.first.value(), self.last.value() + 1

    def _suggest_path(self) -> None:
        fmt = self.fmt
        name = f"{self._name}_meshes" if fmt in FOLDER_FORMATS else f"{self._name}.{fmt}"
        self.path_edit.setText(str(Path(self._dir) / name))

    def _browse(self) -> None:
        if self.fmt in FOLDER_FORMATS:
            path = QFileDialog.getExistingDirectory(self, "Folder for the mesh sequence", self._dir)
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Export to", self.path_edit.text(), f"*.{self.fmt}")
        if path:
            self.path_edit.setText(path)

    def _accept(self) -> None:
        if not self.path_edit.text().strip():
            self.note.setText("Choose where to save the export.")
            return
        if self.last.value() < self.first.value():
            self.note.setText("The last frame must not come before the first.")
            return
        self.accept()


class AdaptDialog(QDialog):
    """Who to add, from which captures, for how long, and where the new checkpoint goes."""

    def __init__(self, model_path: str, data_dir: str, subject: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Adapt the model to a new subject")
        self.setMinimumWidth(560)
        self.data_edit = QLineEdit(data_dir, placeholderText="dataset or capture folder with the subject's captures")
        self.subject_edit = QLineEdit(subject, placeholderText="subject id, e.g. id005")
        self.steps = QSpinBox(minimum=10, maximum=100_000, value=2000, singleStep=100)
        self.neutral_edit = QLineEdit(placeholderText="optional: neutral mesh (default: the dataset's)")
        self.out_edit = QLineEdit()
        self._model = model_path
        self.subject_edit.textChanged.connect(self._suggest_out)
        form = QFormLayout(self)
        form.addRow(QLabel("Trains only the new subject's adaptation layer F_new; B and G stay frozen "
                           "(the paper's Table 3). The captures need avatar codes (codes.npy)."))
        form.addRow("Captures", _path_row(self.data_edit, self._browse_data))
        form.addRow("Subject", self.subject_edit)
        form.addRow("Steps", self.steps)
        form.addRow("Neutral mesh", _path_row(self.neutral_edit, self._browse_neutral))
        form.addRow("New model", _path_row(self.out_edit, self._browse_out))
        self.note = QLabel("")
        self.note.setStyleSheet("color: #e0453a;")
        form.addRow(self.note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self._suggest_out()

    def choice(self) -> dict:
        return {"data": self.data_edit.text().strip(), "subject": self.subject_edit.text().strip(),
                "steps": self.steps.value(), "neutral": self.neutral_edit.text().strip() or None,
                "out": self.out_edit.text().strip()}

    def _suggest_out(self) -> None:
        model = Path(self._model) if self._model else Path("model.pt")
        subject = self.subject_edit.text().strip() or "subject"
        self.out_edit.setText(str(model.with_name(f"{model.stem}+{subject}.pt")))

    def _browse_data(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Captures of the new subject", self.data_edit.text())
        if path:
            self.data_edit.setText(path)

    def _browse_neutral(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Neutral mesh", "", "Meshes (*.obj *.ply *.glb)")
        if path:
            self.neutral_edit.setText(path)

    def _browse_out(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "New model checkpoint", self.out_edit.text(), "*.pt")
        if path:
            self.out_edit.setText(path)

    def _accept(self) -> None:
        c = self.choice()
        missing = [k for k in ("data", "subject", "out") if not c[k]]
        if missing:
            self.note.setText(f"Fill in: {', '.join(missing)}.")
            return
        if not Path(c["data"]).exists():
            self.note.setText(f"{c['data']}: no such folder.")
            return
        self.accept()
