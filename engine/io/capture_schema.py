"""The HMC capture's schema: what capture.json holds and which per-frame .npy arrays a capture may have.

A capture folder holds the three headset-camera streams (engine.io.capture_streams), their
calibration and provenance in `capture.json` (this file), and optional per-frame ground truth as
`.npy` arrays (`ARRAYS`). Every field is checked when read, so a bad file fails at once with a
message naming the file and field at fault instead of as a shape error deep inside training or
the viewer. Opening: engine.io.capture_reader; writing: engine.io.capture_writer.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.errors import CaptureError

SCHEMA_VERSION = 1
CAMERA_NAMES = ("left_eye", "right_eye", "mouth")
MIRRORED_CAMERAS = (1, 0, 2)  # which camera sees each view of the mirrored face: the eye cameras swap
STORAGES = ("ffv1", "png")
META_FILE = "capture.json"
PARTIAL_MARK = ".partial-"
CODE_DIM = 256


@dataclass(frozen=True)
class _ArraySpec:
    """Per-frame shape of an optional array: ints fixed, None free, "V" the vertex count."""

    keyword: str  # CaptureWriter.append keyword for one frame of it
    tail: tuple
    dtype: Any
    mmap: bool = False  # large arrays are memory-mapped rather than read whole


ARRAYS = {
    "meshes": _ArraySpec("mesh", ("V", 3), np.float32, mmap=True),
    "codes": _ArraySpec("code", (CODE_DIM,), np.float32),
    "expressions": _ArraySpec("expression", (None,), np.float32),
    "timestamps": _ArraySpec("timestamp", (), np.float64),
    "visibility": _ArraySpec("visibility", (3, "V"), np.uint8, mmap=True),
    "head_pose": _ArraySpec("head_pose", (4, 4), np.float32),
    "blendshapes": _ArraySpec("blendshapes", (None,), np.float32),
    "gaze": _ArraySpec("gaze", (2, 2), np.float32),
}

def tail_matches(shape: tuple, tail: tuple, vertex_count: int | None) -> bool:
    """Whether a per-frame shape fits an `_ArraySpec.tail` (V free when `vertex_count` is None)."""
    return len(shape) == len(tail) and all(
        t is None or (t == "V" and vertex_count in (None, s)) or s == t
        for s, t in zip(shape, tail))


def vertex_dim(shape: tuple, tail: tuple) -> int | None:
    """The vertex count a per-frame shape implies for its spec, if the spec has a V axis."""
    return next((s for s, t in zip(shape, tail) if t == "V"), None)


# --------------------------------------------------------------------------- JSON field checks

_REQUIRED = object()
_KINDS: dict[type, tuple[str, Callable[[Any], bool]]] = {
    int: ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    float: ("a finite number",
            lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)),
    str: ("a string", lambda v: isinstance(v, str)),
    dict: ("an object", lambda v: isinstance(v, dict)),
    list: ("a list", lambda v: isinstance(v, list)),
}


def short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(src: str, name: str, expected: str, value: Any) -> CaptureError:
    return CaptureError(f"{src}: field '{name}' must be {expected}, got {short_repr(value)}")


def _field(d: dict, key: str, kind: type, src: str, prefix: str = "", default: Any = _REQUIRED,
           check: Callable[[Any], bool] | None = None, expected: str = "") -> Any:
    """d[key] checked to be of `kind` (and pass `check`); errors name the file and dotted field."""
    name = prefix + key
    text, is_kind = _KINDS[kind]
    if key not in d:
        if default is not _REQUIRED:
            return default
        raise CaptureError(f"{src}: missing field '{name}' (expected {expected or text})")
    value = d[key]
    if not is_kind(value) or (check is not None and not check(value)):
        raise _bad(src, name, expected or text, value)
    return float(value) if kind is float else value


def _numbers(d: dict, key: str, shape: tuple, src: str, prefix: str) -> np.ndarray:
    value = _field(d, key, list, src, prefix)
    expected = f"a {'x'.join(map(str, shape))} list of finite numbers"
    try:
        a = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _bad(src, prefix + key, expected, value) from None
    if a.shape != shape or not np.isfinite(a).all():
        raise _bad(src, prefix + key, expected, value)
    return a


# --------------------------------------------------------------------------- metadata


@dataclass(eq=False)
class CameraCalib:
    """Pinhole plus radial-distortion model of one headset camera.

    R, t map head/world coordinates (mm) into this camera's frame, x_cam = R @ x + t, the
    convention the renderer and the 3D augmentation layer share. Distortion is radial only
    (k1, k2, k3), enough for the near-field HMC lenses.
    """

    name: str
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    dist: np.ndarray  # (3,) k1, k2, k3
    R: np.ndarray  # (3, 3) head/world -> camera
    t: np.ndarray  # (3,) mm

    def __post_init__(self) -> None:
        self.dist = np.asarray(self.dist, dtype=np.float64).reshape(3)
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(3)

    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsic matrix, as OpenCV's projection functions take it."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def to_dict(self) -> dict:
        return {"name": self.name, "width": int(self.width), "height": int(self.height),
                "fx": float(self.fx), "fy": float(self.fy), "cx": float(self.cx),
                "cy": float(self.cy), "dist": self.dist.tolist(), "R": self.R.tolist(),
                "t": self.t.tolist()}

    @classmethod
    def from_dict(cls, d: Any, src: str = META_FILE, prefix: str = "") -> CameraCalib:
        """Validated construction; `prefix` (e.g. "cameras[1].") makes errors name the field."""
        if not isinstance(d, dict):
            raise _bad(src, prefix.rstrip("."), "an object", d)
        positive = dict(check=lambda v: v > 0, expected="a positive number")
        R = _numbers(d, "R", (3, 3), src, prefix)
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-3) or np.linalg.det(R) < 0:
            raise _bad(src, prefix + "R", "a rotation matrix (orthonormal, det +1)", R.tolist())
        return cls(
            name=_field(d, "name", str, src, prefix, check=lambda v: v in CAMERA_NAMES,
                        expected=f"one of {list(CAMERA_NAMES)}"),
            width=_field(d, "width", int, src, prefix, **positive),
            height=_field(d, "height", int, src, prefix, **positive),
            fx=_field(d, "fx", float, src, prefix, **positive),
            fy=_field(d, "fy", float, src, prefix, **positive),
            cx=_field(d, "cx", float, src, prefix), cy=_field(d, "cy", float, src, prefix),
            dist=_numbers(d, "dist", (3,), src, prefix), R=R,
            t=_numbers(d, "t", (3,), src, prefix))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CameraCalib) and self.to_dict() == other.to_dict()


@dataclass(frozen=True)
class TopologyRef:
    """Which mesh topology meshes.npy uses, so a model trained on another one is caught early."""

    name: str
    vertex_count: int
    hash: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any, src: str = META_FILE, prefix: str = "topology.") -> TopologyRef:
        if not isinstance(d, dict):
            raise _bad(src, prefix.rstrip("."), "an object", d)
        return cls(name=_field(d, "name", str, src, prefix),
                   vertex_count=_field(d, "vertex_count", int, src, prefix,
                                       check=lambda v: v > 0, expected="a positive integer"),
                   hash=_field(d, "hash", str, src, prefix))


@dataclass(eq=False)
class CaptureMeta:
    """Everything in capture.json: who, which headset, timing, calibration and provenance."""

    subject_id: str
    headset_id: str
    session_id: str
    fps: float
    frame_count: int
    image_size: tuple[int, int]  # (H, W) of every camera image
    cameras: list[CameraCalib]  # cam0 left eye, cam1 right eye, cam2 mouth
    storage: str = "ffv1"
    provenance: dict = field(default_factory=dict)  # generator, seed, config, ...
    topology: TopologyRef | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        d = {"schema_version": int(self.schema_version), "subject_id": self.subject_id,
             "headset_id": self.headset_id, "session_id": self.session_id,
             "fps": float(self.fps), "frame_count": int(self.frame_count),
             "image_size": [int(s) for s in self.image_size], "storage": self.storage,
             "cameras": [c.to_dict() for c in self.cameras], "provenance": self.provenance}
        if self.topology is not None:
            d["topology"] = self.topology.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Any, src: str = META_FILE) -> CaptureMeta:
        """Validated construction; every error names `src` and the field at fault."""
        if not isinstance(d, dict):
            raise CaptureError(f"{src}: must hold a JSON object, got {type(d).__name__}")
        version = _field(d, "schema_version", int, src)
        if version != SCHEMA_VERSION:
            raise _bad(src, "schema_version", f"{SCHEMA_VERSION} (the format this version reads)",
                       version)
        size = _field(d, "image_size", list, src,
                      check=lambda v: len(v) == 2 and all(_KINDS[int][1](s) and s > 0 for s in v),
                      expected="[height, width] as two positive integers")
        cams = _field(d, "cameras", list, src, check=lambda v: len(v) == 3,
                      expected="a list of 3 cameras (left_eye, right_eye, mouth)")
        cameras = [CameraCalib.from_dict(c, src, f"cameras[{i}].") for i, c in enumerate(cams)]
        for i, cam in enumerate(cameras):
            if cam.name != CAMERA_NAMES[i]:
                raise _bad(src, f"cameras[{i}].name", repr(CAMERA_NAMES[i]), cam.name)
            if (cam.height, cam.width) != tuple(size):
                raise CaptureError(f"{src}: field 'cameras[{i}]' is {cam.width}x{cam.height} "
                                   f"(width x height) but 'image_size' is {size} ([H, W])")
        topology = d.get("topology")
        return cls(
            subject_id=_field(d, "subject_id", str, src),
            headset_id=_field(d, "headset_id", str, src),
            session_id=_field(d, "session_id", str, src),
            fps=_field(d, "fps", float, src, check=lambda v: v > 0, expected="a positive number"),
            frame_count=_field(d, "frame_count", int, src, check=lambda v: v > 0,
                               expected="a positive integer"),
            image_size=(size[0], size[1]), cameras=cameras,
            storage=_field(d, "storage", str, src, check=lambda v: v in STORAGES,
                           expected=f"one of {list(STORAGES)}"),
            provenance=_field(d, "provenance", dict, src, default={}),
            topology=None if topology is None else TopologyRef.from_dict(topology, src),
            schema_version=version)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CaptureMeta) and self.to_dict() == other.to_dict()


def read_meta(path: str | os.PathLike) -> CaptureMeta:
    """Reads and validates only capture.json: cheap, for listing datasets without opening videos."""
    path = Path(path)
    if not path.is_dir():
        raise CaptureError(f"{path}: no capture folder here (expected a folder with {META_FILE})")
    file = path / META_FILE
    if not file.is_file():
        raise CaptureError(f"{file}: missing; a capture folder must contain {META_FILE}")
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CaptureError(f"{file}: not valid JSON at line {e.lineno}, column {e.colno}: "
                           f"{e.msg}") from None
    except UnicodeDecodeError as e:
        raise CaptureError(f"{file}: not UTF-8 text (byte {e.start})") from None
    return CaptureMeta.from_dict(d, str(file))
