"""Transport controls for recorded captures: play/pause, step, seek, speed, loop.

The bar only reports what the user asked for; the session owns the frame index and
calls ``set_frame`` back, which never re-emits ``seek`` (no feedback loops). Frame
numbers are 0-based, as in the error plots: the label reads "12 / 300" for frame 12 of
a 300-frame capture. Live sources cannot be paused or sought, so ``set_live(True)``
disables the controls.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QSlider, QStyle,
                               QToolButton, QWidget)

SPEEDS: tuple[float, ...] = (0.25, 0.5, 1.0, 1.5, 2.0, 4.0)


class PlaybackBar(QWidget):
    """Play/pause, step back/forward, seek slider, frame label, speed and loop."""

    play_toggled = Signal(bool)
    step = Signal(int)
    seek = Signal(int)
    speed_changed = Signal(float)
    loop_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        style = self.style()
        self.play_button = QToolButton(checkable=True, toolTip="Play / pause")
        self.play_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.back_button = QToolButton(toolTip="Step back one frame")
        self.back_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaSeekBackward))
        self.forward_button = QToolButton(toolTip="Step forward one frame")
        self.forward_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaSeekForward))
        self.slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=0)
        self.frame_label = QLabel("0 / 0", minimumWidth=90)
        self.frame_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.speed_combo = QComboBox(toolTip="Playback speed")
        for speed in SPEEDS:
            self.speed_combo.addItem(f"{speed:g}x", speed)
        self.speed_combo.setCurrentIndex(SPEEDS.index(1.0))
        self.loop_check = QCheckBox("Loop")
        self._frame_count = 0
        self._live = False

        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        for w in (self.back_button, self.play_button, self.forward_button):
            layout.addWidget(w)
        layout.addWidget(self.slider, stretch=1)
        for w in (self.frame_label, self.speed_combo, self.loop_check):
            layout.addWidget(w)

        self.play_button.toggled.connect(self._on_play_toggled)
        self.back_button.clicked.connect(lambda: self.step.emit(-1))
        self.forward_button.clicked.connect(lambda: self.step.emit(+1))
        self.slider.valueChanged.connect(self._on_slider)
        self.speed_combo.currentIndexChanged.connect(
            lambda i: self.speed_changed.emit(float(self.speed_combo.itemData(i))))
        self.loop_check.toggled.connect(self.loop_changed.emit)

    # -- state in (no signals emitted) --------------------------------------------------
    def set_frame_count(self, n: int) -> None:
        """Number of frames of the current capture; the slider spans 0..n-1."""
        self._frame_count = max(0, int(n))
        self.slider.blockSignals(True)
        self.slider.setMaximum(max(0, self._frame_count - 1))
        self.slider.blockSignals(False)
        self._update_label()

    def set_frame(self, i: int) -> None:
        """Show the current frame without emitting ``seek``."""
        self.slider.blockSignals(True)
        self.slider.setValue(int(i))
        self.slider.blockSignals(False)
        self._update_label()

    def set_playing(self, playing: bool) -> None:
        """Reflect the player's state without emitting ``play_toggled``."""
        self.play_button.blockSignals(True)
        self.play_button.setChecked(bool(playing))
        self.play_button.blockSignals(False)
        self._update_play_icon()

    def set_live(self, live: bool) -> None:
        """Live sources have no timeline: disable the controls and say so."""
        self._live = bool(live)
        for w in (self.play_button, self.back_button, self.forward_button, self.slider,
                  self.speed_combo, self.loop_check):
            w.setEnabled(not self._live)
        self._update_label()

    # -- queries --------------------------------------------------------------------------
    @property
    def frame(self) -> int:
        return self.slider.value()

    @property
    def playing(self) -> bool:
        return self.play_button.isChecked()

    @property
    def speed(self) -> float:
        return float(self.speed_combo.currentData())

    # -- internals --------------------------------------------------------------------------
    def _on_play_toggled(self, playing: bool) -> None:
        self._update_play_icon()
        self.play_toggled.emit(playing)

    def _on_slider(self, value: int) -> None:
        self._update_label()
        self.seek.emit(value)

    def _update_play_icon(self) -> None:
        icon = (QStyle.StandardPixmap.SP_MediaPause if self.play_button.isChecked()
                else QStyle.StandardPixmap.SP_MediaPlay)
        self.play_button.setIcon(self.style().standardIcon(icon))

    def _update_label(self) -> None:
        if self._live:
            self.frame_label.setText("live")
        else:
            self.frame_label.setText(f"{self.slider.value()} / {self._frame_count}")
