"""The Output panel: send the face's ARKit weights to VRChat, Babble-style OSC tools and Live Link.

A view over plain data: it edits a settings dict (the shape of engine.output's OutputConfig.to_dict)
and shows what it is given (52 weights as bar meters, packet rates, the last error). It sends
nothing itself; the app wires it to the output thread, so the panel can never stall the frame loop.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGridLayout, QGroupBox,
                               QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)

PROTOCOLS = (("vrchat", "VRChat OSC (VRCFT v2)", 9000), ("babble", "Babble OSC (ARKit)", 8888),
             ("livelink", "Live Link Face", 11111))
BAR_BRUSH = (80, 170, 255)
RAW_PEN = (255, 160, 60)


class OutputPanel(QWidget):
    """Protocols (enable, host, port), rate, smoothing, calibration, profiles, meters and status."""

    config_changed = Signal(dict)
    set_neutral_requested = Signal()
    reset_calibration_requested = Signal()
    profile_selected = Signal(str)
    profile_saved = Signal(str)
    profile_deleted = Signal(str)

    def __init__(self, shape_names: Sequence[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.shape_names = list(shape_names)
        self._extra: dict[str, Any] = {}  # settings the panel does not edit (gain, offset ...), kept as given
        layout = QVBoxLayout(self)
        layout.addWidget(self._build_profiles())
        layout.addWidget(self._build_protocols())
        layout.addWidget(self._build_processing())
        layout.addWidget(self._build_meters(), 1)
        self.stats_label = QLabel("not sending")
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #e06060")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.stats_label)
        layout.addWidget(self.error_label)

    # ----- construction
    def _build_profiles(self) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Profile"))
        self.profile_combo = QComboBox()
        self.profile_combo.setEditable(True)
        self.profile_combo.setToolTip("Pick a saved output profile, or type a new name and press Save")
        self.profile_combo.activated.connect(lambda _: self.profile_selected.emit(self.profile_combo.currentText()))
        self.save_button = QPushButton("Save")
        self.save_button.clicked.connect(lambda: self.profile_saved.emit(self.profile_combo.currentText().strip()))
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(lambda: self.profile_deleted.emit(self.profile_combo.currentText()))
        row.addWidget(self.profile_combo, 1)
        row.addWidget(self.save_button)
        row.addWidget(self.delete_button)
        return box

    def _build_protocols(self) -> QWidget:
        box = QGroupBox("Send to")
        grid = QGridLayout(box)
        self.enabled: dict[str, QCheckBox] = {}
        self.hosts: dict[str, QLineEdit] = {}
        self.ports: dict[str, QSpinBox] = {}
        self.protocol_status: dict[str, QLabel] = {}
        for r, (key, title, port) in enumerate(PROTOCOLS):
            check = QCheckBox(title)
            host = QLineEdit("127.0.0.1")
            host.setPlaceholderText("host")
            spin = QSpinBox()
            spin.setRange(1, 65535)
            spin.setValue(port)
            status = QLabel("")
            check.toggled.connect(self._emit)
            host.editingFinished.connect(self._emit)
            spin.editingFinished.connect(self._emit)
            grid.addWidget(check, r, 0)
            grid.addWidget(host, r, 1)
            grid.addWidget(spin, r, 2)
            grid.addWidget(status, r, 3)
            self.enabled[key], self.hosts[key], self.ports[key], self.protocol_status[key] = check, host, spin, status
        return box

    def _build_processing(self) -> QWidget:
        box = QGroupBox("Face, rate, smoothing, calibration")
        form = QFormLayout(box)
        self.face_combo = QComboBox()
        self.face_combo.addItem("Driven subject", "")
        self.face_combo.activated.connect(self._emit)
        form.addRow("Face", self.face_combo)
        self.rate_spin = QDoubleSpinBox()
        self.rate_spin.setRange(0.0, 240.0)
        self.rate_spin.setDecimals(0)
        self.rate_spin.setSuffix(" Hz")
        self.rate_spin.setSpecialValueText("every frame")
        self.rate_spin.setValue(60.0)
        self.rate_spin.editingFinished.connect(self._emit)
        form.addRow("Rate limit", self.rate_spin)
        smooth = QWidget()
        row = QHBoxLayout(smooth)
        row.setContentsMargins(0, 0, 0, 0)
        self.smooth_check = QCheckBox("one-euro")
        self.smooth_check.setChecked(True)
        self.min_cutoff = _spin(0.05, 30.0, 3.0, " Hz", "Smoothing at rest: lower is smoother")
        self.beta = _spin(0.0, 10.0, 0.5, "", "Speed response: higher lags less in fast motion")
        self.smooth_check.toggled.connect(self._emit)
        for w in (self.min_cutoff, self.beta):
            w.editingFinished.connect(self._emit)
        row.addWidget(self.smooth_check)
        row.addWidget(QLabel("min cutoff"))
        row.addWidget(self.min_cutoff)
        row.addWidget(QLabel("beta"))
        row.addWidget(self.beta)
        form.addRow("Smoothing", smooth)
        calib = QWidget()
        row = QHBoxLayout(calib)
        row.setContentsMargins(0, 0, 0, 0)
        self.neutral_button = QPushButton("Set neutral")
        self.neutral_button.setToolTip("Relax your face, then press: the current weights become each shape's zero")
        self.neutral_button.clicked.connect(self.set_neutral_requested.emit)
        self.reset_button = QPushButton("Reset calibration")
        self.reset_button.clicked.connect(self.reset_calibration_requested.emit)
        row.addWidget(self.neutral_button)
        row.addWidget(self.reset_button)
        form.addRow("Calibration", calib)
        return box

    def _build_meters(self) -> QWidget:
        self.plot = pg.PlotWidget()
        self.plot.setBackground((24, 25, 28))
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setYRange(0.0, 1.0, padding=0.02)
        self.plot.setXRange(-0.5, len(self.shape_names) - 0.5, padding=0.0)
        self.plot.hideButtons()
        x = np.arange(len(self.shape_names))
        self.bars = pg.BarGraphItem(x=x, height=np.zeros(len(x)), width=0.8, brush=BAR_BRUSH)
        self.raw_marks = pg.ScatterPlotItem(x=x, y=np.zeros(len(x)), symbol="_", size=8, pen=pg.mkPen(RAW_PEN))
        self.plot.addItem(self.bars)
        self.plot.addItem(self.raw_marks)
        ticks = [(i, n) for i, n in enumerate(self.shape_names) if n in _TICKED]
        self.plot.getAxis("bottom").setTicks([ticks, []])
        self.plot.setMinimumHeight(140)
        self.plot.setToolTip("Bars: weights sent (calibrated, smoothed); orange marks: raw solved weights")
        return self.plot

    # ----- state in and out
    def config(self) -> dict:
        """The settings as edited, merged over the last set_config (gain/offset are kept)."""
        d = dict(self._extra)
        for key, _, _ in PROTOCOLS:
            d[key] = {"enabled": self.enabled[key].isChecked(), "host": self.hosts[key].text().strip(),
                      "port": int(self.ports[key].value())}
        d["rate_hz"] = float(self.rate_spin.value())
        d["smoothing"] = {**d.get("smoothing", {}), "enabled": self.smooth_check.isChecked(),
                          "min_cutoff": float(self.min_cutoff.value()), "beta": float(self.beta.value())}
        d["face"] = self.face_combo.currentData() or ""
        return d

    def set_config(self, d: dict) -> None:
        """Show settings without emitting config_changed."""
        self._extra = dict(d)
        blockers = [pg.QtCore.QSignalBlocker(w) for w in self._editors()]
        for key, _, port in PROTOCOLS:
            e = d.get(key, {})
            self.enabled[key].setChecked(bool(e.get("enabled", False)))
            self.hosts[key].setText(str(e.get("host", "127.0.0.1")))
            self.ports[key].setValue(int(e.get("port", port)))
        self.rate_spin.setValue(float(d.get("rate_hz", 60.0)))
        s = d.get("smoothing", {})
        self.smooth_check.setChecked(bool(s.get("enabled", True)))
        self.min_cutoff.setValue(float(s.get("min_cutoff", 3.0)))
        self.beta.setValue(float(s.get("beta", 0.5)))
        self._select_face(str(d.get("face", "")))
        del blockers

    def set_faces(self, targets: Sequence[str]) -> None:
        """The faces that can drive the output: the subject and each retarget target."""
        current = self.face_combo.currentData() or ""
        blocker = pg.QtCore.QSignalBlocker(self.face_combo)
        self.face_combo.clear()
        self.face_combo.addItem("Driven subject", "")
        for name in targets:
            self.face_combo.addItem(f"Target {name}", name)
        self._select_face(current)
        del blocker

    def set_profiles(self, names: Sequence[str], current: str) -> None:
        blocker = pg.QtCore.QSignalBlocker(self.profile_combo)
        self.profile_combo.clear()
        self.profile_combo.addItems(list(names))
        self.profile_combo.setCurrentText(current)
        del blocker

    def show_weights(self, sent: np.ndarray | None, raw: np.ndarray | None = None) -> None:
        n = len(self.shape_names)
        self.bars.setOpts(height=np.zeros(n) if sent is None else np.clip(np.asarray(sent, float), 0, 1))
        self.raw_marks.setData(x=np.arange(n), y=np.zeros(n) if raw is None else np.clip(np.asarray(raw, float), 0, 1))

    def show_stats(self, stats: dict) -> None:
        """Packets per second, per-protocol counts and the errors of the output thread."""
        errors = dict(stats.get("errors", {}))
        packets = stats.get("packets", {})
        for key, _, _ in PROTOCOLS:
            if key in errors:
                self.protocol_status[key].setText("error")
            elif self.enabled[key].isChecked():
                self.protocol_status[key].setText(f"{packets.get(key, 0)} sent")
            else:
                self.protocol_status[key].setText("")
        active = stats.get("active", [])
        text = (f"{stats.get('packets_per_s', 0.0):.0f} packets/s · output {stats.get('output_ms', 0.0):.2f} ms"
                f" · solve {stats.get('solve_ms', 0.0):.2f} ms per frame" if active else "not sending")
        if stats.get("calibrating"):
            text += " · hold still: taking the neutral"
        self.stats_label.setText(text)
        self.error_label.setText("\n".join(errors.values()))

    def show_error(self, message: str) -> None:
        self.error_label.setText(message)

    # ----- helpers
    def _editors(self) -> list[QWidget]:
        return [*self.enabled.values(), *self.hosts.values(), *self.ports.values(), self.rate_spin,
                self.smooth_check, self.min_cutoff, self.beta, self.face_combo]

    def _select_face(self, name: str) -> None:
        i = self.face_combo.findData(name)
        self.face_combo.setCurrentIndex(max(i, 0))

    def _emit(self, *_: Any) -> None:
        self.config_changed.emit(self.config())


_TICKED = {"eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "mouthRollLower", "browDownLeft",
           "cheekPuff", "tongueOut"}


def _spin(lo: float, hi: float, value: float, suffix: str, tip: str) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setDecimals(2)
    s.setSingleStep(0.1)
    s.setValue(value)
    s.setSuffix(suffix)
    s.setToolTip(tip)
    return s
