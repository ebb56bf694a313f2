"""A vispy SceneCanvas drawn offscreen (EGL pbuffer) and shown as an image in a plain QWidget.

Why: a QOpenGLWidget makes Qt compose the whole top-level window through OpenGL on every
repaint. With software GL (Mesa llvmpipe, e.g. under Xvfb on a 2-core machine) that composition
of a 1500x950 window costs more than drawing the faces (about 25 ms a frame, paid again whenever
a camera feed or a label changes), which caps the studio near 10 fps. Drawing the scene into a
pbuffer and painting its pixels keeps the window on Qt's raster path, where only the changed
rectangles go to the X server: the window's own cost drops to a few ms.

``make_canvas(bgcolor)`` returns ``(canvas, widget)``; put ``widget`` in a layout and use
``canvas`` as usual (``canvas.update()`` schedules a repaint, ``canvas.render()`` works). Mouse
and wheel events are forwarded, so cameras still orbit and zoom. The EGL context is released
after every draw so no GL context is left current on the GUI thread. ``MIA_STUDIO_CANVAS``
chooses: ``offscreen``, ``native`` (a QOpenGLWidget) or ``auto`` (default: offscreen on Linux
when EGL works, else native).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import time
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent, QPainter, QPaintEvent, QResizeEvent, QWheelEvent
from PySide6.QtWidgets import QSizePolicy, QWidget
from vispy import app as vispy_app
from vispy import gloo, scene
from vispy.util import keys

from widgets.face_camera import VISUAL_APP

MODE_ENV = "MIA_STUDIO_CANVAS"
_BUTTONS = {Qt.MouseButton.LeftButton: 1, Qt.MouseButton.RightButton: 2, Qt.MouseButton.MiddleButton: 3}
_MODIFIERS = ((Qt.KeyboardModifier.ShiftModifier, keys.SHIFT), (Qt.KeyboardModifier.ControlModifier, keys.CONTROL),
              (Qt.KeyboardModifier.AltModifier, keys.ALT), (Qt.KeyboardModifier.MetaModifier, keys.META))
_egl_app: Any = None
_egl_failed = ""


def _egl_application() -> Any:
    """vispy's headless EGL application (one per process), or None when EGL is unusable here."""
    global _egl_app, _egl_failed
    if _egl_app is None and not _egl_failed:
        try:
            _egl_app = vispy_app.Application("egl")
        except Exception as err:  # no libEGL, no usable display: fall back to native canvases
            _egl_failed = f"{type(err).__name__}: {err}"
    return _egl_app


def canvas_mode() -> str:
    """'offscreen' or 'native', from MIA_STUDIO_CANVAS and what this machine offers."""
    wanted = os.environ.get(MODE_ENV, "auto").strip().lower()
    if wanted == "native":
        return "native"
    if wanted == "offscreen" or sys.platform.startswith("linux"):
        return "offscreen" if _egl_application() is not None and not _egl_failed else "native"
    return "native"


def make_canvas(bgcolor: Any) -> tuple[scene.SceneCanvas, QWidget]:
    """A SceneCanvas and the QWidget that shows it (see the module docstring)."""
    global _egl_failed
    if canvas_mode() == "offscreen":
        try:
            canvas = scene.SceneCanvas(keys=None, bgcolor=bgcolor, show=False, app=_egl_application(),
                                       size=(64, 64))
        except Exception as err:  # EGL loads but cannot make a context/surface: use a native canvas
            _egl_failed = f"{type(err).__name__}: {err}"
        else:
            release_context()
            return canvas, OffscreenCanvasWidget(canvas)
    canvas = scene.SceneCanvas(keys=None, bgcolor=bgcolor, show=False, app=VISUAL_APP)
    return canvas, canvas.native


def release_context() -> None:
    """Make no EGL context current on this thread (Qt/GLX calls must not land in ours)."""
    lib = _libegl()
    if lib is not None:
        display = lib.eglGetCurrentDisplay()
        if display:
            lib.eglMakeCurrent(display, None, None, None)


_EGL_LIB: Any = None


def _libegl() -> Any:
    global _EGL_LIB
    if _EGL_LIB is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("EGL") or "libEGL.so.1")
        except OSError:
            _EGL_LIB = False
            return None
        lib.eglGetCurrentDisplay.restype = ctypes.c_void_p
        lib.eglMakeCurrent.argtypes = [ctypes.c_void_p] * 4
        _EGL_LIB = lib
    return _EGL_LIB or None


def _modifiers(event: QMouseEvent | QWheelEvent) -> tuple:
    mods = event.modifiers()
    return tuple(key for flag, key in _MODIFIERS if mods & flag)


class OffscreenCanvasWidget(QWidget):
    """Paints an offscreen SceneCanvas; forwards size, mouse and wheel to it."""

    def __init__(self, canvas: scene.SceneCanvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self._image: QImage | None = None
        self._pixels: np.ndarray | None = None
        self._dirty = True
        self.draw_ms = 0.0
        backend = canvas._backend
        backend._vispy_update = self._schedule  # canvas.update() -> a Qt repaint of this widget
        render = canvas.render

        def render_and_release(*args: Any, **kwargs: Any) -> np.ndarray:
            try:
                return render(*args, **kwargs)
            finally:
                release_context()
        canvas.render = render_and_release  # grab_image() must not leave the context current either
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setMouseTracking(False)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(64, 64)

    # ----- drawing
    def _schedule(self) -> None:
        self._dirty = True
        self.update()

    def _draw(self) -> None:
        canvas = self.canvas
        start = time.perf_counter()
        try:
            canvas.set_current()
            canvas.events.draw(region=None)
            pixels = gloo.read_pixels(alpha=False)
        finally:
            release_context()
        self._pixels = np.ascontiguousarray(pixels)
        h, w = self._pixels.shape[:2]
        self._image = QImage(self._pixels.data, w, h, 3 * w, QImage.Format.Format_RGB888)
        self._dirty = False
        self.draw_ms = (time.perf_counter() - start) * 1e3

    def paintEvent(self, event: QPaintEvent) -> None:
        if self._dirty or self._image is None:
            self._draw()
        painter = QPainter(self)
        painter.drawImage(self.rect(), self._image)
        painter.end()

    def resizeEvent(self, event: QResizeEvent) -> None:
        size = event.size()
        w, h = max(1, size.width()), max(1, size.height())
        if tuple(self.canvas.size) != (w, h):
            self.canvas.size = (w, h)
            release_context()
            self.canvas.events.resize(size=(w, h), physical_size=(w, h))
        self._schedule()

    # ----- input
    def _mouse(self, method: str, event: QMouseEvent, button: bool = True) -> None:
        pos = event.position()
        kwargs = {"native": event, "pos": (pos.x(), pos.y()), "modifiers": _modifiers(event),
                  "buttons": [b for q, b in _BUTTONS.items() if event.buttons() & q]}
        if button:
            kwargs["button"] = _BUTTONS.get(event.button(), 0)
        getattr(self.canvas._backend, method)(**kwargs)
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self._mouse("_vispy_mouse_press", event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._mouse("_vispy_mouse_release", event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self._mouse("_vispy_mouse_double_click", event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        self._mouse("_vispy_mouse_move", event, button=False)

    def wheelEvent(self, event: QWheelEvent) -> None:
        delta = event.angleDelta()
        pos: QPointF = event.position()
        self.canvas.events.mouse_wheel(native=event, delta=(delta.x() / 120.0, delta.y() / 120.0),
                                       pos=(pos.x(), pos.y()), modifiers=_modifiers(event), buttons=[])
        event.accept()
