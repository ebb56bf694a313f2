"""A registration's quality as a heat map on the face: per-vertex residual (mm) from blue to red.

Drawn once per registration into a pixmap with QPainter (a frontal orthographic view, triangles
back to front, lightly shaded so the shape reads), so it needs no GL context and costs nothing
per frame. Vertices the scan does not cover (NaN residual) are grey. Plain numpy in, no engine.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import QLabel, QWidget

from widgets.colormap import apply_colormap

UNCOVERED_RGB = (0.62, 0.62, 0.62)
SIZE_PX = 220


def triangle_colours(verts: np.ndarray, faces: np.ndarray, residual: np.ndarray, scale_mm: float) -> np.ndarray:
    """(F, 3) RGB in [0, 1]: the colour map of each triangle's mean residual, shaded by its normal."""
    values = np.asarray(residual, np.float64)[faces]
    covered = np.isfinite(values).all(1)
    rgb = apply_colormap(np.where(covered, np.nanmean(np.where(np.isfinite(values), values, 0), axis=1), 0.0),
                         scale_mm)[:, :3].astype(np.float64)
    rgb[~covered] = UNCOVERED_RGB
    tri = verts[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    shade = 0.55 + 0.45 * np.abs(n[:, 2]) / np.maximum(np.linalg.norm(n, axis=1), 1e-12)
    return np.clip(rgb * shade[:, None], 0.0, 1.0)


class ResidualMap(QLabel):
    """The heat-map picture; ``show_residuals`` draws it, ``clear_map`` empties it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(SIZE_PX // 2, SIZE_PX // 2)
        self.scale_mm = 1.0
        self.hide()

    def show_residuals(self, verts: np.ndarray, faces: np.ndarray, residual: np.ndarray, scale_mm: float = 1.0,
                       size: int = SIZE_PX) -> None:
        verts = np.asarray(verts, np.float64)
        faces = np.asarray(faces, np.int64)
        self.scale_mm = float(scale_mm)
        colours = triangle_colours(verts, faces, residual, self.scale_mm)
        lo, hi = verts[:, :2].min(0), verts[:, :2].max(0)
        scale = 0.92 * size / max(float((hi - lo).max()), 1e-9)
        centre = 0.5 * (lo + hi)
        xy = np.empty((len(verts), 2))
        xy[:, 0] = size / 2 + (verts[:, 0] - centre[0]) * scale
        xy[:, 1] = size / 2 - (verts[:, 1] - centre[1]) * scale
        order = np.argsort(verts[faces, 2].mean(1))
        image = QImage(size, size, QImage.Format.Format_RGB32)
        image.fill(QColor(32, 32, 36))
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        for f in order:
            c = colours[f]
            colour = QColor.fromRgbF(float(c[0]), float(c[1]), float(c[2]))
            painter.setPen(QPen(colour, 0))
            painter.setBrush(colour)
            painter.drawPolygon(QPolygonF([QPointF(*xy[i]) for i in faces[f]]))
        painter.end()
        self.setPixmap(QPixmap.fromImage(image))
        self.show()

    def clear_map(self) -> None:
        self.clear()
        self.hide()

    @property
    def has_map(self) -> bool:
        return self.pixmap() is not None and not self.pixmap().isNull()
