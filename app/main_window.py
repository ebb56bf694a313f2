"""The main window: widgets from ``widgets/`` around a Session, with menus, docks and settings.

Centre: the three headset feeds above the 3D viewer (driven avatar, ground truth beside it) and
the playback bar. Docks: source, neutral mesh, retargeting, error plots + summary table, latency.
The window only wires: widget signals become session requests, session signals update widgets
(through the FramePresenter for per-frame data). Errors appear in the status bar or a dialog.
Decisions about the data (is this neutral mesh drivable, whose is it) are the session's; the long
jobs of the File and Tools menus are ``studio_actions`` (app/actions.py), which knows the window
only through the small interface it declares there.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QImage, QKeySequence
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QMainWindow, QMessageBox, QSplitter, QVBoxLayout,
                               QWidget)

from app import paths, registration
from app.actions import StudioActions
from app.logs import report
from app.output_controller import SHAPE_NAMES, OutputController
from app.presenter import FramePresenter
from app.session import Session
from app.settings import StudioSettings
from app.status_bar import StudioStatusBar
from widgets.error_plots import ErrorPlots
from widgets.hmc_views import HMCViews
from widgets.latency_plot import LatencyPlot
from widgets.mesh_viewer import MeshViewer
from widgets.neutral_panel import MESH_FILTER, NeutralMeshPanel
from widgets.output_panel import OutputPanel
from widgets.playback_bar import PlaybackBar
from widgets.retarget_grid import RetargetGrid
from widgets.source_panel import SourcePanel
from widgets.summary_table import SummaryTable

MODE_TITLES = (("shaded", "&Shaded"), ("textured", "&Textured"), ("wireframe", "&Wireframe"),
               ("error", "&Error map"))
ERROR_SCALES_MM = (1.0, 2.0, 5.0, 10.0, 20.0)
# (copies, mirror) -> menu entry; engine/runtime/averaging.py says what each costs and buys
AVERAGING_CHOICES = (((1, False), "Read each frame once (live speed)"),
                     ((1, True), "Read each frame and its mirror image (2 reads, the live default)"),
                     ((4, False), "Average 4 reads of each frame"),
                     ((16, True), "Average 16 reads and their mirror images (what mia eval measures)"))
SYNTHETIC_SUBJECTS = tuple(f"id{i:03d}" for i in range(12))


class MainWindow(QMainWindow):
    """MIA Studio's window; see the module docstring."""

    error_shown = Signal(str)  # thread-safe way to put an error in the status bar

    def __init__(self, session: Session | None = None, settings: StudioSettings | None = None,
                 threads: int | None = None) -> None:
        super().__init__()
        self.setWindowTitle("MIA Studio")
        self.threads = threads or paths.default_threads()
        self.settings = settings or StudioSettings()
        self.session = session or Session(threads=self.threads, backend=paths.default_backend(),
                                          averaging=paths.default_averaging(), mirror=paths.default_mirror())
        self._standing_model = ""
        self._standing_source = ""
        self._dock_on_screen: dict[QDockWidget, bool] = {}  # see on_screen
        self._build_views()
        self._build_docks()
        self.status = StudioStatusBar()
        self.setStatusBar(self.status)
        self.presenter = FramePresenter(self.hmc, self.viewer, self.error_plots, self.summary, self.retarget,
                                        self.latency, self.playback, shown=self.on_screen)
        self.studio_actions = StudioActions(self)  # not ``actions``: that is QWidget.actions()
        self._build_menus()
        self._load_topology()
        self._connect()
        self._default_state = self.saveState()
        self._restore_settings()

    # ----- construction
    def _build_views(self) -> None:
        self.hmc = HMCViews()
        self.viewer = MeshViewer()
        self.playback = PlaybackBar()
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.hmc)
        splitter.addWidget(self.viewer)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([200, 600])
        self.centre_splitter = splitter
        centre = QWidget()
        layout = QVBoxLayout(centre)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.playback)
        self.setCentralWidget(centre)

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower().replace(' ', '_')}")
        dock.setWidget(widget)
        self._dock_on_screen[dock] = True
        dock.visibilityChanged.connect(lambda shown, d=dock: self._dock_on_screen.__setitem__(d, shown))
        self.addDockWidget(area, dock)
        return dock

    def on_screen(self, widget: QWidget) -> bool:
        """The widget can be seen: shown, and not in a dock tabbed behind another one. Qt keeps a
        dock behind a tab isVisible() (it only moves it off the window) and says so through the
        dock's visibilityChanged, which is tracked here from the dock's creation on."""
        if not widget.isVisible():
            return False
        node: QWidget | None = widget
        while node is not None:
            if isinstance(node, QDockWidget) and not self._dock_on_screen.get(node, True):
                return False
            node = node.parentWidget()
        return True

    def _build_docks(self) -> None:
        self.source_panel = SourcePanel()
        self.neutral_panel = NeutralMeshPanel()
        self.retarget = RetargetGrid()
        if not paths.coarse_thumbnails():
            self.retarget.coarse_rounds = 0
        self.error_plots = ErrorPlots()
        self.summary = SummaryTable()
        self.latency = LatencyPlot()
        errors = QSplitter(Qt.Orientation.Horizontal)
        errors.addWidget(self.error_plots)
        errors.addWidget(self.summary)
        errors.setSizes([700, 420])
        left, right, bottom = (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea,
                               Qt.DockWidgetArea.BottomDockWidgetArea)
        self.docks = {
            "source": self._dock("Source", self.source_panel, left),
            "neutral": self._dock("Neutral mesh", self.neutral_panel, left),
            "retarget": self._dock("Retargeting", self.retarget, right),
            "errors": self._dock("Errors", errors, bottom),
            "latency": self._dock("Latency", self.latency, bottom),
        }
        self.tabifyDockWidget(self.docks["errors"], self.docks["latency"])
        self.docks["errors"].raise_()
        self.output_panel = OutputPanel(SHAPE_NAMES)
        self.docks["output"] = self._dock("Output", self.output_panel, right)
        self.tabifyDockWidget(self.docks["retarget"], self.docks["output"])
        self.docks["retarget"].raise_()
        self.resize(1500, 950)
        self.resizeDocks([self.docks["errors"]], [230], Qt.Orientation.Vertical)
        self.resizeDocks([self.docks["source"], self.docks["retarget"]], [290, 460], Qt.Orientation.Horizontal)

    def _action(self, menu, text: str, slot, shortcut: str | None = None, checkable: bool = False) -> QAction:
        action = QAction(text, self, checkable=checkable)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._action(file, "Open &capture…", self._ask_capture, "Ctrl+O")
        self.recent_menu = file.addMenu("Recent captures")
        self._action(file, "Open &model…", self._ask_model, "Ctrl+M")
        self._action(file, "Load &neutral mesh…", self._ask_neutral, "Ctrl+N")
        file.addSeparator()
        self._action(file, "&Export driven sequence…", lambda: self.studio_actions.export_sequence(), "Ctrl+E")
        self._action(file, "Save &screenshot…", lambda: self.studio_actions.save_screenshot(), "Ctrl+Shift+S")
        file.addSeparator()
        self._action(file, "&Quit", self.close, "Ctrl+Q")

        play = bar.addMenu("&Playback")
        self._action(play, "Play / pause", self._toggle_play, "Space")
        self._action(play, "Step back", lambda: self.session.step(-1), "Left")
        self._action(play, "Step forward", lambda: self.session.step(+1), "Right")
        self._action(play, "First frame", lambda: self.session.seek(0), "Home")

        tools = bar.addMenu("&Tools")
        self._action(tools, "&Evaluate capture", lambda: self.studio_actions.evaluate_capture())
        self._action(tools, "&Adapt to a new subject…", lambda: self.studio_actions.adapt_subject())
        self._action(tools, "Export &ONNX…", lambda: self.studio_actions.export_onnx())

        view = bar.addMenu("&View")
        self.mode_group = QActionGroup(self)
        self.mode_actions: dict[str, QAction] = {}
        for k, (mode, title) in enumerate(MODE_TITLES):
            action = self._action(view, title, lambda _c=False, m=mode: self.set_view_mode(m), f"Ctrl+{k + 1}", True)
            self.mode_group.addAction(action)
            self.mode_actions[mode] = action
        scales = view.addMenu("Error scale")
        self.scale_group = QActionGroup(self)
        self.scale_actions: dict[float, QAction] = {}
        for mm in ERROR_SCALES_MM:
            action = self._action(scales, f"0 – {mm:g} mm", lambda _c=False, v=mm: self.set_error_scale(v),
                                  checkable=True)
            self.scale_group.addAction(action)
            self.scale_actions[mm] = action
        reads = view.addMenu("Test-time &averaging")
        self.averaging_group = QActionGroup(self)
        self.averaging_actions: dict[tuple[int, bool], QAction] = {}
        for (copies, mirror), title in AVERAGING_CHOICES:
            action = self._action(reads, title, lambda _c=False, n=copies, m=mirror: self.session.set_averaging(n, m),
                                  checkable=True)
            self.averaging_group.addAction(action)
            self.averaging_actions[copies, mirror] = action
        self.gt_action = self._action(view, "Show &ground truth", self._toggle_gt, checkable=True)
        self.gt_action.setChecked(True)
        view.addSeparator()
        self.roi_action = self._action(view, "Edit crop &ROIs", self.hmc.show_roi, checkable=True)
        self._action(view, "Clear crop ROIs", self._clear_rois)
        self._action(view, "Reset &camera", self.viewer.reset_camera, "Ctrl+0")
        self._action(view, "Reset &layout", self.reset_layout)
        view.addSeparator()
        for dock in self.docks.values():
            view.addAction(dock.toggleViewAction())

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "Where is the log file?", self._show_log_path)
        self._action(help_menu, "About MIA Studio", self._about)

    @property
    def topology(self) -> Any:
        """The face model's topology (None when resources/ict_facekit.npz could not be read)."""
        return self.session.topology

    def _load_topology(self) -> None:
        try:
            self.session.load_topology()
        except Exception as err:
            self.status.show_error(report(err, "cannot load the face model (resources/ict_facekit.npz)"))
            return
        self.viewer.set_topology(self.topology.faces, self.topology.uvs)
        self.retarget.set_topology(self.topology.faces, self.topology.uvs)

    def _connect(self) -> None:
        s = self.session
        s.frame_ready.connect(self._on_frame)
        s.error.connect(self.status.show_error)
        s.notice.connect(self.status.show_notice)
        s.status.connect(self._on_status)
        s.source_changed.connect(self._on_source_changed)
        s.model_changed.connect(self._on_model_changed)
        s.subject_changed.connect(self._on_subject_changed)
        s.subjects_changed.connect(self._on_subjects_changed)
        s.targets_changed.connect(self._on_targets_changed)
        s.playing_changed.connect(self.playback.set_playing)
        s.worker.source_failed.connect(lambda m: self.source_panel.set_status(m, ok=False))
        s.worker.model_failed.connect(self._on_model_failed)
        self.error_shown.connect(self.status.show_error)
        self.source_panel.open_requested.connect(self.open_source)
        self.source_panel.headset_selected.connect(self._on_headset_selected)
        self.neutral_panel.load_requested.connect(self.load_neutral)
        self.neutral_panel.register_requested.connect(self.register_scan)
        self.playback.play_toggled.connect(s.set_playing)
        self.playback.step.connect(s.step)
        self.playback.seek.connect(s.seek)
        self.playback.speed_changed.connect(s.set_speed)
        self.playback.loop_changed.connect(s.set_loop)
        self.error_plots.seek_requested.connect(self._seek_from_plot)
        self.retarget.targets_changed.connect(self._on_targets_ticked)
        self.retarget.textured_changed.connect(self._on_textured_ticked)
        self.hmc.roi_changed.connect(s.set_roi)
        for name in ("retarget", "errors", "latency"):  # hidden views are skipped; catch up when shown
            self.docks[name].visibilityChanged.connect(self._on_dock_shown)
        # off screen, the grid's targets need no textures or normals from the worker either
        self.docks["retarget"].visibilityChanged.connect(lambda _shown: s.set_targets_shown(self.on_screen(self.retarget)))
        self.playback.loop_check.setChecked(True)
        self.outputs = OutputController(s, self.output_panel, self.settings.qsettings, shown=self.on_screen)

    # ----- settings
    def _restore_settings(self) -> None:
        st = self.settings
        geometry, state = st.window_geometry(), st.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        self.set_view_mode(st.view_mode())
        self.set_error_scale(st.error_scale_mm())
        self._refresh_recent(st.recent_captures())
        self.source_panel.set_headsets(self.session.profiles.names())
        self.retarget.set_textured(st.textured_targets())
        self.session.textured_targets = st.textured_targets()
        self.session.targets = st.targets()

    def save_settings(self) -> None:
        st = self.settings
        st.save_window(self.saveGeometry(), self.saveState())
        st.set_view_mode(self.viewer.mode)
        st.set_error_scale_mm(self.presenter.error_scale_mm)
        st.set_targets(self.session.targets)
        st.set_textured_targets(self.session.textured_targets)
        if self.session.model_path:
            st.set_last_model(self.session.model_path)
        st.sync()

    def reset_layout(self) -> None:
        self.restoreState(self._default_state)
        for dock in self.docks.values():
            dock.show()

    # ----- start-up
    def start(self, capture: str | None = None, model: str | None = None) -> None:
        """Open the model and source to begin with; say plainly what is missing."""
        model = model or self.startup_model()
        if model:
            self.open_model(model)
        else:
            self._no_model(f"{paths.DEFAULT_MODEL.name} is not in resources/ yet")
        spec = self._startup_source(capture)
        if spec is None:
            self._standing_source = ("No demo capture (resources/demo_capture): showing the synthetic live "
                                     "source.")
            spec = {"kind": "synthetic", "subject": "id000", "seed": 0}
        self._update_standing()
        self.source_panel.set_spec(spec)
        self.open_source(spec)

    def _no_model(self, why: str) -> None:
        self._standing_model = f"No model loaded ({why}): File › Open model… to drive an avatar."
        self.viewer.set_titles("Driven (no model loaded)", "Ground truth")
        self._update_standing()

    def _update_standing(self) -> None:
        self.status.set_standing(" ".join(t for t in (self._standing_model, self._standing_source) if t))

    def startup_model(self) -> str | None:
        last = self.settings.last_model()
        for candidate in (last, str(paths.DEFAULT_MODEL)):
            if candidate and Path(candidate).is_file():
                return candidate
        return None

    def _startup_source(self, capture: str | None) -> dict | None:
        if capture:
            return {"kind": "capture", "path": str(capture)}
        last = self.settings.last_source()
        if last and last.get("kind") == "capture" and Path(str(last.get("path"))).is_dir():
            return last
        if (paths.DEMO_CAPTURE / "capture.json").is_file():
            return {"kind": "capture", "path": str(paths.DEMO_CAPTURE)}
        return None

    # ----- opening things
    def open_source(self, spec: dict) -> None:
        self.session.open_source(spec)

    def open_capture(self, path: str) -> None:
        spec = {"kind": "capture", "path": str(path)}
        self.source_panel.set_spec(spec)
        self.open_source(spec)

    def open_model(self, path: str) -> None:
        self.status.set_model(f"loading {Path(path).name}…", "")
        self.session.open_model(path)

    def load_neutral(self, path: str) -> bool:
        """Load a neutral mesh (the session checks it and drives it when it fits); show the answer."""
        check = self.session.load_neutral(path)
        if check.details is not None:
            self.neutral_panel.show_info(check.details)
        else:
            self.neutral_panel.show_error(check.error)
        if check.status_error:
            self.status.show_error(check.status_error)
        if check.drivable:
            registration.show_saved_report(self.neutral_panel, check.path)
        return check.drivable

    def register_scan(self, scan: str, out: str, units: str | None = None):
        """Register a face scan to the model topology off the GUI thread, then drive it (app/registration.py)."""
        return registration.start_registration(self, scan, out, units)

    # ----- session reports
    def _on_frame(self, bundle: Any) -> None:
        self.presenter.show(bundle, self.session.errors, self.session.display_fps)

    def _on_dock_shown(self, visible: bool) -> None:
        if visible:
            self.presenter.show_hidden(self.session.errors)

    def _on_status(self, status: dict) -> None:
        self.status.set_numbers(status)
        self.status.set_render_ms(self.presenter.render_ms)  # here, not per draw: a label change
        # repaints (composites) the whole GL window again

    def _on_source_changed(self, info: dict) -> None:
        self.presenter.reset(info)
        kind, name = info.get("kind"), info.get("name", "")
        self.source_panel.set_status(f"{name}: " + (f"{info['frame_count']} frames at {info['fps']:g} fps"
                                                    if not info.get("live") else "live"))
        self.setWindowTitle(f"MIA Studio — {name}")
        spec = info.get("spec", {})
        if kind == "capture":
            self._refresh_recent(self.settings.add_recent_capture(str(spec.get("path"))))
        if kind == "cameras":
            self.source_panel.set_headsets(self.session.profiles.names())
        self.settings.set_last_source({k: v for k, v in spec.items() if k != "options"})
        rois = self.session.rois
        for cam in range(3):
            self.hmc.set_roi(cam, rois[cam])
        self.status.show_notice(f"Opened {name}.")
        if kind == "capture":
            self._standing_source = ""
            self._update_standing()

    def _on_model_changed(self, info: dict) -> None:
        self._standing_model = ""
        self._update_standing()
        device = f"{info.get('device', '')} · {info.get('backend', '')}"
        copies, mirror = int(info.get("averaging", 1)), bool(info.get("mirror", False))
        if copies > 1:
            device += f" · {copies}-copy averaging"
        if mirror:
            device += " · mirror reads"
        if (copies, mirror) in self.averaging_actions:
            self.averaging_actions[copies, mirror].setChecked(True)
        self.status.set_model(str(info.get("model", "")), device)
        self.settings.set_last_model(str(info.get("path", "")))
        self.status.show_notice(f"Model {info.get('model')} loaded ({len(info.get('identities', []))} identities "
                                f"with an avatar, {len(info.get('subjects', []))} subjects).")

    def _on_model_failed(self, message: str) -> None:
        info = self.session.model_info
        device = f"{info.get('device', '')} · {info.get('backend', '')}" if info else ""
        self.status.set_model(str(info.get("model", "")), device)
        if not info:
            self._no_model("the last one failed to load")

    def _on_subject_changed(self, info: dict) -> None:
        self.viewer.set_titles(f"Driven: {info.get('name')}", "Ground truth")
        if not info.get("override"):
            neutral = info.get("neutral")
            self.neutral_panel.show_info({
                "path": info.get("origin", ""), "vertex_count": None if neutral is None else len(neutral),
                "units": "mm", "bbox_mm": None if neutral is None else np.ptp(neutral, axis=0),
                "matches_topology": True, "mode": info.get("mode", ""),
                "message": info.get("note") or f"{info.get('name')}: neutral mesh from {info.get('origin')}."})

    def _on_subjects_changed(self, names: list) -> None:
        self.retarget.set_subjects(names, checked=self.session.targets)
        model_ids = [n for n in names if n.startswith("id")]
        self.source_panel.set_subjects(list(dict.fromkeys([*model_ids, *SYNTHETIC_SUBJECTS])))

    def _on_targets_changed(self, driven: list) -> None:
        if driven:
            self.status.show_notice(f"Retargeting to {', '.join(driven)}.")

    def _on_targets_ticked(self, names: list) -> None:
        self.session.set_targets(names)
        self.settings.set_targets(names)

    def _on_textured_ticked(self, textured: bool) -> None:
        self.session.set_textured_targets(textured)

    def _on_headset_selected(self, name: str) -> None:
        spec = self.session.profiles.spec(name)
        if spec:
            self.source_panel.set_spec(spec)

    # ----- view
    def set_view_mode(self, mode: str) -> None:
        if mode not in self.mode_actions:
            mode = "textured"
        self.viewer.set_mode(mode)
        self.mode_actions[mode].setChecked(True)
        last = self.presenter.last
        if mode == "error" and last is not None:
            self.viewer.set_error(last.vertex_error, self.presenter.error_scale_mm)
            if last.vertex_error is None:
                self.status.show_notice("No ground truth for this source: the error map needs one "
                                        "(a capture with meshes.npy, or the synthetic source).")

    def set_error_scale(self, mm: float) -> None:
        mm = min(ERROR_SCALES_MM, key=lambda v: abs(v - mm))
        self.presenter.set_error_scale(mm)
        self.scale_actions[mm].setChecked(True)

    def _toggle_gt(self, shown: bool) -> None:
        self.presenter.show_ground_truth = shown
        if not shown:
            self.viewer.set_ground_truth(None)
        elif self.presenter.last is not None:
            last = self.presenter.last
            self.viewer.set_ground_truth(last.ground_truth, last.normals.get("ground_truth"))

    def _toggle_play(self) -> None:
        if not self.session.live:
            self.session.set_playing(not self.session.playing)

    def _seek_from_plot(self, frame: int) -> None:
        if not self.session.live:
            self.session.pause()
            self.session.seek(frame)

    def _clear_rois(self) -> None:
        self.session.clear_rois()
        for cam in range(3):
            self.hmc.set_roi(cam, None)
        self.roi_action.setChecked(False)
        self.hmc.show_roi(False)

    # ----- dialogs
    def _ask_capture(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open HMC capture folder",
                                                str(paths.DEMO_CAPTURE.parent))
        if path:
            self.open_capture(path)

    def _ask_model(self) -> None:
        start = self.session.model_path or str(paths.RESOURCES)
        path, _ = QFileDialog.getOpenFileName(self, "Open MIA model", start, "MIA checkpoints (*.pt);;All files (*)")
        if path:
            self.open_model(path)

    def _ask_neutral(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load neutral mesh", str(paths.SUBJECTS), MESH_FILTER)
        if path:
            self.load_neutral(path)

    def _refresh_recent(self, recent: list[str]) -> None:
        self.source_panel.set_recent(recent)
        self.recent_menu.clear()
        for path in recent:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _c=False, p=path: self.open_capture(p))
        self.recent_menu.setEnabled(bool(recent))

    def _show_log_path(self) -> None:
        QMessageBox.information(self, "Log file", f"Errors and their details are logged to\n{paths.log_file()}")

    def _about(self) -> None:
        QMessageBox.about(self, "About MIA Studio",
                          "MIA Studio drives a photo-realistic face avatar from the three IR cameras of a VR "
                          "headset (the multi-identity architecture of Jourabloo et al.).")

    # ----- screenshots
    def grab_window(self) -> np.ndarray:
        """(H, W, 3) uint8 picture of the whole window, GL views included."""
        image = self.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
        h, w, stride = image.height(), image.width(), image.bytesPerLine()
        data = np.frombuffer(image.constBits(), np.uint8, count=h * stride).reshape(h, stride)
        return data[:, : w * 3].reshape(h, w, 3).copy()

    def save_screenshot(self, path: str) -> bool:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return bool(self.grab().save(str(path)))

    # ----- painting
    def event(self, event: QEvent) -> bool:
        """Before Qt paints the window, the changed 3D views start drawing (offscreen canvases), so
        the GL rasteriser fills them while Qt paints the feeds, plots and panels; their own paint
        then only reads the pixels back. Once per paint, so a frame that is replaced before the
        window is painted costs no draw."""
        if event.type() == QEvent.Type.UpdateRequest:
            for view in (getattr(self, "viewer", None), getattr(self, "retarget", None)):  # None while built
                submit = getattr(getattr(view, "canvas_widget", None), "submit", None)  # offscreen canvases only
                if submit is not None and self.on_screen(view):  # not a grid in a dock behind a tab
                    submit()
        return super().event(event)

    # ----- shutdown
    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_settings()
        for job in self.studio_actions.jobs:  # stop long work first: a QThread must not outlive the app
            job[0].cancel()
        from app.workers import Task
        for task in list(Task._running):
            task.cancel()
            task.wait(15_000)
        self.outputs.shutdown()
        self.session.shutdown()
        super().closeEvent(event)

