"""Optional landmarks: a few named points on the scan that fix its pose without a search.

A ``points.json`` maps landmark names to points in the scan's own coordinates and units, e.g.
``{"nose_tip": [x, y, z], "left_eye_outer": [...], "right_eye_outer": [...], "chin": [...]}``, or a
list of ``{"name": ..., "point": [...]}``. Names are the ones in ``LANDMARKS`` (or ``"lm68_<k>"`` for
any of the 68 iBUG points the kit carries); three or more fix the pose (Kabsch/Umeyama). "left" and
"right" are the person's own. ``save_landmarks`` writes the object form; a registration given
landmarks (from ``--landmarks`` or picked in the neutral panel) saves them beside the result as
``<stem>.landmarks.json`` (``landmarks_path``), which ``--landmarks`` reads back.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from engine.errors import MeshError
from engine.io.atomic import write_text

LANDMARKS_SUFFIX = ".landmarks.json"

LANDMARKS: dict[str, int] = {  # name -> index into the kit's 68 iBUG landmarks
    "chin": 8, "nose_tip": 30, "nose_bridge": 27, "subnasale": 33,
    "right_eye_outer": 36, "right_eye_inner": 39, "left_eye_inner": 42, "left_eye_outer": 45,
    "mouth_right": 48, "mouth_left": 54, "upper_lip": 51, "lower_lip": 57,
}


def landmark_index(name: str) -> int:
    """iBUG-68 index of a landmark name."""
    if name in LANDMARKS:
        return LANDMARKS[name]
    if name.startswith("lm68_") and name[5:].isdigit() and 0 <= int(name[5:]) < 68:
        return int(name[5:])
    raise MeshError(f"unknown landmark {name!r}; expected one of {', '.join(LANDMARKS)} or lm68_0..lm68_67")


def parse_landmarks(data: object, where: str = "landmarks") -> dict[str, np.ndarray]:
    """{name: (3,) point} from the JSON forms above; checks names, shapes and count."""
    if isinstance(data, list):
        try:
            data = {str(d["name"]): d["point"] for d in data}
        except (TypeError, KeyError):
            raise MeshError(f"{where}: a landmark list must hold {{\"name\": ..., \"point\": [x, y, z]}} items") from None
    if not isinstance(data, dict):
        raise MeshError(f"{where}: expected an object of name -> [x, y, z]")
    out = {}
    for name, point in data.items():
        landmark_index(str(name))
        p = np.asarray(point, np.float64).ravel()
        if p.shape != (3,) or not np.isfinite(p).all():
            raise MeshError(f"{where}: landmark {name!r} must be three finite numbers, got {point!r}")
        out[str(name)] = p
    if len(out) < 3:
        raise MeshError(f"{where}: {len(out)} landmark(s) given; at least 3 are needed to fix the pose")
    return out


def load_landmarks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and check a landmarks JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MeshError(f"{path}: no such landmarks file") from None
    except (OSError, ValueError) as err:
        raise MeshError(f"{path}: not a readable JSON file ({err})") from None
    return parse_landmarks(data, str(path))


def landmarks_path(mesh_path: str | os.PathLike) -> Path:
    """Where the landmarks of a registered mesh live: ``neutral.obj`` -> ``neutral.landmarks.json``."""
    p = Path(mesh_path)
    return p.with_name(p.stem + LANDMARKS_SUFFIX)


def save_landmarks(landmarks: dict[str, np.ndarray], path: str | os.PathLike) -> Path:
    """Write ``{name: [x, y, z]}`` (the scan's own coordinates and units), readable by ``load_landmarks``."""
    path = Path(path)
    data = {name: [float(c) for c in np.asarray(p, np.float64).ravel()] for name, p in landmarks.items()}
    return write_text(path, json.dumps(data, indent=1))
