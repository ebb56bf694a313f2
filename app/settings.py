"""What the studio remembers between runs: layout, recent captures, last model and source, view.

One INI file (``studio.ini`` in the user config folder) through QSettings, so the file is readable
and a test can point ``MIA_STUDIO_HOME`` at a temporary folder. Headset camera profiles live in
their own JSON file (app/profiles.py).
"""
from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from app.paths import config_dir

MAX_RECENT = 10


class StudioSettings:
    """Typed accessors over QSettings; every getter has a safe default."""

    def __init__(self, path: str | None = None) -> None:
        self.qsettings = QSettings(path or str(config_dir() / "studio.ini"), QSettings.Format.IniFormat)

    # ----- window
    def window_geometry(self) -> QByteArray | None:
        value = self.qsettings.value("window/geometry")
        return value if isinstance(value, QByteArray) else None

    def window_state(self) -> QByteArray | None:
        value = self.qsettings.value("window/state")
        return value if isinstance(value, QByteArray) else None

    def save_window(self, geometry: QByteArray, state: QByteArray) -> None:
        self.qsettings.setValue("window/geometry", geometry)
        self.qsettings.setValue("window/state", state)

    # ----- files
    def recent_captures(self) -> list[str]:
        return [str(p) for p in self._list("files/recent_captures")]

    def add_recent_capture(self, path: str) -> list[str]:
        recent = [path] + [p for p in self.recent_captures() if p != path]
        self.qsettings.setValue("files/recent_captures", json.dumps(recent[:MAX_RECENT]))
        return recent[:MAX_RECENT]

    def last_model(self) -> str:
        return str(self.qsettings.value("files/last_model", "") or "")

    def set_last_model(self, path: str) -> None:
        self.qsettings.setValue("files/last_model", path)

    def last_source(self) -> dict[str, Any] | None:
        text = self.qsettings.value("files/last_source", "")
        try:
            spec = json.loads(text) if text else None
        except (TypeError, ValueError):
            return None
        return spec if isinstance(spec, dict) and "kind" in spec else None

    def set_last_source(self, spec: dict[str, Any]) -> None:
        self.qsettings.setValue("files/last_source", json.dumps(spec))

    # ----- view
    def view_mode(self) -> str:
        return str(self.qsettings.value("view/mode", "textured"))

    def set_view_mode(self, mode: str) -> None:
        self.qsettings.setValue("view/mode", mode)

    def error_scale_mm(self) -> float:
        try:
            return float(self.qsettings.value("view/error_scale_mm", 5.0))
        except (TypeError, ValueError):
            return 5.0

    def set_error_scale_mm(self, value: float) -> None:
        self.qsettings.setValue("view/error_scale_mm", float(value))

    # ----- retargeting
    def targets(self) -> list[str]:
        return [str(t) for t in self._list("retarget/targets")]

    def set_targets(self, names: list[str]) -> None:
        self.qsettings.setValue("retarget/targets", json.dumps(list(names)))

    def textured_targets(self) -> bool:
        return str(self.qsettings.value("retarget/textured", "false")).lower() == "true"

    def set_textured_targets(self, textured: bool) -> None:
        self.qsettings.setValue("retarget/textured", "true" if textured else "false")

    def sync(self) -> None:
        self.qsettings.sync()

    def _list(self, key: str) -> list[Any]:
        text = self.qsettings.value(key, "")
        try:
            value = json.loads(text) if text else []
        except (TypeError, ValueError):
            return []
        return value if isinstance(value, list) else []
