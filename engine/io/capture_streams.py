"""The three camera streams of a capture: FFV1 videos or PNG folders, with frame-exact random access."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engine.errors import CaptureError
from engine.io.capture_schema import CAMERA_NAMES, META_FILE, CaptureMeta


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


def open_streams(path: Path, meta: CaptureMeta) -> list[_VideoStream | _PngStream]:
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
