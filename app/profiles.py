"""Camera settings saved per headset: which device or URL each camera is, its rotation, flip and crop.

A DIY headset is set up once (cameras mounted sideways, mirrored, a crop around the eye) and then
reused, so the studio keeps one profile per headset name in ``headsets.json`` in the user config
folder. Written atomically; a damaged file is set aside rather than crashing the app.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from app.paths import config_dir
from engine.runtime.sources import CameraSettings, Roi
from engine.errors import SourceError
from engine.io.atomic import write_text

DEFAULT_URLS = ("0", "1", "2")


class HeadsetProfiles:
    """name -> three CameraSettings, persisted to one JSON file."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path else config_dir() / "headsets.json"
        self._profiles: dict[str, list[CameraSettings]] = self._read()

    def names(self) -> list[str]:
        return sorted(self._profiles)

    def get(self, name: str) -> list[CameraSettings] | None:
        """The saved cameras of a headset (copies), or None when it has no profile."""
        cams = self._profiles.get(name)
        return None if cams is None else [CameraSettings.from_dict(c.to_dict()) for c in cams]

    def spec(self, name: str) -> dict | None:
        """The source-panel spec of a saved headset."""
        cams = self.get(name)
        if cams is None:
            return None
        return {"kind": "cameras", "headset": name, "urls": [c.url for c in cams],
                "rotate": [c.rotate for c in cams], "flip": [c.flip for c in cams]}

    def save_cameras(self, name: str, urls: list[str], rotate: list[int], flip: list[bool]) -> None:
        """Store a headset's cameras, keeping the crop ROIs already saved for it."""
        old = self._profiles.get(name) or [CameraSettings(u) for u in DEFAULT_URLS]
        self._profiles[name] = [CameraSettings(str(urls[c]), int(rotate[c]), bool(flip[c]), old[c].roi)
                                for c in range(3)]
        self._write()

    def set_roi(self, name: str, cam: int, roi: Roi | None) -> None:
        """Store one camera's crop (x, y, w, h) for a headset (creating the profile if needed)."""
        cams = self._profiles.setdefault(name, [CameraSettings(u) for u in DEFAULT_URLS])
        cams[cam].roi = None if roi is None else tuple(int(v) for v in roi)  # type: ignore[assignment]
        self._write()

    def rois(self, name: str) -> list[Roi | None]:
        cams = self._profiles.get(name)
        return [None, None, None] if cams is None else [c.roi for c in cams]

    def _read(self) -> dict[str, list[CameraSettings]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            entries = {str(name): entry["cameras"] for name, entry in data.items()
                       if len(entry.get("cameras", [])) == 3}
        except (ValueError, KeyError, TypeError, AttributeError):
            self.path.replace(self.path.with_suffix(".json.damaged"))
            return {}
        profiles = {}
        for name, cameras in entries.items():
            try:
                profiles[name] = [CameraSettings.from_dict(c) for c in cameras]
            except (SourceError, ValueError, TypeError, AttributeError):
                continue  # a refused URL or a malformed camera drops that headset only
        return profiles

    def _write(self) -> None:
        data = {name: {"cameras": [c.to_dict() for c in cams]} for name, cams in self._profiles.items()}
        write_text(self.path, json.dumps(data, indent=2))
