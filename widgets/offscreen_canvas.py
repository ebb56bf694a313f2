"""A vispy SceneCanvas drawn offscreen (EGL) and shown as an image in a plain QWidget.

Why: a QOpenGLWidget makes Qt compose the whole top-level window through OpenGL on every
repaint. With software GL (Mesa llvmpipe, e.g. under Xvfb on a 2-core machine) that composition
of a 1500x950 window costs more than drawing the faces (about 25 ms a frame, paid again whenever
a camera feed or a label changes), which caps the studio near 10 fps. Drawing the scene into a
framebuffer object (colour and a 24-bit depth buffer: vispy's EGL pbuffer has no depth buffer)
and painting its pixels keeps the window on Qt's raster path, where only the changed
rectangles go to the X server: the window's own cost drops to a few ms.

``make_canvas(bgcolor)`` returns ``(canvas, widget)``; put ``widget`` in a layout and use
``canvas`` as usual (``canvas.update()`` schedules a repaint, ``canvas.render()`` works). The
canvas is an ``OffscreenSceneCanvas`` (a SceneCanvas subclass that hands repaint requests to the
widget); the widget feeds Qt's mouse and wheel input to it as vispy's own ``canvas.events.mouse_*``
events (with the drag state vispy's backends keep), so cameras still orbit and zoom and anything
connected to those events sees them. Nothing reaches into vispy's backend. The EGL context is released
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
from timeit import default_timer
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent, QPainter, QPaintEvent, QResizeEvent, QWheelEvent
from PySide6.QtWidgets import QSizePolicy, QWidget
from vispy import app as vispy_app
from vispy import gloo, scene
from vispy.util import keys

from widgets.face_camera import VISUAL_APP

MODE_ENV = "MIA_STUDIO_CANVAS"
GL_RGBA8, GL_DEPTH_COMPONENT24 = 0x8058, 0x81A6  # sized formats (vispy's names are unsized)
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
            canvas = OffscreenSceneCanvas(keys=None, bgcolor=bgcolor, show=False, app=_egl_application(),
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


class OffscreenSceneCanvas(scene.SceneCanvas):
    """A SceneCanvas on vispy's headless EGL application, drawn on request by a Qt widget.

    ``update()`` (what every scene change calls) keeps SceneCanvas's own bookkeeping and then asks
    ``on_update`` (the widget schedules a Qt repaint) once per drawn frame; requests made while the
    scene is being drawn are ignored, as SceneCanvas does. ``draw_pixels()`` draws the scene into
    its framebuffer (``_target``) and reads it back; it and ``render()`` release the EGL context afterwards.

    ``submit()`` draws the scene now and only flushes: with Mesa's llvmpipe the rasteriser threads
    then fill the pixels while the GUI thread goes on (updating and painting the 2-D widgets), and
    the next ``draw_pixels()`` only reads them back, unless the scene changed in between, when it
    draws again. Reading back straight after drawing made the GUI thread wait for the rasteriser
    (``glFinish``, about 8 ms a frame in the studio).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.on_update: Callable[[], None] | None = None
        self._repaint_requested = False
        self._submitted = False  # the framebuffer holds (or is being filled with) the current scene
        self._busy = False  # drawing or rendering
        self._fbo: gloo.FrameBuffer | None = None  # see _target
        super().__init__(*args, **kwargs)

    def update(self, node: Any = None) -> None:
        super().update(node)  # with the EGL backend this only marks the canvas, nothing draws
        if self._busy:
            return
        self._submitted = False  # the scene changed after the last submit
        if self._repaint_requested or self.on_update is None:
            return
        self._repaint_requested = True
        self.on_update()

    def _target(self) -> gloo.FrameBuffer:
        """The framebuffer the scene is drawn into: colour plus a 24-bit depth buffer, at the canvas
        size. vispy's EGL pbuffer has no depth buffer at all (GL_DEPTH_BITS 0), so drawn straight
        into it every face was painted in triangle order: from the side the far cheek covered the
        near one, and the nostrils and eyelids showed through from the front."""
        h, w = int(self.physical_size[1]), int(self.physical_size[0])
        if self._fbo is None or self._fbo.color_buffer.shape[:2] != (h, w):
            self._fbo = gloo.FrameBuffer(color=gloo.RenderBuffer((h, w), format=GL_RGBA8),
                                         depth=gloo.RenderBuffer((h, w), format=GL_DEPTH_COMPONENT24))
        return self._fbo

    def submit(self) -> None:
        """Draw the scene into the framebuffer without waiting for the pixels (see the class docstring)."""
        self._busy = True
        try:
            self.set_current()
            with self._target():  # the canvas's size: its transforms and viewport hold as they are
                self.events.draw(region=None)
            gloo.flush()
            self._submitted = True
        finally:
            self._busy = self._repaint_requested = False
            release_context()

    def draw_pixels(self) -> np.ndarray:
        """The scene at the canvas size, drawn now unless submitted unchanged; (h, w, 3) uint8 RGB,
        top row first."""
        self._busy = True
        try:
            self.set_current()
            target = self._target()
            with target:
                if not self._submitted:
                    self.events.draw(region=None)
                return target.read(alpha=False)
        finally:
            self._busy = self._repaint_requested = self._submitted = False
            release_context()

    def render(self, *args: Any, **kwargs: Any) -> np.ndarray:
        self._busy = True
        try:
            return super().render(*args, **kwargs)
        finally:
            self._busy = self._submitted = False  # render() draws into its own framebuffer: draw again
            release_context()  # grab_image() must not leave the context current either


class _MouseDrag:
    """What vispy's canvas backends keep between mouse events: the press that started the current
    drag and the previous event (``MouseEvent.press_event`` / ``last_event``), moves closer than
    10 ms apart dropped, and a double click made of two presses in 0.3 s at one spot."""

    def __init__(self, canvas: scene.SceneCanvas) -> None:
        self.events = canvas.events
        self.press: vispy_app.MouseEvent | None = None
        self.last: vispy_app.MouseEvent | None = None
        self.last_press: vispy_app.MouseEvent | None = None
        self.last_move_time = 0.0

    def press_(self, **kwargs: Any) -> None:
        ev = self.events.mouse_press(press_event=self.press, last_event=self.last, **kwargs)
        if self.press is None:
            self.press = ev
        self.last = ev
        before, self.last_press = self.last_press, ev
        if (before is not None and ev.time - before.time <= 0.3 and ev.button == before.button
                and np.array_equal(ev.pos, before.pos)):
            self.double_click(**kwargs)

    def move(self, **kwargs: Any) -> None:
        now = default_timer()
        if now - self.last_move_time < 0.01:
            return
        self.last_move_time = now
        if self.press is None:  # outside a drag an event remembers one step back, not the whole chain
            last = None if self.last is None else _forgetful(self.last)
        else:
            kwargs["button"], last = self.press.button, self.last
        self.last = self.events.mouse_move(press_event=self.press, last_event=last, **kwargs)

    def release(self, **kwargs: Any) -> None:
        ev = self.events.mouse_release(press_event=self.press, last_event=self.last, **kwargs)
        if self.press is not None and self.press.button == ev.button:
            self.press = None
        self.last = ev

    def double_click(self, **kwargs: Any) -> None:
        self.last = self.events.mouse_double_click(press_event=self.press, last_event=self.last, **kwargs)


def _forgetful(event: vispy_app.MouseEvent) -> vispy_app.MouseEvent:
    """A copy of a mouse event without its own ``last_event`` (ends the chain there)."""
    return vispy_app.MouseEvent(event.type, pos=event.pos, button=event.button, buttons=event.buttons,
                                modifiers=event.modifiers, delta=event.delta,
                                press_event=event.press_event, native=event.native)


class OffscreenCanvasWidget(QWidget):
    """Paints an OffscreenSceneCanvas; forwards size, mouse and wheel to it."""

    def __init__(self, canvas: OffscreenSceneCanvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self._image: QImage | None = None
        self._pixels: np.ndarray | None = None
        self._dirty = True
        self.draw_ms = 0.0
        self._drag = _MouseDrag(canvas)
        canvas.on_update = self._schedule  # canvas.update() -> a Qt repaint of this widget
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setMouseTracking(False)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(64, 64)

    # ----- drawing
    def _schedule(self) -> None:
        self._dirty = True
        self.update()

    def submit(self) -> None:
        """Start drawing a changed scene now; the repaint that shows it then only reads it back."""
        if self._dirty and self.isVisible():
            self.canvas.submit()

    def _draw(self) -> None:
        start = time.perf_counter()
        self._pixels = np.ascontiguousarray(self.canvas.draw_pixels())
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
    @staticmethod
    def _mouse_fields(event: QMouseEvent, button: bool = True) -> dict:
        pos = event.position()
        fields = {"native": event, "pos": (pos.x(), pos.y()), "modifiers": _modifiers(event),
                  "buttons": [b for q, b in _BUTTONS.items() if event.buttons() & q]}
        if button:
            fields["button"] = _BUTTONS.get(event.button(), 0)
        return fields

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self._drag.press_(**self._mouse_fields(event))
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._drag.release(**self._mouse_fields(event))
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self._drag.double_click(**self._mouse_fields(event))
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        self._drag.move(**self._mouse_fields(event, button=False))
        event.accept()

    def wheelEvent(self, event: QWheelEvent) -> None:
        delta = event.angleDelta()
        pos: QPointF = event.position()
        self.canvas.events.mouse_wheel(native=event, delta=(delta.x() / 120.0, delta.y() / 120.0),
                                       pos=(pos.x(), pos.y()), modifiers=_modifiers(event), buttons=[])
        event.accept()
