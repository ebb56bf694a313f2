"""Per-frame region error curves (eyes / mouth / face, mm) with a current-frame marker.

The plot is also a navigation aid: a click anywhere in the plot area asks to seek to
the frame under the cursor (``seek_requested``), so a spike in the error can be
inspected in the 3D viewer at once. Live streams grow the curves with ``append_point``.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

REGION_COLORS: dict[str, tuple[int, int, int]] = {
    "eyes": (80, 170, 255), "mouth": (255, 120, 80), "face": (120, 220, 120),
}
OTHER_COLORS = [(220, 200, 80), (200, 120, 230), (80, 220, 220), (230, 230, 230)]


class _GrowingSeries:
    """Append-friendly (x, y) storage that doubles its capacity, for live curves."""

    def __init__(self) -> None:
        self.x = np.empty(256, np.float64)
        self.y = np.empty(256, np.float64)
        self.n = 0

    def append(self, x: float, y: float) -> None:
        if self.n == len(self.x):
            self.x = np.concatenate([self.x, np.empty_like(self.x)])
            self.y = np.concatenate([self.y, np.empty_like(self.y)])
        self.x[self.n], self.y[self.n] = x, y
        self.n += 1


class ErrorPlots(QWidget):
    """Error-vs-frame curves with a legend, a current-frame line and click-to-seek."""

    seek_requested = Signal(int)

    def __init__(self, parent: QWidget | None = None, unit: str = "mm",
                 max_live_points: int = 100_000) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget(background=(24, 25, 28))
        self._item = self.plot.getPlotItem()
        self._item.setLabel("left", f"error ({unit})")
        self._item.setLabel("bottom", "frame")
        self._item.showGrid(x=True, y=True, alpha=0.2)
        self._item.setMenuEnabled(False)
        self._item.addLegend(offset=(-10, 10), brush=(24, 25, 28, 200))
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._live: dict[str, _GrowingSeries] = {}
        self._frame_count = 0
        self._max_live = max_live_points
        self._cursor = pg.InfiniteLine(pos=0, angle=90, movable=False,
                                       pen=pg.mkPen((255, 255, 255, 160), width=1))
        self._item.addItem(self._cursor, ignoreBounds=True)
        self.plot.scene().sigMouseClicked.connect(self._on_click)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)

    # -- data in ----------------------------------------------------------------------
    def set_curves(self, curves: Mapping[str, np.ndarray], x: np.ndarray | None = None) -> None:
        """Replace all curves: name -> (T,) per-frame error; NaN leaves a gap.

        ``x`` gives the frame number of each value (default 0..T-1). When the names are the
        ones already shown the curves are updated in place, so a session can refresh them
        several times a second without the legend being rebuilt.
        """
        if list(curves) != list(self._curves) or self._live:
            self.clear()
        self._frame_count = 0
        for name, values in curves.items():
            y = np.asarray(values, dtype=np.float64).ravel()
            frames = np.arange(len(y)) if x is None else np.asarray(x, dtype=np.float64).ravel()
            self._curve(name).setData(frames, y, connect="finite")
            if len(frames):
                self._frame_count = max(self._frame_count, int(frames.max()) + 1)
        self._item.enableAutoRange()

    def append_point(self, frame: int, values: Mapping[str, float]) -> None:
        """Add one frame's errors to live curves (name -> error)."""
        for name, value in values.items():
            series = self._live.setdefault(name, _GrowingSeries())
            series.append(frame, float(value))
            start = max(0, series.n - self._max_live)
            self._curve(name).setData(series.x[start:series.n], series.y[start:series.n])
        self._frame_count = max(self._frame_count, int(frame) + 1)

    def clear(self) -> None:
        """Remove every curve (the legend follows)."""
        for curve in self._curves.values():
            self._item.removeItem(curve)
        self._curves.clear()
        self._live.clear()
        self._frame_count = 0

    def set_current_frame(self, frame: int) -> None:
        """Move the vertical current-frame marker."""
        self._cursor.setValue(frame)

    # -- queries --------------------------------------------------------------------------
    @property
    def curve_names(self) -> list[str]:
        return list(self._curves)

    def curve_data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of one curve as currently plotted."""
        return self._curves[name].getData()

    @property
    def current_frame(self) -> int:
        return int(round(self._cursor.value()))

    def view_to_widget(self, frame: float, value: float) -> QPointF:
        """Where a data point lies in ``self.plot`` viewport pixels (used by tests)."""
        scene_pos = self._item.vb.mapViewToScene(QPointF(frame, value))
        return QPointF(self.plot.mapFromScene(scene_pos))

    # -- internals --------------------------------------------------------------------------
    def _curve(self, name: str) -> pg.PlotDataItem:
        if name not in self._curves:
            color = REGION_COLORS.get(name.lower(),
                                      OTHER_COLORS[len(self._curves) % len(OTHER_COLORS)])
            self._curves[name] = self._item.plot(name=name, pen=pg.mkPen(color, width=1.5),
                                                 connect="finite")
        return self._curves[name]

    def _on_click(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self._frame_count == 0:
            return
        vb = self._item.vb
        if not vb.sceneBoundingRect().contains(event.scenePos()):
            return
        x = vb.mapSceneToView(event.scenePos()).x()
        frame = int(np.clip(round(x), 0, self._frame_count - 1))
        self.seek_requested.emit(frame)
