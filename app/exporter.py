"""Export of a driven sequence: OBJ/PLY per frame, one NPZ, or a video of the 3D viewer.

The exporter walks the capture through the session itself (seek frame k, wait for its frame to be
inferred in the worker and drawn, take it, ask for k + 1), so the export holds exactly what the
studio shows. Files are written by a background writer thread; the GUI thread only grabs the
viewer's picture for videos (GL lives there). Videos use codecs every OpenCV wheel has: mp4v in
.mp4, MJPG in .mkv/.avi (there is no H.264 in the wheels).
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PySide6.QtCore import QObject, Signal

from app.worker_protocol import FrameBundle
from app.logs import report
from app.session import Session
from engine.io.atomic import atomic_path
from engine.io.mesh import write_obj, write_ply

MESH_FORMATS = ("obj", "ply", "npz")
VIDEO_FORMATS = ("mp4", "mkv", "avi")
FOURCC = {"mp4": "mp4v", "mkv": "MJPG", "avi": "MJPG"}


@dataclass
class ExportRequest:
    """What to write: ``path`` is a folder for obj/ply sequences, else a file."""

    path: Path
    fmt: str
    start: int
    stop: int  # exclusive
    fps: float = 30.0
    faces: np.ndarray | None = None
    uvs: np.ndarray | None = None
    subject: str = ""

    def __post_init__(self) -> None:
        if self.fmt not in MESH_FORMATS + VIDEO_FORMATS:
            raise ValueError(f"unknown export format {self.fmt!r}; expected one of {MESH_FORMATS + VIDEO_FORMATS}")
        if self.stop <= self.start:
            raise ValueError(f"empty frame range {self.start}..{self.stop - 1}")


@dataclass
class _Collected:
    frames: list[int] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    meshes: list[np.ndarray] = field(default_factory=list)
    codes: list[np.ndarray] = field(default_factory=list)
    truth: list[np.ndarray] = field(default_factory=list)
    targets: dict[str, list[np.ndarray]] = field(default_factory=dict)


class SequenceExporter(QObject):
    """Steps the session through a frame range and writes each driven frame (see module doc)."""

    progress = Signal(int, int, str)
    finished_with = Signal(str)
    failed = Signal(str)

    def __init__(self, session: Session, request: ExportRequest,
                 grab: Callable[[], np.ndarray] | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session, self.request, self.grab = session, request, grab
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-writer")
        self._writes: list[Future] = []
        self._collected = _Collected()
        self._video: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._next = request.start
        self._expected = 0
        self._cancelled = False
        self._done = False
        self._was_playing = session.playing

    # ----- control
    def start(self) -> None:
        req = self.request
        if req.fmt in ("obj", "ply"):
            req.path.mkdir(parents=True, exist_ok=True)
        else:
            req.path.parent.mkdir(parents=True, exist_ok=True)
        if req.fmt in VIDEO_FORMATS and self.grab is None:
            raise ValueError("a video export needs the viewer to grab pictures from")
        self.session.pause()
        self.session.frame_ready.connect(self._on_frame)
        self.session.error.connect(self._on_error)
        self._ask()

    def cancel(self) -> None:
        self._cancelled = True
        if not self._done:
            self._finish()

    # ----- per frame
    def _ask(self) -> None:
        self._expected = self.session.seek(self._next)

    def _on_frame(self, bundle: FrameBundle) -> None:
        if self._done or bundle.request != self._expected:
            return
        if bundle.mesh is None:
            self._fail("frame {0} could not be driven (is a model loaded?)".format(bundle.index))
            return
        try:
            self._write(bundle)
        except Exception as err:
            self._fail(report(err, "export"))
            return
        done = self._next - self.request.start + 1
        total = self.request.stop - self.request.start
        self.progress.emit(done, total, f"frame {bundle.index} ({done} of {total})")
        self._next += 1
        if self._next >= self.request.stop or self._cancelled:
            self._finish()
        else:
            self._ask()

    def _on_error(self, message: str) -> None:
        if not self._done and ("inference" in message or "read" in message):
            self._fail(message)

    def _write(self, bundle: FrameBundle) -> None:
        req, k = self.request, bundle.index
        mesh = np.array(bundle.mesh, np.float32)
        if req.fmt == "obj":
            texture = None if bundle.texture is None else np.array(bundle.texture)
            self._submit(self._write_obj, req.path / f"frame_{k:06d}.obj", mesh, texture)
        elif req.fmt == "ply":
            self._submit(write_ply, req.path / f"frame_{k:06d}.ply", mesh, req.faces)
        elif req.fmt == "npz":
            c = self._collected
            c.frames.append(k)
            c.timestamps.append(bundle.timestamp)
            c.meshes.append(mesh)
            if bundle.code is not None:
                c.codes.append(np.asarray(bundle.code, np.float32))
            if bundle.ground_truth is not None:
                c.truth.append(np.asarray(bundle.ground_truth, np.float32))
            for name, (target_mesh, _tex) in bundle.targets.items():
                c.targets.setdefault(name, []).append(np.asarray(target_mesh, np.float32))
        else:
            rgb = self.grab()  # type: ignore[misc]
            if self._size is None:
                self._size = (rgb.shape[1] // 2 * 2, rgb.shape[0] // 2 * 2)
            self._submit(self._write_video_frame, rgb)

    def _submit(self, fn: Callable, *args) -> None:
        self._writes = [f for f in self._writes if not f.done() or f.exception()]
        self._writes.append(self._pool.submit(fn, *args))

    def _write_obj(self, path: Path, mesh: np.ndarray, texture: np.ndarray | None) -> None:
        png = None
        if texture is not None and self.request.uvs is not None:
            png = path.with_suffix(".png").name
            cv2.imwrite(str(path.with_suffix(".png")), np.clip(texture * 255 + 0.5, 0, 255).astype(np.uint8))
        write_obj(path, mesh, self.request.faces, self.request.uvs, png)  # type: ignore[arg-type]

    def _write_video_frame(self, rgb: np.ndarray) -> None:
        width, height = self._size  # type: ignore[misc]
        if self._video is None:
            self._video = cv2.VideoWriter(str(self.request.path), cv2.VideoWriter_fourcc(*FOURCC[self.request.fmt]),
                                          float(self.request.fps), (width, height))
            if not self._video.isOpened():
                raise OSError(f"{self.request.path}: OpenCV cannot write {self.request.fmt} video here")
        if (rgb.shape[1], rgb.shape[0]) != (width, height):
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        self._video.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))

    # ----- end
    def _finish(self) -> None:
        self._done = True
        self._disconnect()
        try:
            for f in self._writes:
                f.result()
            if self.request.fmt == "npz" and not self._cancelled:
                self._write_npz()
        except Exception as err:
            self._close_video()
            self._fail(report(err, "export"), finished=True)
            return
        finally:
            self._pool.shutdown(wait=True)
        self._close_video()
        if self._cancelled:
            self._discard()
            self._resume()
            self.failed.emit("Export cancelled; " + ("the partial sequence was removed." if self.request.fmt in
                                                     ("obj", "ply") else "nothing was written."))
            return
        count = self._next - self.request.start
        self._resume()
        self.finished_with.emit(f"Exported {count} frames to {self.request.path}")

    def _resume(self) -> None:
        if self._was_playing:
            self.session.play()

    def _write_npz(self) -> None:
        c, req = self._collected, self.request
        arrays: dict[str, np.ndarray] = {"frames": np.asarray(c.frames), "timestamps": np.asarray(c.timestamps),
                                         "meshes": np.stack(c.meshes), "subject": np.asarray(req.subject)}
        if req.faces is not None:
            arrays["faces"] = np.asarray(req.faces, np.int32)
        if len(c.codes) == len(c.meshes):
            arrays["codes"] = np.stack(c.codes)
        if len(c.truth) == len(c.meshes):
            arrays["ground_truth"] = np.stack(c.truth)
        for name, meshes in c.targets.items():
            if len(meshes) == len(c.meshes):
                arrays[f"target_{name}"] = np.stack(meshes)
        with atomic_path(req.path) as tmp:
            np.savez_compressed(tmp, **arrays)

    def _close_video(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None

    def _discard(self) -> None:
        """Remove what this export wrote (only that: the folder may hold the user's files)."""
        path = self.request.path
        if self.request.fmt in ("obj", "ply"):
            for k in range(self.request.start, self._next):
                for suffix in (".obj", ".ply", ".mtl", ".png"):
                    path.joinpath(f"frame_{k:06d}{suffix}").unlink(missing_ok=True)
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        elif self.request.fmt in VIDEO_FORMATS:
            path.unlink(missing_ok=True)

    def _fail(self, message: str, finished: bool = False) -> None:
        if not finished:
            self._done = True
            self._disconnect()
            for f in self._writes:
                f.exception()
            self._pool.shutdown(wait=True)
            self._close_video()
        self._resume()
        self.failed.emit(message)

    def _disconnect(self) -> None:
        for signal, slot in ((self.session.frame_ready, self._on_frame), (self.session.error, self._on_error)):
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):
                pass
