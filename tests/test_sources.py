"""HMC sources: recorded captures, the synthetic world in a worker thread, and live cameras for real.

The live path is tested end to end: a local HTTP server thread serves multipart/x-mixed-replace
JPEG (as DIY headset cameras do), OpenCV reads it by URL, and stopping, stalling, thinning and
restarting the server must show up as camera states and recover on their own.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.fake_headset import FakeHeadset, pattern_frames
from engine.errors import CaptureError
from engine.runtime.sources import (CameraSettings, CaptureSource, LiveCameraSource, SyntheticSource,
                                    open_source, upright)
from engine.errors import SourceError
from engine.synth.identity import identity_index


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from app.sample_data import make_sample_data
    return make_sample_data(tmp_path_factory.mktemp("sample"), identities=2, frames=20, image_size=48)


def wait_until(predicate, source: LiveCameraSource, timeout: float = 10.0):
    """Read the source until ``predicate(frame)`` holds; returns that frame."""
    end = time.monotonic() + timeout
    frame = None
    while time.monotonic() < end:
        frame = source.read(timeout=0.2)
        if predicate(frame):
            return frame
    states = None if frame is None else [s.text for s in frame.camera_states]
    raise AssertionError(f"condition not reached in {timeout} s; last camera states {states}")


# --------------------------------------------------------------------------- recorded
def test_capture_source_reads_seeks_and_ends(sample):
    src = CaptureSource(sample.capture)
    try:
        assert len(src) == 20 and not src.live and src.subject_id == "id000" and src.has_ground_truth
        first = src.read()
        assert first.index == 0 and first.images.shape == (3, 48, 48) and first.images.dtype == np.uint8
        assert first.ground_truth is not None and first.ground_truth.shape[1] == 3
        assert first.complete and all(s.ok for s in first.camera_states)
        assert src.read().index == 1
        src.seek(17)
        assert [src.read().index for _ in range(3)] == [17, 18, 19]
        assert src.read() is None  # the player decides whether to loop
        src.seek(5)
        again = src.read()
        np.testing.assert_array_equal(again.images, src.capture.frame(5))
        with pytest.raises(SourceError, match="outside 0..19"):
            src.seek(20)
    finally:
        src.close()


def test_open_source_explains_bad_specs(tmp_path):
    with pytest.raises(CaptureError, match="no capture folder here"):
        open_source({"kind": "capture", "path": str(tmp_path / "missing")})
    with pytest.raises(SourceError, match="unknown source kind"):
        open_source({"kind": "webcam"})
    with pytest.raises(SourceError, match="three camera"):
        open_source({"kind": "cameras", "urls": ["0", "1"]})
    with pytest.raises(SourceError, match="mouth camera: no device index or URL"):
        open_source({"kind": "cameras", "urls": ["0", "1", " "]})


# --------------------------------------------------------------------------- synthetic
def test_synthetic_source_in_its_own_thread():
    """Created, read and closed in one worker thread (its GL context is bound to that thread)."""
    out: dict = {}

    def work() -> None:
        try:
            src = SyntheticSource("id001", seed=3, paced=False)
            frames = [src.read() for _ in range(3)]
            out.update(subject=src.subject_id, frames=frames, neutral=src.neutral, live=src.live)
            src.close()
        except Exception as err:  # surfaced in the assertion below
            out["error"] = err

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(120)
    assert "error" not in out, out.get("error")
    frames = out["frames"]
    assert out["subject"] == "id001" and out["live"]
    assert [f.index for f in frames] == [0, 1, 2]
    assert frames[0].images.shape[0] == 3 and frames[0].images.dtype == np.uint8
    assert frames[0].ground_truth.shape == out["neutral"].shape
    assert not np.array_equal(frames[0].images, frames[2].images)
    with pytest.raises(SourceError):
        SyntheticSource.seek(None, 0)  # type: ignore[arg-type]


def test_identity_index_parses_names():
    assert identity_index("id007") == 7 and identity_index(3) == 3 and identity_index("12") == 12
    with pytest.raises(SourceError, match="id003"):
        identity_index("alice")


# --------------------------------------------------------------------------- orientation
def test_upright_rotates_clockwise_and_mirrors():
    img = np.arange(6, dtype=np.uint8).reshape(2, 3)  # [[0 1 2] [3 4 5]]
    np.testing.assert_array_equal(upright(img, 90, False), [[3, 0], [4, 1], [5, 2]])
    np.testing.assert_array_equal(upright(img, 180, False), img[::-1, ::-1])
    np.testing.assert_array_equal(upright(img, 270, False), [[2, 5], [1, 4], [0, 3]])
    np.testing.assert_array_equal(upright(img, 0, True), img[:, ::-1])
    bgr = np.zeros((4, 5, 3), np.uint8)
    assert upright(bgr, 90, True).shape == (5, 4)


def test_camera_settings_round_trip_and_targets():
    cam = CameraSettings("2", 270, True, (1, 2, 30, 40))
    assert cam.target() == 2
    assert CameraSettings("http://h:8080/cam0").target() == "http://h:8080/cam0"
    assert CameraSettings.from_dict(cam.to_dict()) == cam
    with pytest.raises(SourceError, match="rotate must be one of"):
        CameraSettings("0", 45)


# --------------------------------------------------------------------------- live MJPEG over HTTP
def test_live_mjpeg_cameras_lose_signal_and_recover():
    headset = FakeHeadset(pattern_frames((60, 80)), fps=30).start()
    cams = [CameraSettings(headset.url(0)), CameraSettings(headset.url(1), rotate=90),
            CameraSettings(headset.url(2), flip=True)]
    source = LiveCameraSource(cams, "test-headset", stall_s=0.6, read_timeout_s=0.8, backoff_s=(0.1, 0.5))
    try:
        frame = wait_until(lambda f: f.fresh and f.complete and all(s.ok for s in f.camera_states), source)
        assert frame.images[0].shape == (60, 80) and frame.images[1].shape == (80, 60)  # rotated
        assert frame.images[0].dtype == np.uint8
        assert all(s.text.startswith("live") for s in frame.camera_states)
        first = frame.index
        frame = wait_until(lambda f: f.fresh and f.index >= first + 10, source)  # it streams

        headset.stop()  # unplugged: every camera says so, reading never blocks
        frame = wait_until(lambda f: all("no signal" in s.text for s in f.camera_states), source)
        assert not frame.complete and not any(s.ok for s in frame.camera_states)
        stale = source.read(timeout=0.3)  # returns (stale) instead of waiting for a dead camera
        assert not stale.fresh

        headset.start()  # same port: readers reconnect by themselves
        frame = wait_until(lambda f: f.complete and all(s.ok for s in f.camera_states), source, 15.0)
        assert frame.fresh

        headset.drop_every = 3  # a lossy link: drops are counted and shown
        frame = wait_until(lambda f: any(s.text.startswith("dropped") for s in f.camera_states), source)
        assert max(s.dropped for s in frame.camera_states) > 0
        headset.drop_every = 0

        headset.paused.set()  # stalled but connected: no signal, then back
        wait_until(lambda f: all(s.text == "no signal" or "no signal" in s.text for s in f.camera_states), source)
        headset.paused.clear()
        wait_until(lambda f: f.complete and f.fresh, source, 15.0)
    finally:
        source.close()
        headset.stop()
    assert not any(r.is_alive() for r in source.readers)


def test_missing_device_shows_no_signal_and_closes_quickly():
    source = LiveCameraSource([CameraSettings("http://127.0.0.1:9/none")] * 3, stall_s=0.3,
                              read_timeout_s=0.3, backoff_s=(0.1, 0.2))
    try:
        frame = wait_until(lambda f: all("no signal" in s.text for s in f.camera_states), source, 8.0)
        assert not frame.complete
    finally:
        source.close()
    assert not any(r.is_alive() for r in source.readers)  # close() stopped the reader threads


def test_fake_headset_serves_a_capture(sample):
    from app.fake_headset import capture_frames
    frames = capture_frames(Path(sample.capture))
    assert frames(2, 0).shape == (48, 48) and frames(0, 25).dtype == np.uint8


def test_compact_ground_truth_is_computed_once_per_frame(synth_dataset, tmp_path):
    """A compact capture's meshes are recomputed from the face model; looped playback reuses them."""
    import shutil
    capture = tmp_path / "id001_c00"
    shutil.copytree(synth_dataset / "captures" / "id001_c00", capture)
    stored = np.load(capture / "meshes.npy")
    (capture / "meshes.npy").unlink()
    src = CaptureSource(capture)
    try:
        assert src.has_ground_truth
        first = [src.read().ground_truth for _ in range(len(src))]
        src.seek(0)
        again = [src.read().ground_truth for _ in range(len(src))]
    finally:
        src.close()
    np.testing.assert_array_equal(np.stack(first), stored)
    assert all(a is b for a, b in zip(first, again))  # the second loop computed nothing
    assert not first[0].flags.writeable  # shared between frames: nobody may change it
