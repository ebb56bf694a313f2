"""Writing an HMC capture folder so that it appears at its path only when complete.

Writing goes to a hidden sibling folder that is renamed into place only when complete, so a
crash never leaves a half-written capture that looks valid.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from engine.errors import CaptureError
from engine.io.capture_schema import (ARRAYS, CAMERA_NAMES, META_FILE, PARTIAL_MARK, CaptureMeta,
                                      short_repr, tail_matches, vertex_dim)
from engine.io.capture_streams import open_streams


def _json_default(obj: Any) -> Any:
    """Lets provenance hold numpy values, paths and config dataclasses as they come."""
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"capture.json: cannot store {type(obj).__name__} {short_repr(obj)} in provenance")



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
            ok = tail_matches(a.shape, spec.tail, self._V)
            self._V = self._V or vertex_dim(a.shape, spec.tail)
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
        streams = open_streams(self._tmp, self.meta)
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
