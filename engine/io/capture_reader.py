"""Opening an HMC capture folder: validate all of it, then lock-step access to its cameras and arrays.

Everything is validated when a capture is opened (capture.json against engine.io.capture_schema,
the camera files, the shape, dtype and finiteness of every .npy array), so a bad file fails at once
with a message naming the file and field at fault.
"""
from __future__ import annotations

import math
import operator
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np

from engine.errors import CaptureError
from engine.io.capture_schema import (ARRAYS, META_FILE, PARTIAL_MARK, CaptureMeta,
                                      read_meta, tail_matches, vertex_dim)
from engine.io.capture_streams import open_streams


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
        if a.ndim != 1 + len(spec.tail) or a.shape[0] != T or not tail_matches(a.shape[1:],
                                                                                 spec.tail, V):
            dims = ", ".join(["T", *("V" if t == "V" else "*" if t is None else str(t)
                                     for t in spec.tail)])
            notes = f"T={T} from {META_FILE} field 'frame_count'"
            notes += f", V={V} from {v_source}" if "V" in spec.tail and V is not None else ""
            raise CaptureError(f"{file}: shape is {a.shape}, expected ({dims}) with {notes}")
        if V is None and "V" in spec.tail:
            V, v_source = vertex_dim(a.shape[1:], spec.tail), file.name
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
        blendshapes, gaze = self.blendshapes, self.gaze
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
    streams = open_streams(path, meta)
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


T = TypeVar("T")
R = TypeVar("R")


def decode_in_threads(fn: Callable[[T], R], items: Iterable[T], jobs: int | None = None) -> Iterator[R]:
    """`fn` over `items` (typically opening and decoding one capture each) on `jobs` threads
    (default: the CPU count, at most 16), results in order, at most 2 * jobs ahead of the consumer.

    Threads suffice because OpenCV decodes with the GIL released; opening a capture's three streams
    costs more than decoding a short capture's frames, so one capture at a time left the other
    cores idle (tens of thousands of frames took minutes to load). The bounded look-ahead keeps a
    consumer that handles one result at a time from holding every decoded capture at once."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    jobs = min(16, os.cpu_count() or 1) if jobs is None else jobs
    if jobs <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(jobs) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
