"""Progress of a long task (training, adaptation, evaluation, export) with cancel.

The task runs in a worker; this dialog only shows what the worker reports. Cancel asks
(``cancel_requested``) rather than kills: the worker stops at its next checkpoint and
then calls ``finish`` or ``fail``. A failure is shown as a short message in a red box —
the cause and what to do, never a traceback.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (QDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QVBoxLayout, QWidget)

from widgets.status_label import clean_message

ERROR_BOX_STYLE = ("QLabel { color: #8a1f17; background: #fdecea; border: 1px solid #e0453a;"
                   " border-radius: 4px; padding: 8px; }")


class TaskProgressDialog(QDialog):
    """Progress bar + text, Cancel while running, Close and a clear error box after."""

    cancel_requested = Signal()

    def __init__(self, title: str = "Working…", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setMinimumWidth(420)
        self.text_label = QLabel("")
        self.text_label.setWordWrap(True)
        self.bar = QProgressBar()
        self.error_box = QLabel("")
        self.error_box.setWordWrap(True)
        self.error_box.setStyleSheet(ERROR_BOX_STYLE)
        self.error_box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_box.hide()
        self.button = QPushButton("Cancel")
        self.button.clicked.connect(self._on_button)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text_label)
        layout.addWidget(self.bar)
        layout.addWidget(self.error_box)
        layout.addLayout(row)
        self._running = True
        self._cancelling = False

    # -- reported by the worker ------------------------------------------------------
    def set_progress(self, done: int, total: int, text: str = "") -> None:
        """done of total steps (total <= 0: unknown, busy bar) and a line of text."""
        if total > 0:
            self.bar.setRange(0, int(total))
            self.bar.setValue(max(0, min(int(done), int(total))))
        else:
            self.bar.setRange(0, 0)
        if text:
            self.text_label.setText(text)

    def finish(self, text: str = "Done.") -> None:
        """The task completed: full bar, Close button."""
        if self.bar.maximum() == 0:
            self.bar.setRange(0, 1)
        self.bar.setValue(self.bar.maximum())
        self.text_label.setText(text)
        self._stop()

    def fail(self, message: str) -> None:
        """The task failed or was cancelled: show why in the error box, Close button."""
        self.error_box.setText(clean_message(message))
        self.error_box.show()
        if self.bar.maximum() == 0:
            self.bar.setRange(0, 1)
        self._stop()

    # -- state --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    @property
    def error_text(self) -> str:
        return self.error_box.text() if self.error_box.isVisible() else ""

    def _stop(self) -> None:
        self._running = False
        self.button.setText("Close")
        self.button.setEnabled(True)

    def _request_cancel(self) -> None:
        if self._running and not self._cancelling:
            self._cancelling = True
            self.button.setText("Cancelling…")
            self.button.setEnabled(False)
            self.cancel_requested.emit()

    def _on_button(self) -> None:
        if self._running:
            self._request_cancel()
        else:
            self.accept()

    # Closing the window or pressing Esc while running means "cancel", not "hide".
    def reject(self) -> None:
        if self._running:
            self._request_cancel()
        else:
            super().reject()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._running:
            self._request_cancel()
            event.ignore()
        else:
            super().closeEvent(event)
