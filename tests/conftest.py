"""Shared test set-up: GUI tests need an X display (Xvfb) for the vispy canvas.

vispy renders inside a Qt window only on a real (or virtual) X server; Qt's
``offscreen`` platform gives it no GL surface. So when DISPLAY is set the Qt platform
is pinned to xcb before any QApplication exists, and tests marked ``gui`` are skipped
with a clear reason when there is no display.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

import pytest

NO_DISPLAY_REASON = ("no X display: run GUI tests under Xvfb, e.g. "
                     "xvfb-run -a -s '-screen 0 1600x1000x24' .venv/bin/python -m pytest")


def has_display() -> bool:
    """True when an X server is reachable through DISPLAY."""
    return bool(os.environ.get("DISPLAY"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "opengl: draws with vispy/OpenGL in a Qt window")
    if has_display():
        os.environ["QT_QPA_PLATFORM"] = "xcb"


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory):
    """ONNX exports (the studio drives models through onnxruntime on a CPU) go to a throw-away
    folder, not the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("onnx_cache")
    before = os.environ.get("MIA_CACHE_DIR")
    os.environ["MIA_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("MIA_CACHE_DIR", None)
    else:
        os.environ["MIA_CACHE_DIR"] = before


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if has_display():
        return
    skip = pytest.mark.skip(reason=NO_DISPLAY_REASON)
    for item in items:
        if "gui" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def qt_platform() -> str | None:
    """Pin Qt to xcb when a display exists (before pytest-qt builds the QApplication)."""
    if has_display():
        os.environ["QT_QPA_PLATFORM"] = "xcb"
    return os.environ.get("QT_QPA_PLATFORM")


def current_egl_context() -> int:
    """The EGL context current on this thread (0 when none or EGL is unavailable)."""
    name = ctypes.util.find_library("EGL") or "libEGL.so.1"
    try:
        egl = ctypes.CDLL(name)
    except OSError:
        return 0
    egl.eglGetCurrentContext.restype = ctypes.c_void_p
    return egl.eglGetCurrentContext() or 0


@pytest.fixture(autouse=True)
def no_foreign_gl_context(request: pytest.FixtureRequest) -> None:
    """OpenGL tests fail clearly if a headless EGL context is left current on the GUI thread.

    Qt's canvas uses GLX; with an EGL context current on the same thread (e.g. from
    headless rendering run on the main thread) vispy's GL calls land in the wrong
    context and fail with GL_INVALID_ENUM/OPERATION. The renderer must release its
    context after use (moderngl: render inside ``with ctx:``).
    """
    if "opengl" in request.keywords and current_egl_context():
        pytest.fail("an EGL context is still current on the GUI thread (left by headless "
                    "rendering); release it after rendering, e.g. `with ctx:` in engine/render.py")


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory: pytest.TempPathFactory):
    """The shared tiny synthetic dataset (tests/synth_world.py), rendered once per session; read-only."""
    from engine.synth.generate import generate_dataset
    from synth_world import synth_config
    root = tmp_path_factory.mktemp("synth_dataset")
    generate_dataset(root, synth_config())
    return root


@pytest.fixture
def oscdump(tmp_path):
    """A real OSC receiver (tests/osc_receiver.py): yields (port, lines()), killed afterwards."""
    from osc_receiver import run_oscdump
    with run_oscdump(tmp_path) as receiver:
        yield receiver


@pytest.fixture
def viewer(qtbot):
    """The 3D viewer (MeshViewer), shown at 800x450: the widget and view-drawing tests' canvas."""
    from on_screen import show_widget
    from widgets.mesh_viewer import MeshViewer

    return show_widget(qtbot, MeshViewer(), 800, 450)
