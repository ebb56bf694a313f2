"""The studio's plumbing: task workers, error reporting, profiles, settings, crop ROIs, `make demo`
and `mia bench`."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from engine.errors import CaptureError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def studio_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MIA_STUDIO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# --------------------------------------------------------------------------- no display needed
def test_user_messages_never_carry_tracebacks():
    from app.logs import report, setup_logging, user_message
    log = Path(setup_logging())
    assert user_message(CaptureError("/x: no capture folder here")) == "/x: no capture folder here"
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError as err:
        text = report(err, "evaluate")
    assert text.startswith("evaluate: ZeroDivisionError: division by zero") and "Traceback" not in text
    for handler in logging.getLogger("mia_studio").handlers:
        handler.flush()
    assert "Traceback" in log.read_text()  # the details are in the log file


def test_excepthook_shows_a_sentence(monkeypatch):
    from app.logs import install_excepthook
    shown: list[str] = []
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    import threading
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    install_excepthook(shown.append)
    try:
        raise KeyError("frame 12")
    except KeyError as err:
        sys.excepthook(type(err), err, err.__traceback__)
    assert len(shown) == 1 and shown[0].startswith("KeyError: 'frame 12'") and "Traceback" not in shown[0]


def test_headset_profiles_round_trip_and_survive_damage(tmp_path):
    from app.profiles import HeadsetProfiles
    path = tmp_path / "headsets.json"
    profiles = HeadsetProfiles(path)
    profiles.save_cameras("diy-1", ["0", "http://cam/1", "2"], [90, 0, 270], [True, False, False])
    profiles.set_roi("diy-1", 1, (4, 5, 60, 70))
    again = HeadsetProfiles(path)
    cams = again.get("diy-1")
    assert [c.url for c in cams] == ["0", "http://cam/1", "2"] and cams[0].rotate == 90 and cams[0].flip
    assert again.rois("diy-1") == [None, (4, 5, 60, 70), None]
    assert again.spec("diy-1")["rotate"] == [90, 0, 270]
    again.save_cameras("diy-1", ["3", "4", "5"], [0, 0, 0], [False] * 3)
    assert HeadsetProfiles(path).rois("diy-1")[1] == (4, 5, 60, 70)  # new URLs keep the crop
    path.write_text("{not json")
    assert HeadsetProfiles(path).names() == [] and path.with_suffix(".json.damaged").exists()


def test_subject_catalog_finds_files_in_order(tmp_path):
    from app.subjects import SubjectCatalog
    root = tmp_path / "subjects"
    (root / "alice" / "avatar").mkdir(parents=True)
    (root / "alice" / "neutral.obj").write_text("v 0 0 0\n")
    (root / "alice" / "avatar" / "avatar.pt").write_bytes(b"x")
    (root / "bob").mkdir()
    (root / "bob" / "neutral.ply").write_text("ply\n")
    catalog = SubjectCatalog([root])
    assert catalog.names() == ["alice", "bob"]
    assert catalog.resolve("alice").avatar is None  # no adaptation layer in the model: shape only
    catalog.set_model(["carol"], ["alice"])
    assert catalog.names() == ["carol", "alice", "bob"]
    spec = catalog.resolve("alice")
    assert spec.neutral.endswith("neutral.obj") and spec.avatar.endswith("avatar")
    assert catalog.resolve("alice", textured=False).avatar is None
    assert catalog.resolve("carol").neutral is None and catalog.resolve("carol").origin == "the model checkpoint"
    catalog.add_loaded("carol", "/scans/carol.obj")
    assert catalog.resolve("carol").neutral == "/scans/carol.obj"
    assert catalog.resolve("dave") is None


def test_mia_bench_lists_and_rejects_unknown_names():
    from app.cli import main
    assert main(["bench"]) == 0
    assert main(["bench", "no_such_benchmark"]) == 2


# --------------------------------------------------------------------------- Qt, no window
@pytest.mark.gui
def test_task_reports_result_failure_and_cancel(qtbot):
    from app.workers import Task

    # connect (waitSignal) before starting: a fast thread could emit before anyone listens
    done = Task(lambda ctx: (ctx.progress(1, 2, "half"), 42)[1])
    with qtbot.waitSignal(done.finished_with, timeout=60_000) as blocker:
        done.start_task()
    assert blocker.args == [42]

    failing = Task(lambda ctx: 1 / 0, "evaluate")
    with qtbot.waitSignal(failing.failed, timeout=60_000) as blocker:
        failing.start_task()
    assert blocker.args[0].startswith("evaluate: ZeroDivisionError")

    def slow(ctx):
        for i in range(1000):
            ctx.progress(i, 1000)
            time.sleep(0.01)
    cancelled = Task(slow)
    with qtbot.waitSignal(cancelled.cancelled, timeout=60_000):
        cancelled.start_task()
        cancelled.cancel()
    for task in (done, failing, cancelled):
        task.wait(5000)


@pytest.mark.gui
@pytest.mark.opengl
def test_crop_roi_goes_to_engine_and_headset_profile(qtbot, tmp_path):
    from app.main_window import MainWindow
    from app.sample_data import make_sample_data
    sample = make_sample_data(tmp_path / "data", identities=1, frames=10, image_size=48)
    window = MainWindow(threads=1)
    qtbot.addWidget(window)
    window.show()
    try:
        window.open_model(str(sample.model))
        window.open_capture(str(sample.capture))
        qtbot.waitUntil(lambda: window.session.frames_shown > 2 and bool(window.session.model_info), timeout=90_000)
        headset = window.session.source_info["headset_id"]
        window.roi_action.trigger()
        window.hmc.roi_changed.emit(0, (4, 6, 30, 28))
        qtbot.waitUntil(lambda: window.session.worker.engine._rois[0] == (4, 6, 30, 28), timeout=60_000)
        assert window.session.profiles.rois(headset)[0] == (4, 6, 30, 28)
        saved = json.loads((Path(os.environ["MIA_STUDIO_HOME"]) / "config" / "headsets.json").read_text())
        assert saved[headset]["cameras"][0]["roi"] == [4, 6, 30, 28]
        window._clear_rois()
        qtbot.waitUntil(lambda: window.session.worker.engine._rois == [None, None, None], timeout=60_000)
    finally:
        window.close()


# --------------------------------------------------------------------------- make demo
@pytest.mark.gui
def test_demo_without_a_display_reruns_under_xvfb(tmp_path):
    from app.sample_data import make_sample_data
    sample = make_sample_data(tmp_path / "data", identities=1, frames=12, image_size=48)
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    shot, summary = tmp_path / "demo.png", tmp_path / "demo.json"
    result = subprocess.run([sys.executable, "-m", "app.demo", "--frames", "8", "--capture", str(sample.capture),
                             "--model", str(sample.model), "--screenshot", str(shot), "--summary", str(summary)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-1500:]
    data = json.loads(summary.read_text())
    assert data["frames_shown"] >= 8 and data["driven_frames"] >= 1 and data["mean_fps"] > 0
    image = cv2.imread(str(shot))
    assert image is not None and image.std() > 15


def test_retarget_thumbnails_are_coarse_unless_asked_for_the_full_mesh(monkeypatch):
    from app.paths import coarse_thumbnails

    monkeypatch.delenv("MIA_STUDIO_FULL_THUMBNAILS", raising=False)
    assert coarse_thumbnails()
    for value, coarse in (("1", False), ("yes", False), ("0", True), ("", True)):
        monkeypatch.setenv("MIA_STUDIO_FULL_THUMBNAILS", value)
        assert coarse_thumbnails() is coarse
