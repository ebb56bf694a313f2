"""Shared test set-up: GUI tests need an X display (Xvfb) for the vispy canvas.

vispy renders inside a Qt window only on a real (or virtual) X server; Qt's
``offscreen`` platform gives it no GL surface. So when DISPLAY is set the Qt platform
is pinned to xcb before any QApplication exists, and tests marked ``gui`` are skipped
with a clear reason when there is no display.
"""
from __future__ import annotations

import os

import pytest

NO_DISPLAY_REASON = ("no X display: run GUI tests under Xvfb, e.g. "
                     "xvfb-run -a -s '-screen 0 1600x1000x24' .venv/bin/python -m pytest")


def has_display() -> bool:
    """True when an X server is reachable through DISPLAY."""
    return bool(os.environ.get("DISPLAY"))


def pytest_configure(config: pytest.Config) -> None:
    if has_display():
        os.environ["QT_QPA_PLATFORM"] = "xcb"


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
