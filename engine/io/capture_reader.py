"""The on-disk HMC capture: one folder per recorded (or synthesised) headset session.

A capture holds the three headset-camera streams (left eye, right eye, mouth) as lossless FFV1
videos or PNG folders, their calibration in `capture.json`, and optional per-frame ground truth
(meshes, avatar codes, expression weights, ...) as `.npy` arrays. Everything is validated when a
capture is opened, so a bad file fails at once with a message naming the file and field at fault
instead of as a shape error deep inside training or the viewer. Writing goes to a hidden sibling
folder that is renamed into place only when complete, so a crash never leaves a half-written
capture that looks valid.
"""
from __future__ import annotations

import dataclasses
import json
import math
import operator
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np

from engine.errors import CaptureError

SCHEMA_VERSION = 1
CAMERA_NAMES = ("left_eye", "right_eye", "mouth")
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


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(src: str, name: str, expected: str, value: Any) -> CaptureError:
    return CaptureError(f"{src}: field '{name}' must be {expected}, got {_short(value)}")


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


def _json_default(obj: Any) -> Any:
    """Lets provenance hold numpy values, paths and config dataclasses as they come."""
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"capture.json: cannot store {type(obj).__name__} {_short(obj)} in provenance")


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


# --------------------------------------------------------------------------- camera streams


def _fourcc(cap: cv2.VideoCapture) -> str:
    return int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("latin-1").lower()


class _VideoStream:
    """One camera's FFV1 video with frame-exact random access.

    Sequential reads are cheap. A jump seeks with CAP_PROP_POS_FRAMES, which is exact for FFV1
    (every frame is a key frame); that is checked once on open against a sequential decode, and a
    file where it fails falls back to decoding forward from the start.
    """

    def __init__(self, file: Path, frame_count: int, size: tuple[int, int]):
        self.file, self.n, self.size = file, frame_count, size
        self._cap, self._pos = self._open(), 0
        count = round(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if count != frame_count:
            raise CaptureError(f"{file}: holds {count} frames but {META_FILE} field 'frame_count' "
                               f"is {frame_count}")
        head = [self._next() for _ in range(min(2, frame_count))]
        self.first = head[0]
        self.seek_exact = _fourcc(self._cap) == "ffv1"
        if self.seek_exact:  # confirm the count by decoding: the last frame exists, no more after
            self._seek(frame_count - 1)
            self._next()
            if self._cap.read()[0]:
                raise CaptureError(f"{file}: holds more frames than {META_FILE} field "
                                   f"'frame_count' ({frame_count})")
            self._cap.release()
            self._cap, self._pos = self._open(), 0
            if frame_count > 1:
                self._seek(1)
                self.seek_exact = np.array_equal(self._next(), head[1])

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.file), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            raise CaptureError(f"{self.file}: OpenCV cannot open this video (expected FFV1 .mkv)")
        return cap

    def _seek(self, i: int) -> None:
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, i)
        self._pos = i

    def _next(self) -> np.ndarray:
        ok, img = self._cap.read()
        if not ok:
            raise CaptureError(f"{self.file}: cannot decode frame {self._pos} ({META_FILE} field "
                               f"'frame_count' is {self.n})")
        img = img if img.ndim == 2 else img[..., 0]  # gray comes back as 3 equal channels
        if img.shape != self.size:
            raise CaptureError(f"{self.file}: frame {self._pos} is {img.shape[0]}x{img.shape[1]} "
                               f"but {META_FILE} field 'image_size' is {list(self.size)}")
        self._pos += 1
        return img

    def read(self, i: int) -> np.ndarray:
        if i != self._pos:
            if self.seek_exact:
                self._seek(i)
            else:
                if i < self._pos:
                    self._cap.release()
                    self._cap, self._pos = self._open(), 0
                while self._pos < i:
                    self._next()
        return self._next()

    def close(self) -> None:
        self._cap.release()


class _PngStream:
    """One camera's PNG folder (cam{c}/000000.png ...): random access is just a file read."""

    def __init__(self, folder: Path, frame_count: int, size: tuple[int, int]):
        self.folder, self.size = folder, size
        names = {p.name for p in folder.glob("*.png")}
        missing = [i for i in range(frame_count) if f"{i:06d}.png" not in names]
        if missing:
            raise CaptureError(f"{folder / f'{missing[0]:06d}.png'}: missing ({len(missing)} of "
                               f"{frame_count} frames missing; {META_FILE} field 'frame_count' "
                               f"is {frame_count})")
        if len(names) != frame_count:
            raise CaptureError(f"{folder}: holds {len(names)} PNG frames but {META_FILE} field "
                               f"'frame_count' is {frame_count}")
        self.first = self.read(0)

    def read(self, i: int) -> np.ndarray:
        file = self.folder / f"{i:06d}.png"
        img = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise CaptureError(f"{file}: cannot read this PNG")
        if img.dtype != np.uint8 or img.shape != self.size:
            raise CaptureError(f"{file}: is {img.dtype} {img.shape}, expected a uint8 gray image "
                               f"of {META_FILE} field 'image_size' {list(self.size)}")
        return img

    def close(self) -> None:
        pass


def _open_streams(path: Path, meta: CaptureMeta) -> list[_VideoStream | _PngStream]:
    streams: list = []
    try:
        for c, name in enumerate(CAMERA_NAMES):
            where = path / (f"cam{c}.mkv" if meta.storage == "ffv1" else f"cam{c}")
            if not where.exists():
                raise CaptureError(f"{where}: camera file for cam{c} ({name}) is missing "
                                   f"({META_FILE} field 'storage' is '{meta.storage}')")
            kind = _VideoStream if meta.storage == "ffv1" else _PngStream
            streams.append(kind(where, meta.frame_count, meta.image_size))
    except BaseException:
        for s in streams:
            s.close()
        raise
    return streams


# --------------------------------------------------------------------------- array checks


def _tail_matches(shape: tuple, tail: tuple, vertex_count: int | None) -> bool:
    return len(shape) == len(tail) and all(
        t is None or (t == "V" and vertex_count in (None, s)) or s == t
        for s, t in zip(shape, tail))


def _vertex_dim(shape: tuple, tail: tuple) -> int | None:
    return next((s for s, t in zip(shape, tail) if t == "V"), None)


def _first_nonfinite(a: np.ndarray) -> int | None:
    """Index of the first frame holding NaN/Inf, scanned in chunks so mmapped arrays stay cheap."""
    step = max(1, (1 << 24) // max(1, math.prod(a.shape[1:])))
    for s in range(0, len(a), step):
        chunk = np.asarray(a[s:s + step])
        ok = np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
        if not ok.all():
            return s + int(np.argmin(ok))
    return None


def _check_arrays(path: Path, meta: CaptureMeta) -> None:
    T = meta.frame_count
    V = meta.topology.vertex_count if meta.topology else None
    v_source = f"{META_FILE} field 'topology.vertex_count'"
    for name, spec in ARRAYS.items():
        file = path / f"{name}.npy"
        if not file.exists():
            continue
        try:
            a = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise CaptureError(f"{file}: not a readable .npy array ({e})") from None
        if not isinstance(a, np.ndarray):
            raise CaptureError(f"{file}: not a single .npy array")
        if a.ndim != 1 + len(spec.tail) or a.shape[0] != T or not _tail_matches(a.shape[1:],
                                                                                 spec.tail, V):
            dims = ", ".join(["T", *("V" if t == "V" else "*" if t is None else str(t)
                                     for t in spec.tail)])
            notes = f"T={T} from {META_FILE} field 'frame_count'"
            notes += f", V={V} from {v_source}" if "V" in spec.tail and V is not None else ""
            raise CaptureError(f"{file}: shape is {a.shape}, expected ({dims}) with {notes}")
        if V is None and "V" in spec.tail:
            V, v_source = _vertex_dim(a.shape[1:], spec.tail), file.name
        if spec.dtype == np.uint8:
            if a.dtype not in (np.uint8, np.bool_):
                raise CaptureError(f"{file}: dtype is {a.dtype}, expected uint8 or bool")
            continue
        if a.dtype.kind != "f":
            raise CaptureError(f"{file}: dtype is {a.dtype}, expected {np.dtype(spec.dtype)}")
        bad = _first_nonfinite(a)
        if bad is not None:
            raise CaptureError(f"{file}: frame {bad} contains NaN or Inf (first bad frame)")
    timestamps = path / "timestamps.npy"
    if timestamps.exists():
        back = np.flatnonzero(np.diff(np.load(timestamps)) < 0)
        if back.size:
            raise CaptureError(f"{timestamps}: time goes backwards at frame {back[0] + 1}")


# --------------------------------------------------------------------------- reader


class Capture:
    """An opened, validated HMC capture: lock-step access to the three cameras, lazy ground truth.

    Three decoders stay open so playback reads sequentially; not safe to share between threads.
    """

    def __init__(self, path: Path, meta: CaptureMeta, streams: list):
        self.path, self.meta, self._streams = path, meta, streams

    def __len__(self) -> int:
        return self.meta.frame_count

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for s in self._streams:
            s.close()

    def frame(self, i: int) -> np.ndarray:
        """The three camera images of frame i as (3, H, W) uint8, in any order of i."""
        i = operator.index(i)
        if not 0 <= i < len(self):
            raise IndexError(f"{self.path}: frame {i} out of range 0..{len(self) - 1}")
        out = np.empty((3, *self.meta.image_size), np.uint8)
        for c, stream in enumerate(self._streams):
            out[c] = stream.read(i)
        return out

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Frames start..stop-1 in order (the cheap, sequential way through a video)."""
        for i in range(start, len(self) if stop is None else min(stop, len(self))):
            yield self.frame(i)

    def load_all(self) -> np.ndarray:
        """All frames as one (T, 3, H, W) uint8 array; fine for short captures and tests."""
        out = np.empty((len(self), 3, *self.meta.image_size), np.uint8)
        for i, f in enumerate(self.frames()):
            out[i] = f
        return out

    def _load(self, name: str) -> np.ndarray | None:
        file = self.path / f"{name}.npy"
        if not file.exists():
            return None
        return np.load(file, mmap_mode="r" if ARRAYS[name].mmap else None, allow_pickle=False)

    @cached_property
    def meshes(self) -> np.ndarray | None:
        """(T, V, 3) float32 ground-truth meshes in mm: meshes.npy memory-mapped or, for a compact
        synthetic capture, recomputed on access from its coefficients (engine.synth.ground_truth)."""
        stored = self._load("meshes")
        return stored if stored is not None else self.compact_meshes

    @cached_property
    def compact_meshes(self) -> Any:
        """The meshes recomputed from identity weights (capture.json provenance), blendshapes.npy and
        gaze.npy, as a lazily indexed CompactMeshes; None when the capture lacks any of them."""
        from engine.synth.ground_truth import IDENTITY_FIELD, CompactMeshes
        weights = self.meta.provenance.get(IDENTITY_FIELD)
        blendshapes, gaze = self._load("blendshapes"), self._load("gaze")
        if weights is None or blendshapes is None or gaze is None:
            return None
        try:
            return CompactMeshes(np.asarray(weights, np.float32), blendshapes, gaze)
        except (ValueError, IndexError) as err:
            raise CaptureError(f"{self.path}: compact ground truth (capture.json provenance "
                               f"'{IDENTITY_FIELD}', blendshapes.npy, gaze.npy) is inconsistent: {err}")

    @cached_property
    def codes(self) -> np.ndarray | None:
        """(T, 256) float32 ground-truth avatar codes."""
        return self._load("codes")

    @cached_property
    def expressions(self) -> np.ndarray | None:
        """(T, E) float32 expression weights (synthetic captures only)."""
        return self._load("expressions")

    @cached_property
    def timestamps(self) -> np.ndarray | None:
        """(T,) float64 seconds."""
        return self._load("timestamps")

    @cached_property
    def visibility(self) -> np.ndarray | None:
        """(T, 3, V) uint8/bool per-camera vertex visibility, memory-mapped."""
        return self._load("visibility")

    @cached_property
    def head_pose(self) -> np.ndarray | None:
        """(T, 4, 4) float32 rigid head pose relative to the headset."""
        return self._load("head_pose")

    @cached_property
    def blendshapes(self) -> np.ndarray | None:
        """(T, E) float32 the person's own blendshape weights (synthetic captures only)."""
        return self._load("blendshapes")

    @cached_property
    def gaze(self) -> np.ndarray | None:
        """(T, 2, 2) float32 eye yaw/pitch in radians (synthetic captures only)."""
        return self._load("gaze")


def open_capture(path: str | os.PathLike) -> Capture:
    """Opens a capture folder after validating all of it; CaptureError names what is wrong."""
    path = Path(path)
    meta = read_meta(path)
    streams = _open_streams(path, meta)
    try:
        _check_arrays(path, meta)
    except BaseException:
        for s in streams:
            s.close()
        raise
    return Capture(path, meta, streams)


def list_captures(root: str | os.PathLike) -> list[Path]:
    """Capture folders (those holding capture.json) under a dataset folder, skipping hidden and
    unfinished `.partial-` folders."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and PARTIAL_MARK not in d)
        if META_FILE in filenames and PARTIAL_MARK not in os.path.basename(dirpath):
            found.append(Path(dirpath))
            dirnames[:] = []
    return sorted(found)


# --------------------------------------------------------------------------- writer


class CaptureWriter:
    """Writes one capture folder frame by frame; it appears at `path` only when complete.

    Images and per-frame arrays stream to disk as they come (videos through cv2.VideoWriter,
    arrays into pre-sized .npy memory maps, since frame_count is known up front) inside a hidden
    sibling folder `.<name>.partial-XXXX`. close() checks the frame count, re-reads the videos
    (FFV1 must give back the exact pixels) and renames the folder into place; an exception in the
    `with` block, or a failed close(), removes it instead and leaves `path` untouched.
    """

    def __init__(self, path: str | os.PathLike, meta: CaptureMeta, storage: str | None = None,
                 *, overwrite: bool = False):
        self.path, self._overwrite = Path(path), overwrite
        meta = dataclasses.replace(meta, storage=storage or meta.storage)
        self._json = json.dumps(meta.to_dict(), indent=2, default=_json_default) + "\n"
        self.meta = CaptureMeta.from_dict(json.loads(self._json), "CaptureMeta")  # fail early
        self._V = self.meta.topology.vertex_count if self.meta.topology else None
        self._check_target()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}{PARTIAL_MARK}",
                                          dir=self.path.parent))
        self._count, self._closed = 0, False
        self._arrays: dict[str, np.ndarray] = {}
        self._first: np.ndarray | None = None
        self._videos: list[cv2.VideoWriter] = []
        try:
            if self.meta.storage == "ffv1":
                self._videos = [self._open_video(self._tmp / f"cam{c}.mkv") for c in range(3)]
            else:
                for c in range(3):
                    (self._tmp / f"cam{c}").mkdir()
        except BaseException:
            self._discard()
            raise

    def _check_target(self) -> None:
        if not self.path.exists():
            return
        if not self._overwrite:
            raise CaptureError(f"{self.path}: already exists; pass overwrite=True to replace it")
        if not (self.path / META_FILE).is_file():
            raise CaptureError(f"{self.path}: exists and is not a capture folder; not replacing it")

    def _open_video(self, file: Path) -> cv2.VideoWriter:
        H, W = self.meta.image_size
        fourcc = cv2.VideoWriter_fourcc(*"FFV1")
        for is_color in (False, True):  # gray FFV1 when this OpenCV build allows it
            writer = cv2.VideoWriter(str(file), cv2.CAP_FFMPEG, fourcc, self.meta.fps, (W, H),
                                     is_color)
            if writer.isOpened():
                self._color = is_color
                return writer
        raise CaptureError(f"{file}: OpenCV cannot write FFV1 video here; use storage='png'")

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._discard()

    def append(self, frames: Sequence[np.ndarray], *, mesh: np.ndarray | None = None,
               code: np.ndarray | None = None, expression: np.ndarray | None = None,
               timestamp: float | None = None, visibility: np.ndarray | None = None,
               head_pose: np.ndarray | None = None, blendshapes: np.ndarray | None = None,
               gaze: np.ndarray | None = None) -> None:
        """Adds one frame: 3 uint8 HxW images (left eye, right eye, mouth) and its ground truth.

        An array given for the first frame must be given for every frame, and only those.
        """
        if self._closed:
            raise CaptureError(f"{self.path}: writer already closed")
        i, T = self._count, self.meta.frame_count
        if i >= T:
            raise CaptureError(f"{self.path}: frame {i} appended but meta frame_count is {T}")
        images = self._check_images(frames, i)
        given = {name: v for name, v in zip(ARRAYS, (mesh, code, expression, timestamp,
                                                     visibility, head_pose, blendshapes, gaze))
                 if v is not None}
        if i > 0 and set(given) != set(self._arrays):
            raise CaptureError(f"{self.path}: frame {i} gives arrays {sorted(given)} but frame 0 "
                               f"gave {sorted(self._arrays)}; give the same ones for every frame")
        values = {name: self._check_value(name, v, i) for name, v in given.items()}
        for c, img in enumerate(images):
            if self.meta.storage == "ffv1":
                self._videos[c].write(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if self._color else img)
            elif not cv2.imwrite(str(self._tmp / f"cam{c}" / f"{i:06d}.png"), img):
                raise CaptureError(f"{self._tmp / f'cam{c}'}: cannot write frame {i} as PNG")
        for name, v in values.items():
            if i == 0:
                self._arrays[name] = np.lib.format.open_memmap(
                    self._tmp / f"{name}.npy", mode="w+", dtype=v.dtype, shape=(T, *v.shape))
            self._arrays[name][i] = v
        if i == 0:
            self._first = np.stack(images)
        self._count += 1

    def _check_images(self, frames: Sequence[np.ndarray], i: int) -> list[np.ndarray]:
        if len(frames) != 3:
            raise CaptureError(f"{self.path}: frame {i} has {len(frames)} images, expected 3 "
                               f"(left eye, right eye, mouth)")
        H, W = self.meta.image_size
        images = [np.ascontiguousarray(f) for f in frames]
        for c, img in enumerate(images):
            if img.dtype != np.uint8 or img.shape != (H, W):
                raise CaptureError(f"{self.path}: frame {i} cam{c} ({CAMERA_NAMES[c]}) is "
                                   f"{img.dtype} {img.shape}, expected uint8 ({H}, {W})")
        return images

    def _check_value(self, name: str, value: Any, i: int) -> np.ndarray:
        spec = ARRAYS[name]
        a = np.asarray(value)
        dtype = np.bool_ if a.dtype == np.bool_ and spec.dtype == np.uint8 else spec.dtype
        a = a.astype(dtype, copy=False)
        if name in self._arrays:
            expected = self._arrays[name].shape[1:]
            ok = a.shape == expected
        else:
            expected = tuple(self._V if t == "V" and self._V else t for t in spec.tail)
            ok = _tail_matches(a.shape, spec.tail, self._V)
            self._V = self._V or _vertex_dim(a.shape, spec.tail)
        if not ok:
            raise CaptureError(f"{self.path}: {spec.keyword} for frame {i} has shape {a.shape}, "
                               f"expected {expected} (None = any, V = vertex count)")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CaptureError(f"{self.path}: {spec.keyword} for frame {i} contains NaN or Inf")
        return a

    def close(self) -> Path:
        """Finishes the capture and moves it into place; on any failure nothing is left behind."""
        if self._closed:
            return self.path
        try:
            self._finish()
        except BaseException:
            self._discard()
            raise
        return self.path

    def _finish(self) -> None:
        self._release()
        T = self.meta.frame_count
        if self._count != T:
            raise CaptureError(f"{self.path}: {self._count} frames appended but meta frame_count "
                               f"is {T}; nothing was written")
        (self._tmp / META_FILE).write_text(self._json, encoding="utf-8")
        streams = _open_streams(self._tmp, self.meta)
        try:
            if not all(np.array_equal(s.first, f) for s, f in zip(streams, self._first)):
                raise CaptureError(f"{self.path}: frame 0 does not read back bit-exactly "
                                   f"(storage '{self.meta.storage}')")
        finally:
            for s in streams:
                s.close()
        self._check_target()
        if self.path.exists():  # overwrite: swap in, then drop the old capture
            old = self.path.with_name(f".{self.path.name}{PARTIAL_MARK}old-{uuid.uuid4().hex[:8]}")
            os.rename(self.path, old)
            os.rename(self._tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(self._tmp, self.path)
        self._closed = True

    def _release(self) -> None:
        for w in self._videos:
            w.release()
        self._videos = []
        for a in self._arrays.values():
            a.flush()
        self._arrays = {}

    def _discard(self) -> None:
        self._release()
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._closed = True


def write_capture(path: str | os.PathLike, meta: CaptureMeta, frames: np.ndarray, *,
                  storage: str | None = None, overwrite: bool = False,
                  **arrays: np.ndarray | None) -> Path:
    """Writes a whole capture at once: frames (T, 3, H, W) uint8 plus any of ARRAYS by file name
    (meshes=, codes=, expressions=, timestamps=, visibility=, head_pose=), each with T rows."""
    unknown = set(arrays) - set(ARRAYS)
    if unknown:
        raise TypeError(f"write_capture: unknown arrays {sorted(unknown)}; known: {list(ARRAYS)}")
    arrays = {name: a for name, a in arrays.items() if a is not None}
    for name, a in arrays.items():
        if len(a) != len(frames):
            raise CaptureError(f"{path}: {name} has {len(a)} rows but frames has {len(frames)}")
    with CaptureWriter(path, meta, storage, overwrite=overwrite) as writer:
        for i, images in enumerate(frames):
            writer.append(tuple(images), **{ARRAYS[n].keyword: a[i] for n, a in arrays.items()})
    return Path(path)
