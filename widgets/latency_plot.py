"""Rolling plot of per-frame timing: inference ms and render ms (top), fps (bottom).

Milliseconds and frames per second do not share an axis, so they get two stacked plots
with linked x. Samples go into fixed-size ring buffers: memory and drawing cost stay
constant however long a live session runs.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QVBoxLayout, QWidget

SERIES = ("inference", "render", "fps")
COLORS = {"inference": (80, 170, 255), "render": (255, 160, 60), "fps": (120, 220, 120)}


class LatencyPlot(QWidget):
    """Inference / render time and fps over the last ``window`` frames."""

    def __init__(self, parent: QWidget | None = None, window: int = 300) -> None:
        super().__init__(parent)
        self._window = int(window)
        self._buffers = {name: np.full(self._window, np.nan) for name in SERIES}
        self._count = 0
        self._layout = pg.GraphicsLayoutWidget()
        self._layout.setBackground((24, 25, 28))
        self._ms_plot = self._layout.addPlot(row=0, col=0)
        self._ms_plot.setLabel("left", "ms")
        self._ms_plot.addLegend(offset=(-10, 5), brush=(24, 25, 28, 200))
        self._fps_plot = self._layout.addPlot(row=1, col=0)
        self._fps_plot.setLabel("left", "fps")
        self._fps_plot.setLabel("bottom", "frames ago")
        self._fps_plot.setXLink(self._ms_plot)
        for plot in (self._ms_plot, self._fps_plot):
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.setMenuEnabled(False)
            plot.setMouseEnabled(x=False, y=False)
        self._curves = {
            "inference": self._ms_plot.plot(name="inference", pen=pg.mkPen(COLORS["inference"])),
            "render": self._ms_plot.plot(name="render", pen=pg.mkPen(COLORS["render"])),
            "fps": self._fps_plot.plot(name="fps", pen=pg.mkPen(COLORS["fps"])),
        }
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._layout)
        self.setMinimumSize(240, 160)

    def add_sample(self, infer_ms: float, render_ms: float, fps: float, redraw: bool = True) -> None:
        """Record one frame's timings; the oldest sample drops out after ``window``.

        ``redraw=False`` only stores the sample (a caller at 30 fps may redraw a few times a
        second instead: replotting costs more than a frame on a software-GL machine)."""
        slot = self._count % self._window
        for name, value in zip(SERIES, (infer_ms, render_ms, fps)):
            self._buffers[name][slot] = value
        self._count += 1
        if redraw:
            self._redraw()

    def redraw(self) -> None:
        """Replot the stored samples."""
        self._redraw()

    def clear(self) -> None:
        """Forget all samples (e.g. when the source changes)."""
        for buffer in self._buffers.values():
            buffer[:] = np.nan
        self._count = 0
        self._redraw()

    def series(self, name: str) -> np.ndarray:
        """Samples of 'inference', 'render' or 'fps', oldest first."""
        n = min(self._count, self._window)
        start = self._count % self._window if self._count > self._window else 0
        return np.roll(self._buffers[name], -start)[:n]

    def _redraw(self) -> None:
        for name in SERIES:
            y = self.series(name)
            x = np.arange(-len(y) + 1, 1)
            self._curves[name].setData(x, y, connect="finite")
