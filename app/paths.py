"""Where the studio finds its shipped files and keeps the user's own (settings, profiles, logs).

User folders follow the platform (Qt's QStandardPaths: ~/.config/MIA Studio, ~/.cache/MIA Studio
on Linux). ``MIA_STUDIO_HOME`` moves all of them under one folder, which tests and benchmarks use
so they never touch the user's real settings.
"""
from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QStandardPaths

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "resources"
DEFAULT_MODEL = RESOURCES / "default_model.pt"
DEMO_CAPTURE = RESOURCES / "demo_capture"
SUBJECTS = RESOURCES / "subjects"
APP_NAME = "MIA Studio"
ORG_NAME = "MIA Studio"
HOME_ENV = "MIA_STUDIO_HOME"


def default_threads() -> int:
    """Inference threads: MIA_STUDIO_THREADS, else all cores but one (the GUI thread and the
    software rasteriser need that one), at most four; on a 2-core machine that is one."""
    env = os.environ.get("MIA_STUDIO_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def default_backend() -> str:
    """Inference backend of the studio: MIA_STUDIO_BACKEND (torch or onnx), else onnxruntime on a
    CPU (B + G in 2.5 ms a frame instead of torch's 6.4 here, and no torch op overhead per call)
    and torch when a GPU is chosen or onnxruntime is missing."""
    env = os.environ.get("MIA_STUDIO_BACKEND", "").strip().lower()
    if env in ("torch", "onnx"):
        return env
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    from engine.device import pick_device
    try:
        device = str(pick_device(os.environ.get("MIA_STUDIO_DEVICE", "").strip() or "auto"))
    except Exception:  # an impossible MIA_STUDIO_DEVICE: the worker says so when it loads the model
        return "torch"
    return "onnx" if device == "cpu" else "torch"


LIVE_AVERAGING = 1  # the studio reads a live frame once (+ its mirror image); the shipped model recommends 16 copies
LIVE_MIRROR = True


def default_averaging() -> int:
    """Test-time averaging copies of the studio: MIA_STUDIO_AVERAGING, else LIVE_AVERAGING (off).
    Live paths read each frame once so the studio keeps up with the cameras: measured with the
    shipped model under Xvfb here, one subject ran at 24.3 fps reading once and 20.3 fps with 4
    copies (B + G ~3 ms a frame once, ~9 ms with 4, ~22 ms with 16 on one core). Set 16, with
    the mirror (default_mirror), to see exactly what `mia eval` measures (0.53x of the neutral error on
    untrained people, 0.58x read once; docs/results.md)."""
    env = os.environ.get("MIA_STUDIO_AVERAGING", "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else LIVE_AVERAGING


def default_mirror() -> bool:
    """Whether the studio also reads each frame's mirror image: yes (LIVE_MIRROR) unless
    MIA_STUDIO_MIRROR=0. The frame and its mirror image (two reads) are more accurate than 16 moved
    copies (untrained people's face 0.545x of the neutral error, against 0.558x and 0.579x read
    once; docs/results.md), and cost the studio no frame rate: it is drawing-bound (interleaved
    `studio_fps.py` runs here, one subject: 48.1 / 43.2 fps reading once, 45.6 / 46.1 with the
    mirror; the worker's inference 4.3 -> 6.8 ms a frame; docs/studio_speed.md)."""
    return _env_flag("MIA_STUDIO_MIRROR", LIVE_MIRROR)


def coarse_thumbnails() -> bool:
    """Whether the retarget thumbnails draw the coarser display mesh (about half the triangles,
    widgets/display_lod.py): yes unless MIA_STUDIO_FULL_THUMBNAILS=1. With software GL it buys the
    grid of four subjects frame rate (docs/studio_speed.md); the full mesh differs from it at the
    inner lips and nostrils, which a thumbnail rarely shows."""
    return not _env_flag("MIA_STUDIO_FULL_THUMBNAILS", False)


def _env_flag(name: str, default: bool) -> bool:
    """A yes/no environment setting: unset or empty gives `default`; 1, yes, on or true is yes,
    anything else no."""
    env = os.environ.get(name, "").strip().lower()
    return default if not env else env in ("1", "yes", "on", "true")


def set_application_names() -> None:
    """Names Qt uses for the user folders and QSettings; call before any QApplication."""
    QCoreApplication.setOrganizationName(ORG_NAME)
    QCoreApplication.setApplicationName(APP_NAME)


def _user_dir(kind: str, location: QStandardPaths.StandardLocation) -> Path:
    home = os.environ.get(HOME_ENV)
    if home:
        path = Path(home) / kind
    else:
        set_application_names()
        path = Path(QStandardPaths.writableLocation(location) or Path.home() / f".mia-studio-{kind}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    """Settings (studio.ini) and headset camera profiles (headsets.json)."""
    return _user_dir("config", QStandardPaths.StandardLocation.AppConfigLocation)


def cache_dir() -> Path:
    """The log file and other throw-away data."""
    return _user_dir("cache", QStandardPaths.StandardLocation.CacheLocation)


def log_file() -> Path:
    return cache_dir() / "mia-studio.log"
