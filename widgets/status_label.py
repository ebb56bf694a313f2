"""A one-line status message: neutral when things are fine, red when they are not.

Shared by the panels that report back what the session did with a request. A Python
traceback that slips through as a message is cut to its last line ("ValueError: ..."),
so the user reads a sentence, never a stack.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget

ERROR_STYLE = "color: #e0453a;"


TRACEBACK_HEADER = "Traceback (most recent call last)"


def clean_message(text: str) -> str:
    """The text itself, or only a traceback's final 'SomeError: ...' line."""
    text = str(text).strip()
    if TRACEBACK_HEADER not in text:
        return text
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1]


class StatusLabel(QLabel):
    """Word-wrapped, selectable status line; ``ok`` picks neutral or red text."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._ok = True

    def show_message(self, text: str, ok: bool = True) -> None:
        """Show a message; errors in red."""
        self._ok = bool(ok)
        self.setStyleSheet("" if ok else ERROR_STYLE)
        self.setText(clean_message(text))

    @property
    def is_error(self) -> bool:
        return not self._ok
