"""The three headset-camera (HMC) images: left eye, right eye, mouth.

pyqtgraph ImageItems without levels show uint8 frames as they are (Format_Grayscale8, no
rescaling), so a 30-90 fps stream costs one copy per camera. Levels, even the identity (0, 255),
would send every frame through pyqtgraph's Indexed8 path, which builds a 256-entry colour table
in Python on each render (~0.15 ms a camera, 8x the pass-through; `benchmarks/studio_fps.py`). Each panel carries a state badge
("live", "no signal", ...) and an optional crop ROI the user can drag; ROI edits leave
as ``roi_changed(cam, (x, y, w, h))`` in image pixels (x = column, y = row).

The three cameras are three ViewBoxes in ONE pyqtgraph scene (equal column stretch keeps them
equally wide). A QGraphicsScene repaints its window as soon as it has processed its changes, so
with one scene per camera each frame repainted the studio window three times (three
UpdateRequests, three pushes to the X server); one scene repaints it once.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

CAMERA_NAMES: tuple[str, str, str] = ("Left eye", "Right eye", "Mouth")
OK_COLOR, BAD_COLOR = (90, 220, 120), (255, 90, 80)
BADGE_FILL = (0, 0, 0, 160)
BACKGROUND = (24, 25, 28)
PANEL_SPACING = 4
Roi = tuple[int, int, int, int]


class HMCViews(QWidget):
    """Three locked-aspect gray image panels with state badges and editable crop ROIs."""

    roi_changed = Signal(int, object)  # camera index, (x, y, w, h) in pixels

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._views: list[pg.ViewBox] = []
        self._images: list[pg.ImageItem] = []
        self._badges: list[pg.TextItem] = []
        self._rois: list[pg.RectROI] = []
        self._shapes: list[tuple[int, ...]] = [(), (), ()]
        self._roi_visible = False
        self._updating_roi = False
        titles = QHBoxLayout()
        titles.setContentsMargins(0, 0, 0, 0)
        titles.setSpacing(PANEL_SPACING)
        self._graphics = pg.GraphicsLayoutWidget()
        self._graphics.setBackground(BACKGROUND)
        self._graphics.ci.setContentsMargins(2, 2, 2, 2)
        self._graphics.ci.setSpacing(PANEL_SPACING)
        for cam, name in enumerate(CAMERA_NAMES):
            title = QLabel(name)
            title.setAlignment(Qt.AlignmentFlag.AlignCenter)
            titles.addWidget(title, stretch=1)
            self._add_camera(cam)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addLayout(titles)
        column.addWidget(self._graphics, stretch=1)
        self.setMinimumSize(360, 140)

    def _add_camera(self, cam: int) -> None:
        """One locked-aspect ViewBox per camera, side by side in the one graphics scene, the
        columns stretched equally (equal widths whatever the images' sizes)."""
        view = self._graphics.addViewBox(row=0, col=cam, lockAspect=True, invertY=True,
                                         enableMouse=False, enableMenu=False)
        self._graphics.ci.layout.setColumnStretchFactor(cam, 1)
        image = pg.ImageItem(axisOrder="row-major", levels=None)
        view.addItem(image)
        badge = pg.TextItem("no signal", color=BAD_COLOR, fill=BADGE_FILL, anchor=(0, 0))
        badge.setParentItem(view)  # parented to the box, not the image: fixed on screen
        badge.setPos(4, 4)
        roi = pg.RectROI((0, 0), (1, 1), pen=pg.mkPen((255, 200, 0), width=2),
                         movable=True, resizable=True, removable=False)
        roi.setVisible(False)
        roi.sigRegionChangeFinished.connect(lambda _r, c=cam: self._emit_roi(c))
        view.addItem(roi)
        self._views.append(view)
        self._images.append(image)
        self._badges.append(badge)
        self._rois.append(roi)

    # -- frames -----------------------------------------------------------------------
    def set_frames(self, frames: np.ndarray | Sequence[np.ndarray | None]) -> None:
        """Show one frame per camera: (3, H, W) uint8 or a list of 3 (H, W) arrays / None."""
        if len(frames) != 3:
            raise ValueError(f"expected 3 camera frames, got {len(frames)}")
        for cam, frame in enumerate(frames):
            self.set_frame(cam, frame)

    def set_frame(self, cam: int, frame: np.ndarray | None) -> None:
        """Show one camera's (H, W) uint8 frame; None clears the panel."""
        image = self._images[cam]
        if frame is None:
            image.clear()
            self._shapes[cam] = ()
            return
        frame = np.asarray(frame)
        if frame.ndim != 2:
            raise ValueError(f"camera {cam}: expected a gray (H, W) frame, got {frame.shape}")
        if frame.dtype != np.uint8:
            frame = np.clip(frame, 0, 255).astype(np.uint8)
        image.setImage(frame, autoLevels=False)  # no levels: pass-through (module docstring)
        if frame.shape != self._shapes[cam]:
            self._shapes[cam] = frame.shape
            self._views[cam].autoRange(padding=0.0)

    # -- state badges ----------------------------------------------------------------------
    def set_camera_state(self, cam: int, text: str, ok: bool) -> None:
        """Badge text on a panel, green when ok (e.g. "live"), red otherwise."""
        self._badges[cam].setText(text, color=OK_COLOR if ok else BAD_COLOR)

    def camera_state(self, cam: int) -> str:
        """The badge text currently shown on a panel."""
        return self._badges[cam].toPlainText()

    # -- crop ROIs --------------------------------------------------------------------
    def set_roi(self, cam: int, roi: Roi | None) -> None:
        """Place a camera's crop rectangle (x, y, w, h) in pixels without emitting."""
        item = self._rois[cam]
        if roi is None:
            item.setVisible(False)
            return
        x, y, w, h = roi
        self._updating_roi = True
        try:
            item.setPos((x, y), finish=False)
            item.setSize((w, h), finish=False)
        finally:
            self._updating_roi = False
        item.setVisible(self._roi_visible)

    def roi(self, cam: int) -> Roi:
        """A camera's crop rectangle (x, y, w, h), rounded to pixels."""
        item = self._rois[cam]
        (x, y), (w, h) = item.pos(), item.size()
        return int(round(x)), int(round(y)), int(round(w)), int(round(h))

    def show_roi(self, show: bool) -> None:
        """Show or hide the crop rectangles (they are edited by dragging)."""
        self._roi_visible = bool(show)
        for cam, item in enumerate(self._rois):
            if show and item.size()[0] <= 1 and self._shapes[cam]:
                h, w = self._shapes[cam]
                self.set_roi(cam, (w // 8, h // 8, 3 * w // 4, 3 * h // 4))
            item.setVisible(self._roi_visible)

    def _emit_roi(self, cam: int) -> None:
        if not self._updating_roi:
            self.roi_changed.emit(cam, self.roi(cam))

    def view_box(self, cam: int) -> pg.ViewBox:
        """The panel's ViewBox (for tests and overlays)."""
        return self._views[cam]
