"""A stand-in headset: serves three camera feeds as MJPEG over HTTP, as DIY headset cameras do.

Lets the live-camera path be tried and tested without hardware: ``/cam0`` ``/cam1`` ``/cam2``
(left eye, right eye, mouth) stream ``multipart/x-mixed-replace`` JPEG frames at ``fps`` from a
recorded capture (looped) or from a moving test pattern. Tests stop and restart it to check that
the studio shows "no signal" and recovers, ``pause`` stalls the feeds without closing them, and
``drop_every`` skips frames to provoke the "dropped N" state.

    .venv/bin/python -m app.fake_headset resources/demo_capture --port 8080
"""
from __future__ import annotations

import argparse
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

BOUNDARY = "frame"
FrameFn = Callable[[int, int], np.ndarray]  # (camera, frame number) -> (H, W) uint8


def pattern_frames(size: tuple[int, int] = (96, 96)) -> FrameFn:
    """A moving gradient with a bright square per camera, so motion and camera identity show."""
    h, w = size
    ramp = np.linspace(0, 160, w, dtype=np.float32)[None, :].repeat(h, 0)

    def frame(cam: int, i: int) -> np.ndarray:
        img = (ramp + (i * 3) % 60).astype(np.uint8)
        x = (i * 2 + cam * w // 3) % (w - 12)
        img[h // 3: h // 3 + 12, x: x + 12] = 255
        return img
    return frame


def capture_frames(path: str | Path) -> FrameFn:
    """Frames of a recorded capture, looped (all decoded up front: captures for demos are short)."""
    from engine.io.capture_reader import open_capture
    with open_capture(path) as cap:
        frames = cap.load_all()
    return lambda cam, i: frames[i % len(frames), cam]


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        headset = self.server.headset
        path = self.path.strip("/")
        if path not in ("cam0", "cam1", "cam2"):
            self.send_error(404, "expected /cam0, /cam1 or /cam2")
            return
        cam = int(path[-1])
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        try:
            headset.stream(cam, self.wfile)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    headset: "FakeHeadset"


class FakeHeadset:
    """Three MJPEG feeds on one local HTTP port; ``start``/``stop`` may be repeated (same port)."""

    def __init__(self, frames: FrameFn | None = None, fps: float = 30.0, port: int = 0,
                 host: str = "127.0.0.1", quality: int = 90) -> None:
        self.frames = frames or pattern_frames()
        self.fps, self.host, self.port, self.quality = fps, host, port, quality
        self.paused = threading.Event()
        self.drop_every = 0  # >0: skip every n-th frame (a lossy link)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()

    def url(self, cam: int) -> str:
        return f"http://{self.host}:{self.port}/cam{cam}"

    @property
    def urls(self) -> list[str]:
        return [self.url(c) for c in range(3)]

    def start(self) -> FakeHeadset:
        server = _Server((self.host, self.port), _Handler)
        server.headset = self
        self.port = server.server_address[1]
        self._server = server
        self._running.set()
        self._thread = threading.Thread(target=server.serve_forever, name="fake-headset", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port and every open stream (a camera unplugged)."""
        self._running.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=3.0)
            self._thread = None

    def stream(self, cam: int, out) -> None:
        """Write JPEG parts at ``fps`` until stopped or the client leaves."""
        period = 1.0 / self.fps
        start, i = time.perf_counter(), 0
        while self._running.is_set():
            due = start + i * period
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            i += 1
            if self.paused.is_set() or (self.drop_every and i % self.drop_every == 0):
                continue
            ok, jpeg = cv2.imencode(".jpg", self.frames(cam, i), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                continue
            data = jpeg.tobytes()
            out.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                      .encode() + data + b"\r\n")
            out.flush()

    def __enter__(self) -> FakeHeadset:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve three HMC feeds as MJPEG over HTTP")
    parser.add_argument("capture", nargs="?", type=Path, help="capture folder to loop (default: a test pattern)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args(argv)
    frames = capture_frames(args.capture) if args.capture else pattern_frames()
    headset = FakeHeadset(frames, args.fps, args.port, args.host).start()
    print("serving " + "  ".join(headset.urls) + "  (Ctrl+C stops)")
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        headset.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
