"""The status bar: a message on the left; fps, inference ms, render ms, model and device on the right.

Errors show in red and stay until the next message (a user must be able to read them); notices
fade after a few seconds back to the standing message (what is missing, e.g. no model). Tracebacks never reach it (see widgets/status_label.clean_message).
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from widgets.status_label import StatusLabel

NOTICE_MS = 8000


class StudioStatusBar(QStatusBar):
    """Message + permanent read-outs."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.message = StatusLabel()
        self.message.setWordWrap(False)
        self.addWidget(self.message, 1)
        self.fields: dict[str, QLabel] = {}
        for key, tip in (("fps", "frames shown per second"), ("infer", "inference time per frame"),
                         ("render", "3D viewer draw time"), ("model", "loaded model"),
                         ("device", "inference device and backend")):
            label = QLabel("–")
            label.setToolTip(tip)
            label.setMinimumWidth(70)
            self.addPermanentWidget(label)
            self.fields[key] = label
        self._standing = ""
        self._clear = QTimer(self, singleShot=True, interval=NOTICE_MS)
        self._clear.timeout.connect(self._show_standing)
        self.set_model("", "")

    def set_standing(self, text: str) -> None:
        """A message that stays whenever nothing newer is shown (e.g. "no model loaded")."""
        self._standing = text
        if not self._clear.isActive() and not self.message.is_error:
            self._show_standing()

    def _show_standing(self) -> None:
        self.message.show_message(self._standing, ok=True)
        self.message.setToolTip(self._standing)

    def show_error(self, text: str) -> None:
        self._clear.stop()
        self.message.show_message(text, ok=False)
        self.message.setToolTip(self.message.text())

    def show_notice(self, text: str) -> None:
        """A passing message; the standing one returns after a few seconds."""
        self.message.show_message(text, ok=True)
        self.message.setToolTip(text)
        self._clear.start()

    @property
    def message_text(self) -> str:
        return self.message.text()

    @property
    def is_error(self) -> bool:
        return self.message.is_error

    def set_numbers(self, status: dict[str, Any]) -> None:
        fps = status.get("fps", 0.0)
        self.fields["fps"].setText(f"{fps:.1f} fps" if fps else "– fps")
        infer = status.get("infer_ms", 0.0)
        self.fields["infer"].setText(f"infer {infer:.1f} ms" if infer else "infer –")

    def set_render_ms(self, ms: float) -> None:
        self.fields["render"].setText(f"render {ms:.1f} ms")

    def set_model(self, model: str, device: str) -> None:
        self.fields["model"].setText(model or "no model")
        self.fields["device"].setText(device or "–")
