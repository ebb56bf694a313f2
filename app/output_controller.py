"""Wires the Output panel to the output thread and keeps output profiles in QSettings.

Each frame the GUI takes from the session, the driven mesh of the chosen face (the subject or a
retarget target) and its neutral are handed to engine.output's OutputStreamer, which returns at
once, with the frame's code e when the bundle carries it (the checkpoint's ARKit head reads e; without
it the streamer fits the mesh); the weights and the sockets run on the streamer's own thread. A timer (10 Hz) draws its latest
weights and statistics into the panel, so a fast stream costs the GUI nothing per packet. Profiles
(name -> OutputConfig as JSON, calibration included) live under ``output/`` in the studio's INI file.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from PySide6.QtCore import QObject, QSettings, QTimer
from PySide6.QtWidgets import QWidget

from app.logs import LOG
from engine.output.arkit import ARKIT_NAMES
from engine.output.endpoint import OutputError
from engine.output.stage import OutputConfig
from engine.output.streamer import OutputStreamer
from engine.output.weights import WeightSource
from widgets.output_panel import OutputPanel

DEFAULT_PROFILE = "default"
REFRESH_MS = 100
NEUTRAL_FRAMES = 15


class OutputProfiles:
    """name -> OutputConfig, stored as JSON strings in QSettings (group ``output``)."""

    def __init__(self, qsettings: QSettings) -> None:
        self.q = qsettings

    def names(self) -> list[str]:
        self.q.beginGroup("output/profiles")
        try:
            names = sorted(self.q.childKeys())
        finally:
            self.q.endGroup()
        return names or [DEFAULT_PROFILE]

    def current(self) -> str:
        return str(self.q.value("output/current", DEFAULT_PROFILE) or DEFAULT_PROFILE)

    def load(self, name: str) -> OutputConfig:
        """The saved profile (defaults when missing or unreadable: a damaged entry never stops the app)."""
        raw = self.q.value(f"output/profiles/{name}")
        if not raw:
            return OutputConfig()
        try:
            return OutputConfig.from_dict(json.loads(str(raw)))
        except (ValueError, TypeError, AttributeError) as err:
            LOG.warning("output profile %r is unreadable (%s); using defaults", name, err)
            return OutputConfig()

    def save(self, name: str, config: OutputConfig) -> None:
        self.q.setValue(f"output/profiles/{name}", json.dumps(config.to_dict()))
        self.q.setValue("output/current", name)
        self.q.sync()

    def delete(self, name: str) -> None:
        self.q.remove(f"output/profiles/{name}")
        self.q.sync()

    def set_current(self, name: str) -> None:
        self.q.setValue("output/current", name)


class OutputController(QObject):
    """Session frames -> OutputStreamer; panel edits -> settings; streamer stats -> panel."""

    def __init__(self, session: Any, panel: OutputPanel, qsettings: QSettings,
                 shown: Callable[[QWidget], bool] = QWidget.isVisible) -> None:
        super().__init__()
        self.session, self.panel = session, panel
        self._shown = shown  # in the studio: MainWindow.on_screen (a dock behind a tab is not shown)
        self.profiles = OutputProfiles(qsettings)
        self.profile = self.profiles.current()
        self.config = self.profiles.load(self.profile)
        self.streamer = OutputStreamer(self.config)
        self._subject_neutral: Any = None
        self._checkpoint: Any = None
        self.submitted = 0
        panel.set_profiles(self.profiles.names(), self.profile)
        panel.set_config(self.config.to_dict())
        panel.config_changed.connect(self.apply)
        panel.set_neutral_requested.connect(lambda: self.streamer.set_neutral(NEUTRAL_FRAMES))
        panel.reset_calibration_requested.connect(self.streamer.reset_calibration)
        panel.profile_selected.connect(self.select_profile)
        panel.profile_saved.connect(self.save_profile)
        panel.profile_deleted.connect(self.delete_profile)
        session.frame_ready.connect(self.on_frame)
        session.subject_changed.connect(self._on_subject)
        session.targets_changed.connect(panel.set_faces)
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    # ----- settings
    def apply(self, d: dict) -> None:
        """New settings from the panel; a bad value is a message in the panel, never an exception."""
        try:
            config = OutputConfig.from_dict({**self.streamer.config.to_dict(), **d})
        except (ValueError, TypeError) as err:
            self.panel.show_error(f"output settings not applied: {err}")
            return
        try:
            config.check()
        except OutputError as err:
            self.panel.show_error(str(err))  # the stage also keeps it per protocol; the others still run
        self.config = config
        self.streamer.configure(config)

    def select_profile(self, name: str) -> None:
        if name not in self.profiles.names():
            return  # a new name typed in: it becomes a profile on Save
        self.profile, self.config = name, self.profiles.load(name)
        self.profiles.set_current(name)
        self.panel.set_config(self.config.to_dict())
        self.streamer.configure(self.config)

    def save_profile(self, name: str) -> None:
        if not name:
            self.panel.show_error("type a profile name first")
            return
        self.config = self.streamer.config  # the calibration as it stands
        self.profiles.save(name, self.config)
        self.profile = name
        self.panel.set_profiles(self.profiles.names(), name)

    def delete_profile(self, name: str) -> None:
        self.profiles.delete(name)
        self.panel.set_profiles(self.profiles.names(), self.profiles.names()[0])

    # ----- frames
    def _on_subject(self, info: dict) -> None:
        self._subject_neutral = info.get("neutral")

    def on_frame(self, bundle: Any) -> None:
        """Hand the chosen face's mesh to the output thread (returns at once)."""
        if not getattr(bundle, "fresh", False) or bundle.mesh is None:
            return
        if not any(self.config.endpoint(p).enabled for p in ("vrchat", "babble", "livelink")) \
                and not self.panel_shown():
            return
        face = self.config.face
        if face and face in bundle.targets:
            mesh, neutral = bundle.targets[face][0], self._target_neutral(face)
        else:
            mesh, neutral = bundle.mesh, self._subject_neutral
        if neutral is None or getattr(neutral, "shape", None) != mesh.shape:
            return
        self._follow_model()
        self.streamer.submit(mesh, neutral, embedding=getattr(bundle, "embedding", None))
        self.submitted += 1

    def _follow_model(self) -> None:
        """Give the streamer the ARKit head of the model in use, once per model (or the fit, and why)."""
        engine = getattr(getattr(self.session, "worker", None), "engine", None)
        checkpoint = getattr(engine, "checkpoint", None)
        if checkpoint is None or checkpoint is self._checkpoint:
            return
        self._checkpoint = checkpoint
        source = WeightSource.for_checkpoint(checkpoint)
        LOG.info(source.describe())
        self.streamer.set_weights(source)

    def _target_neutral(self, name: str) -> Any:
        engine = getattr(getattr(self.session, "worker", None), "engine", None)
        target = None if engine is None else engine.targets.get(name)
        return None if target is None else target.neutral

    def panel_shown(self) -> bool:
        """The panel is on screen. A dock behind another tab still says isVisible() (Qt only covers
        it), which made the studio fit weights for hidden meters with every output off: ~10-20 ms
        of CPU a frame on the output thread, taken from inference and drawing on 2 cores. ``shown``
        is the window's on-screen test (MainWindow.on_screen)."""
        return self._shown(self.panel)

    def refresh(self) -> None:
        raw, sent, stats = self.streamer.latest()
        if self.panel_shown():
            self.panel.show_weights(sent, raw)
        self.panel.show_stats(stats)

    def shutdown(self) -> None:
        self.timer.stop()
        self.streamer.close()


SHAPE_NAMES = ARKIT_NAMES
