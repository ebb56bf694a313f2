"""The long jobs behind the File and Tools menus: evaluate, adapt, export ONNX, export a sequence.

Each asks what to do (app/dialogs.py), runs off the GUI thread behind a progress dialog with Cancel
(app/workers.py, or the session's own worker for sequence exports) and reports the outcome in the
dialog and the status bar. Nothing here blocks the GUI thread for longer than a frame.

The actions know the window only through ``StudioWindow``, the few parts they use (a structural
protocol the main window satisfies), so this module does not import app/main_window.py, which
imports it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from app import tasks
from app.dialogs import AdaptDialog, ExportDialog
from app.exporter import ExportRequest, SequenceExporter
from app.presenter import FramePresenter
from app.session import Session
from app.status_bar import StudioStatusBar
from app.workers import run_in_dialog
from widgets.mesh_viewer import MeshViewer
from widgets.progress_dialog import TaskProgressDialog


class StudioWindow(Protocol):
    """What the actions need from the window they serve (app/main_window.MainWindow has it)."""

    session: Session
    status: StudioStatusBar
    presenter: FramePresenter
    viewer: MeshViewer
    threads: int

    @property
    def topology(self) -> Any: ...

    def open_model(self, path: str) -> None: ...

    def save_screenshot(self, path: str) -> bool: ...


class StudioActions:
    """Menu actions that start long work; keeps the running jobs alive."""

    def __init__(self, window: StudioWindow) -> None:
        self.window = window
        self.jobs: list[Any] = []

    @property
    def session(self) -> Session:
        return self.window.session

    @property
    def parent(self) -> QWidget | None:
        """The window as the parent of the dialogs (None when it is not a widget, e.g. in a test)."""
        return self.window if isinstance(self.window, QWidget) else None

    def _need(self, model: bool = False, capture: bool = False) -> bool:
        """Say what is missing (status bar) and return False when a job cannot start."""
        if model and not self.session.model_path:
            self.window.status.show_error("Load a model first (File › Open model…).")
            return False
        if capture and self.session.source_info.get("kind") != "capture":
            self.window.status.show_error("Open a recorded capture first (File › Open capture…); "
                                          "this works on recorded captures only.")
            return False
        return True

    # ----- Tools › Evaluate capture
    def evaluate_capture(self) -> TaskProgressDialog | None:
        if not (self._need(model=True, capture=True)):
            return None
        info = self.session.source_info
        if not info.get("has_ground_truth"):
            self.window.status.show_error(f"{info.get('name')}: has no ground-truth meshes (meshes.npy) to "
                                          "evaluate against.")
            return None
        subject = self.session.subject_info
        spec = self.session.catalog.resolve(info.get("subject_id") or "")
        path = str(info["spec"]["path"])

        def done(result: tasks.EvaluationResult) -> str:
            self.session.errors.set_all(result.frames, result.shape)
            self.window.presenter.set_evaluation_rows(result.rows())
            self.window.presenter.refresh_plots(self.session.errors)
            means = ", ".join(f"{r} {np.mean(v):.2f}" for r, v in result.shape.items())
            text = f"Evaluated {len(result.frames)} frames of {result.capture}: mean error (mm) {means}."
            if result.notes:
                text += " " + " ".join(result.notes)
            self.window.status.show_notice(text)
            return text

        neutral = subject.get("neutral") if subject else None
        job = run_in_dialog(self.parent, "Evaluate capture",
                            lambda ctx: tasks.evaluate(ctx, self.session.model_path, path,
                                                       info.get("subject_id"), neutral,
                                                       spec.avatar if spec else None, self.window.threads),
                            done)
        self.jobs.append(job)
        return job[1]

    # ----- Tools › Adapt subject
    def adapt_subject(self, choice: dict | None = None) -> TaskProgressDialog | None:
        if not self._need(model=True):
            return None
        if choice is None:
            info = self.session.source_info
            data = str(Path(info["spec"]["path"]).parent) if info.get("kind") == "capture" else ""
            dialog = AdaptDialog(self.session.model_path, data, info.get("subject_id") or "", self.parent)
            if dialog.exec() != AdaptDialog.DialogCode.Accepted:
                return None
            choice = dialog.choice()
        model = self.session.model_path

        def done(path: Path) -> str:
            self.window.open_model(str(path))
            return f"Added {choice['subject']} to a new model {path}; it is now loaded."

        job = run_in_dialog(self.parent, f"Adapt to {choice['subject']}",
                            lambda ctx: tasks.adapt_subject(ctx, model, choice["data"], choice["subject"],
                                                            choice["out"], int(choice["steps"]), choice["neutral"]),
                            done, cancelled_text="Adaptation cancelled; no checkpoint was written.")
        self.jobs.append(job)
        return job[1]

    # ----- Tools › Export ONNX
    def export_onnx(self, folder: str | None = None) -> TaskProgressDialog | None:
        if not self._need(model=True):
            return None
        model = self.session.model_path
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self.parent, "Folder for the ONNX export",
                                                      str(Path(model).parent))
            if not folder:
                return None

        def done(manifest: dict) -> str:
            err = manifest.get("max_abs_error", {})
            return (f"Exported to {folder} (max error vs torch: mesh {err.get('mesh', float('nan')):.1e} mm).")

        job = run_in_dialog(self.parent, "Export ONNX", lambda ctx: tasks.export_onnx(ctx, model, folder), done)
        self.jobs.append(job)
        return job[1]

    # ----- File › Export driven sequence
    def export_sequence(self, choice: tuple[str, Path, int, int] | None = None) -> TaskProgressDialog | None:
        if not self._need(model=True, capture=True):
            return None
        info = self.session.source_info
        if choice is None:
            dialog = ExportDialog(self.session.frame_count, str(Path.home()), str(info.get("name", "")), self.parent)
            if dialog.exec() != ExportDialog.DialogCode.Accepted:
                return None
            choice = dialog.choice()
        fmt, path, start, stop = choice
        topology = self.window.topology
        request = ExportRequest(Path(path), fmt, start, min(stop, self.session.frame_count), float(info.get("fps", 30)),
                                None if topology is None else topology.faces,
                                None if topology is None else topology.uvs,
                                str(self.session.subject_info.get("name", "")))
        dialog = TaskProgressDialog("Export driven sequence", self.parent)
        exporter = SequenceExporter(self.session, request, self.window.viewer.grab_image)
        exporter.progress.connect(dialog.set_progress)
        exporter.finished_with.connect(dialog.finish)
        exporter.finished_with.connect(self.window.status.show_notice)
        exporter.failed.connect(dialog.fail)
        dialog.cancel_requested.connect(exporter.cancel)
        dialog.set_progress(0, stop - start, f"exporting frames {start}..{stop - 1}")
        dialog.show()
        try:
            exporter.start()
        except Exception as err:
            from app.logs import report
            dialog.fail(report(err, "export"))
        self.jobs.append((exporter, dialog))
        return dialog

    # ----- File › Save screenshot
    def save_screenshot(self, path: str | None = None) -> str | None:
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self.parent, "Save screenshot", "mia_studio.png", "*.png")
            if not path:
                return None
        if not self.window.save_screenshot(path):
            QMessageBox.warning(self.parent, "Screenshot", f"Could not write {path}.")
            return None
        self.window.status.show_notice(f"Screenshot saved to {path}")
        return path
