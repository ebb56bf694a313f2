"""Where HMC frames come from: a recorded capture, three live cameras, or the synthetic world.

Every source answers ``read() -> SourceFrame``: the three views (left eye, right eye, mouth) as
gray uint8 images, each ``None`` while that camera has nothing to show, the frame index and time,
the ground-truth mesh when the source knows it, and one ``CameraState`` per camera, the line the
GUI prints on each feed ("live 30 fps", "no signal", "reconnecting…", "dropped 4").

Recorded sources have a length and ``seek``; ``read`` returns ``None`` after the last frame (the
player decides whether to loop). Live sources never end: ``read`` waits up to ``timeout`` for
news and then answers anyway, so a caller always learns about a dead camera instead of blocking.

Live cameras (OpenCV device indices or stream URLs such as the MJPEG a DIY headset serves over
HTTP) are each read by their own thread that reconnects with exponential backoff, so a camera
that stops, stalls or drops frames only changes its state; it recovers on its own when it
returns. Rotation and flip are applied as frames arrive; the crop ROI is the inference engine's
business (``InferenceEngine.set_rois``) so the views can still show the whole image.

No Qt here: the app's session runs sources in its worker thread. A synthetic source renders with
a GL context bound to the thread that created it, so create, read and close it in one thread.
"""
from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence
from urllib.parse import urlsplit

import numpy as np

from engine.errors import CaptureError, SourceError
from engine.synth.identity import identity_index

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # quiet libav's "connection refused" lines

import cv2  # noqa: E402  (after the log-level environment)

CAMERA_LABELS = ("left eye", "right eye", "mouth")
ROTATIONS = (0, 90, 180, 270)
Images = np.ndarray | list[np.ndarray | None]
Roi = tuple[int, int, int, int]


@dataclass(frozen=True)
class CameraState:
    """What one feed is doing, in the words the GUI shows."""

    ok: bool
    text: str
    fps: float = 0.0
    dropped: int = 0


LIVE = CameraState(True, "live")
RECORDED = CameraState(True, "recorded")


@dataclass
class SourceFrame:
    """One read: three views (``None`` where a camera has no picture), time, optional truth."""

    images: Images
    index: int
    timestamp: float
    ground_truth: np.ndarray | None = None
    camera_states: tuple[CameraState, ...] = (LIVE, LIVE, LIVE)
    fresh: bool = True  # False when a live source timed out without any new picture

    @property
    def complete(self) -> bool:
        """All three views are present (inference needs all of them)."""
        return all(img is not None for img in self.images)


class FrameSource(Protocol):
    """The interface the session's frame loop drives."""

    kind: str  # "capture" | "cameras" | "synthetic"
    name: str
    live: bool
    fps: float
    subject_id: str | None
    headset_id: str | None

    def read(self, timeout: float = 0.5) -> SourceFrame | None: ...

    def seek(self, index: int) -> None: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- recorded captures

GT_CACHE_FRAMES = 512  # ~46 MB of 7,492-vertex meshes

class CaptureSource:
    """A capture folder played frame by frame; ground truth from its meshes.npy when present."""

    kind = "capture"
    live = False

    def __init__(self, path: str | os.PathLike) -> None:
        from engine.io.capture_reader import open_capture
        self.capture = open_capture(path)
        meta = self.capture.meta
        self.path = Path(path)
        self.name = self.path.name
        self.fps = float(meta.fps)
        self.subject_id: str | None = meta.subject_id
        self.headset_id: str | None = meta.headset_id
        self.position = 0
        self._truth: dict[int, np.ndarray] = {}  # computed ground truth, kept for looped playback

    def __len__(self) -> int:
        return len(self.capture)

    def _ground_truth(self, i: int) -> np.ndarray | None:
        """Frame i's mesh. Compact ground truth is recomputed from the face model (a few ms a frame,
        paid again on every loop of a capture): the first GT_CACHE_FRAMES are kept, read-only."""
        meshes = self.capture.meshes
        if meshes is None:
            return None
        if isinstance(meshes, np.ndarray):  # meshes.npy, memory-mapped: reading is cheap
            return np.array(meshes[i], np.float32)
        mesh = self._truth.get(i)
        if mesh is None:
            mesh = np.array(meshes[i], np.float32)
            mesh.setflags(write=False)
            if len(self._truth) < GT_CACHE_FRAMES:
                self._truth[i] = mesh
        return mesh

    @property
    def has_ground_truth(self) -> bool:
        return self.capture.meshes is not None

    def seek(self, index: int) -> None:
        """Make ``index`` the next frame read; out-of-range indices are an error."""
        if not 0 <= index < len(self):
            raise SourceError(f"{self.name}: frame {index} is outside 0..{len(self) - 1}")
        self.position = int(index)

    def read(self, timeout: float = 0.5) -> SourceFrame | None:
        """The frame at ``position`` (then advance); None after the last frame."""
        i = self.position
        if i >= len(self):
            return None
        images = self.capture.frame(i)
        stamps = self.capture.timestamps
        self.position = i + 1
        return SourceFrame(images, i, float(stamps[i]) if stamps is not None else i / self.fps,
                           self._ground_truth(i), (RECORDED, RECORDED, RECORDED))

    def close(self) -> None:
        self.capture.close()


# --------------------------------------------------------------------------- synthetic live

class SyntheticSource:
    """The synthetic HMC world rendered live at ``fps``, with ground truth (create/read/close in one thread)."""

    kind = "synthetic"
    live = True

    def __init__(self, subject: str | int = 0, seed: int = 0, fps: float | None = None,
                 paced: bool = True, **stream_args: Any) -> None:
        from engine.synth.stream import SyntheticStream
        self.stream = SyntheticStream(identity_index(subject), seed, **stream_args)
        self.fps = float(fps or self.stream.cfg.fps)
        self.paced = paced
        self.subject_id: str | None = self.stream.subject_id
        self.headset_id: str | None = self.stream.headset.headset_id
        self.name = f"synthetic {self.subject_id} (seed {seed})"
        self._start: float | None = None

    @property
    def neutral(self) -> np.ndarray:
        """The subject's neutral mesh (V, 3) mm in the model topology."""
        return np.asarray(self.stream.neutral, np.float32)

    def seek(self, index: int) -> None:
        raise SourceError("a live source cannot seek")

    def read(self, timeout: float = 0.5) -> SourceFrame | None:
        """Render the next frame, waiting for its time slot when paced (a camera cannot run ahead)."""
        now = time.perf_counter()
        if self._start is None:
            self._start = now
        due = self._start + self.stream.index / self.fps
        if self.paced and due > now:
            time.sleep(min(due - now, timeout))
        elif self.paced and now - due > 1.0:  # fell far behind (paused, slow machine): restart the clock
            self._start = now - self.stream.index / self.fps
        f = self.stream.next()
        return SourceFrame(f.images, f.index, f.timestamp, np.asarray(f.mesh, np.float32), (LIVE, LIVE, LIVE))

    def close(self) -> None:
        self.stream.close()


# --------------------------------------------------------------------------- live cameras

@dataclass
class CameraSettings:
    """One headset camera: where to read it and how to turn its picture upright."""

    url: str  # an OpenCV device index written as digits ("0") or a stream URL
    rotate: int = 0  # degrees clockwise: 0, 90, 180, 270
    flip: bool = False  # mirror left-right (after rotating)
    roi: Roi | None = None  # crop (x, y, w, h) for inference, in upright-image pixels

    def __post_init__(self) -> None:
        if self.rotate not in ROTATIONS:
            raise SourceError(f"camera {self.url!r}: rotate must be one of {ROTATIONS}, got {self.rotate}")
        check_camera_url(self.url)

    def target(self) -> int | str:
        """What cv2.VideoCapture opens: an int device index or the URL string."""
        text = str(self.url).strip()
        return int(text) if text.isdigit() else text

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "rotate": self.rotate, "flip": self.flip,
                "roi": None if self.roi is None else list(self.roi)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CameraSettings:
        roi = d.get("roi")
        return cls(str(d.get("url", "")), int(d.get("rotate", 0)), bool(d.get("flip", False)),
                   None if roi is None else tuple(int(v) for v in roi))  # type: ignore[arg-type]


STREAM_SCHEMES = ("http", "https", "rtsp", "rtsps", "rtmp", "udp", "tcp", "srt")


def check_camera_url(url: str) -> None:
    """Refuse camera "URLs" that would make FFmpeg read local files or run other protocols.

    A camera is a device index ("0"), a V4L2 device (/dev/video2) or a network stream; FFmpeg
    would also open file:, concat:, data:, pipe: and plain paths, which turns a shared profile
    into a way to read or probe files on this machine. Empty means "not set" (checked on start).
    """
    text = str(url).strip()
    if not text or text.isdigit() or re.fullmatch(r"/dev/video\d+", text):
        return
    scheme = urlsplit(text).scheme.lower()
    if scheme not in STREAM_SCHEMES:
        raise SourceError(f"camera {text!r}: expected a device index (0), a /dev/videoN device or "
                          f"a stream URL ({', '.join(s + '://' for s in STREAM_SCHEMES)}); "
                          f"{'scheme ' + repr(scheme) if scheme else 'a file path'} is refused")


def upright(image: np.ndarray, rotate: int, flip: bool) -> np.ndarray:
    """Gray uint8 (H, W) from a camera picture, rotated clockwise by ``rotate`` then mirrored."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    codes = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    if rotate in codes:
        image = cv2.rotate(image, codes[rotate])
    if flip:
        image = cv2.flip(image, 1)
    return np.ascontiguousarray(image, np.uint8)


@dataclass
class _Latest:
    image: np.ndarray | None = None
    seq: int = 0
    time: float = 0.0
    intervals: list[float] = field(default_factory=list)


class CameraReader(threading.Thread):
    """Reads one camera in its own thread; keeps only the latest picture; reconnects with backoff.

    ``stall_s``: no picture for this long means "no signal". ``read_timeout_s`` bounds how long
    OpenCV may block on a dead stream. Drops are counted from gaps in the frame clock (a gap of
    k expected intervals is k - 1 lost frames) and from failed reads that recover.
    """

    def __init__(self, cam: int, settings: CameraSettings, wake: threading.Condition, stall_s: float = 1.0,
                 read_timeout_s: float = 1.5, backoff_s: tuple[float, float] = (0.25, 4.0)) -> None:
        super().__init__(name=f"camera-{cam}", daemon=True)
        self.cam, self.settings, self._wake = cam, settings, wake
        self.stall_s, self.read_timeout_s, self.backoff_s = stall_s, read_timeout_s, backoff_s
        self._halt = threading.Event()
        self._latest = _Latest()
        self._phase = "connecting…"
        self._dropped = 0
        self._last_drop = -1e9

    # ----- the thread
    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        delay = self.backoff_s[0]
        while not self._halt.is_set():
            cap = self._open()
            if cap is None:
                self._phase = "no signal · reconnecting…"
                self._halt.wait(delay)
                delay = min(delay * 2, self.backoff_s[1])
                continue
            delay = self.backoff_s[0]
            self._phase = "live"
            self._pump(cap)
            cap.release()
            if not self._halt.is_set():
                self._phase = "no signal · reconnecting…"
                self._halt.wait(self.backoff_s[0])

    def _open(self) -> Any:
        target = self.settings.target()
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.read_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000)]
        try:
            cap = (cv2.VideoCapture(target, cv2.CAP_ANY, params) if isinstance(target, int)
                   else cv2.VideoCapture(target, cv2.CAP_FFMPEG, params))
        except cv2.error:
            return None
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def _pump(self, cap: Any) -> None:
        """Read until the stream fails or we are stopped."""
        while not self._halt.is_set():
            ok, image = cap.read()
            if not ok or image is None:
                return
            try:
                frame = upright(image, self.settings.rotate, self.settings.flip)
            except cv2.error:
                self._count_drop(1)
                continue
            self._publish(frame)

    def _publish(self, frame: np.ndarray) -> None:
        now = time.monotonic()
        latest = self._latest
        if latest.seq:
            gap = now - latest.time
            latest.intervals = (latest.intervals + [gap])[-30:]
            expected = float(np.median(latest.intervals))
            if len(latest.intervals) >= 5 and expected > 0 and gap > 1.8 * expected and gap < self.stall_s:
                self._count_drop(int(round(gap / expected)) - 1)
        with self._wake:
            latest.image, latest.time = frame, now
            latest.seq += 1
            self._wake.notify_all()

    def _count_drop(self, n: int) -> None:
        if n > 0:
            self._dropped += n
            self._last_drop = time.monotonic()

    # ----- what the source asks
    def latest(self) -> tuple[np.ndarray | None, int]:
        """The newest picture (None when stale) and its sequence number."""
        latest = self._latest
        if latest.image is None or time.monotonic() - latest.time > self.stall_s:
            return None, latest.seq
        return latest.image, latest.seq

    def state(self) -> CameraState:
        """"live 30 fps", "dropped N", "no signal" (stalled), "no signal · reconnecting…" or "connecting…"."""
        latest, now = self._latest, time.monotonic()
        fresh = latest.image is not None and now - latest.time <= self.stall_s
        fps = 0.0
        if fresh and latest.intervals:
            fps = 1.0 / max(float(np.median(latest.intervals)), 1e-6)
        if fresh and now - self._last_drop < 2.0:
            return CameraState(False, f"dropped {self._dropped}", fps, self._dropped)
        if fresh:
            return CameraState(True, f"live {fps:.0f} fps" if fps else "live", fps, self._dropped)
        phase = self._phase if self._phase != "live" else "no signal"
        return CameraState(False, phase, 0.0, self._dropped)


class LiveCameraSource:
    """Three cameras (device indices or URLs), each in its own reader thread."""

    kind = "cameras"
    live = True

    def __init__(self, cameras: Sequence[CameraSettings], headset: str = "", fps: float = 30.0,
                 stall_s: float = 1.0, read_timeout_s: float = 1.5,
                 backoff_s: tuple[float, float] = (0.25, 4.0)) -> None:
        if len(cameras) != 3:
            raise SourceError(f"live input needs three cameras (left eye, right eye, mouth), got {len(cameras)}")
        for cam, settings in enumerate(cameras):
            if not str(settings.url).strip():
                raise SourceError(f"{CAMERA_LABELS[cam]} camera: no device index or URL given")
        self.settings = list(cameras)
        self.headset_id: str | None = headset or None
        self.subject_id: str | None = None
        self.name = f"live cameras ({headset})" if headset else "live cameras"
        self.fps = fps
        self._wake = threading.Condition()
        self.readers = [CameraReader(c, s, self._wake, stall_s, read_timeout_s, backoff_s)
                        for c, s in enumerate(self.settings)]
        self._seen = [0, 0, 0]
        self._index = 0
        self._start = time.monotonic()
        self.gather_s = 0.5 / fps  # after the first new picture, wait this long for the others
        for reader in self.readers:
            reader.start()

    @property
    def rois(self) -> list[Roi | None]:
        return [s.roi for s in self.settings]

    def seek(self, index: int) -> None:
        raise SourceError("a live source cannot seek")

    def _news(self) -> tuple[list[bool], list[bool]]:
        latest = [r.latest() for r in self.readers]
        new = [seq != seen for (_, seq), seen in zip(latest, self._seen)]
        alive = [img is not None for img, _ in latest]
        return new, alive

    def read(self, timeout: float = 0.5) -> SourceFrame | None:
        """The latest picture of each camera once every live camera has a new one (or soon after
        the first does); after ``timeout`` without news, the current state anyway (``fresh`` False)."""
        deadline = time.monotonic() + timeout
        first_new: float | None = None
        with self._wake:
            while True:
                new, alive = self._news()
                now = time.monotonic()
                if any(new) and first_new is None:
                    first_new = now
                if any(new) and all(n for n, a in zip(new, alive) if a):
                    break
                if first_new is not None and now - first_new >= self.gather_s:
                    break
                if now >= deadline:
                    break
                wait_until = deadline if first_new is None else min(deadline, first_new + self.gather_s)
                self._wake.wait(max(0.0, wait_until - now))
        latest = [r.latest() for r in self.readers]
        fresh = any(seq != seen for (_, seq), seen in zip(latest, self._seen))
        self._seen = [seq for _, seq in latest]
        if fresh:
            self._index += 1
        return SourceFrame([img for img, _ in latest], self._index, time.monotonic() - self._start, None,
                           tuple(r.state() for r in self.readers), fresh)

    def close(self) -> None:
        for reader in self.readers:
            reader.stop()
        with self._wake:
            self._wake.notify_all()
        for reader in self.readers:
            reader.join(timeout=3.0)


# --------------------------------------------------------------------------- from a spec

def open_source(spec: dict[str, Any], profile: Sequence[CameraSettings] | None = None) -> FrameSource:
    """A source from the GUI's spec dict (see widgets/source_panel.py):

    ``{"kind": "capture", "path"}``, ``{"kind": "cameras", "urls", "rotate", "flip", "headset"}``
    (``profile`` adds saved ROIs), ``{"kind": "synthetic", "subject", "seed"}``.
    """
    kind = spec.get("kind")
    if kind == "capture":
        path = str(spec.get("path", "")).strip()
        if not path:
            raise SourceError("no capture folder given")
        try:
            return CaptureSource(path)
        except CaptureError:
            raise
        except OSError as err:
            raise CaptureError(f"{path}: cannot be read ({err.strerror or err})") from err
    if kind == "cameras":
        urls = list(spec.get("urls", []))
        if len(urls) != 3:
            raise SourceError(f"live input needs three camera URLs or device indices, got {len(urls)}")
        rotate = list(spec.get("rotate", [0, 0, 0]))
        flip = list(spec.get("flip", [False] * 3))
        rois = [p.roi for p in profile] if profile else [None, None, None]
        cams = [CameraSettings(str(urls[c]), int(rotate[c]), bool(flip[c]), rois[c]) for c in range(3)]
        return LiveCameraSource(cams, str(spec.get("headset", "")), **spec.get("options", {}))
    if kind == "synthetic":
        return SyntheticSource(spec.get("subject", 0), int(spec.get("seed", 0)), paced=spec.get("paced", True))
    raise SourceError(f"unknown source kind {kind!r}; expected 'capture', 'cameras' or 'synthetic'")
