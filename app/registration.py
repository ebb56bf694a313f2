"""The neutral panel's "Register scan…": engine.registration off the GUI thread, then drive the result.

``start_registration`` runs ``engine.registration.register_file`` as a Task behind a progress dialog
with Cancel (app/workers.py); when it finishes, the panel shows the quality report as a heat map and
the window loads the registered neutral like any other (validated against the model topology, then
driven shape-only, or with an avatar after ``mia adapt``). ``show_saved_report`` shows the report a
registered neutral carries beside it (``<stem>.registration.json``) whenever such a mesh is loaded.
Landmarks picked on the scan in the panel (``NeutralMeshPanel.landmarks_for``) go to the registration,
which saves them beside the result (``<stem>.landmarks.json``, the ``--landmarks`` format).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.workers import TaskContext, run_in_dialog

if TYPE_CHECKING:
    from app.main_window import MainWindow
    from widgets.neutral_panel import NeutralMeshPanel

HEAT_SCALE_MM = 1.0


def register(ctx: TaskContext, scan: str, out: str, units: str | None = None,
             landmarks: dict | None = None) -> Any:
    """The task: register ``scan`` and write ``out`` plus its report, and the landmarks when given
    (``<stem>.landmarks.json``); nothing is written if cancelled."""
    from engine.registration import register_file
    ctx.progress(0, 0, "loading the scan…")
    return register_file(scan, out, units, progress=ctx.progress, cancel=lambda: ctx.cancelled,
                         landmarks=landmarks)


def show_result(panel: NeutralMeshPanel, result: Any) -> None:
    report = result.report
    panel.show_registration(result.verts, result.faces, report.residual_mm, report.summary(), report.warnings,
                            HEAT_SCALE_MM)


def show_saved_report(panel: NeutralMeshPanel, mesh_path: str) -> bool:
    """Show the report saved beside a registered neutral; clear the heat map when there is none."""
    from engine.errors import MeshError
    from engine.io.mesh import load_mesh
    from engine.registration import load_report, report_path
    path = report_path(mesh_path)
    if not path.is_file():
        panel.clear_registration()
        return False
    try:
        report = load_report(path)
        verts, faces = load_mesh(mesh_path)
    except MeshError:
        panel.clear_registration()
        return False
    if len(report.residual_mm) != len(verts):
        panel.clear_registration()
        return False
    panel.show_registration(verts, faces, report.residual_mm, report.summary(), report.warnings, HEAT_SCALE_MM)
    return True


def start_registration(window: MainWindow, scan: str, out: str, units: str | None = None,
                       landmarks: dict | None = None):
    """Register off the GUI thread behind a progress dialog; on success drive the registered neutral.
    Without ``landmarks`` the ones picked on ``scan`` in the neutral panel are used, if any."""
    panel = window.neutral_panel
    if landmarks is None:
        landmarks = panel.landmarks_for(scan)
    panel.set_registering(True)

    def done(result: Any) -> str:
        if not window.load_neutral(str(out)):  # validates and drives it, showing the saved report
            show_result(panel, result)
        text = f"Registered {Path(scan).name}: {result.report.summary()}."
        if landmarks:
            text += f" Pose from {len(landmarks)} picked landmarks."
        if result.report.warnings:
            text += " " + " ".join(f"Warning: {w}" for w in result.report.warnings)
        window.status.show_notice(text)
        return text

    task, dialog = run_in_dialog(window, "Register scan", lambda ctx: register(ctx, scan, out, units, landmarks), done,
                                 cancelled_text="Registration cancelled; nothing was written.")
    for signal in (task.finished_with, task.failed, task.cancelled):
        signal.connect(lambda *_: panel.set_registering(False))
    window.studio_actions.jobs.append((task, dialog))
    return task, dialog
