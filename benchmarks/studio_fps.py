"""Frames per second of MIA Studio's full loop: read three feeds, infer, update and draw the window.

It runs the real window (MainWindow + Session) under Xvfb, unpaced, on a recorded capture (or live
MJPEG feeds from a local stand-in headset with ``--source mjpeg``), and counts frames the GUI
actually drew, first driving one subject, then with retargeting to four more subjects. Target:
30 fps or more with one subject on this 2-core machine.

    .venv/bin/python benchmarks/studio_fps.py [--model PATH --capture PATH | --tiny] [--seconds 10]

Without a display it re-runs itself under xvfb-run. Without ``resources/default_model.pt`` (or with
``--tiny``) it builds an untrained tiny model and a short synthetic dataset in a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_FPS = 30.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="checkpoint (default: resources/default_model.pt, else a tiny one)")
    p.add_argument("--capture", help="capture folder (default: resources/demo_capture, else a synthetic one)")
    p.add_argument("--tiny", action="store_true", help="use a freshly built untrained model and capture")
    p.add_argument("--model-size", choices=("tiny", "default"), default="tiny",
                   help="with --tiny or no shipped model: ModelConfig.tiny() or ModelConfig() sizes")
    p.add_argument("--source", choices=("capture", "mjpeg"), default="capture")
    p.add_argument("--seconds", type=float, default=10.0, help="measuring time per configuration")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--targets", type=int, default=4)
    p.add_argument("--threads", type=int, default=0, help="inference threads (default: the studio's)")
    p.add_argument("--mode", default="textured", help="viewer mode: shaded, textured, wireframe, error")
    p.add_argument("--size", default="1500x950", help="window size WxH (the GL composition cost grows with it)")
    p.add_argument("--no-ground-truth", action="store_true", help="hide the ground-truth mesh beside the driven one")
    p.add_argument("--json", help="write the results here too")
    return p.parse_args(argv)


def inputs(args: argparse.Namespace, scratch: Path) -> tuple[str, str, list[str]]:
    """(model, capture, retarget candidates)."""
    default_model, demo = ROOT / "resources" / "default_model.pt", ROOT / "resources" / "demo_capture"
    model = args.model or (None if args.tiny or not default_model.is_file() else str(default_model))
    capture = args.capture or (None if args.tiny or not (demo / "capture.json").is_file() else str(demo))
    if model is None or capture is None:
        from app.sample_data import make_sample_data
        data = make_sample_data(scratch / "data", identities=max(2, args.targets + 1), frames=60, image_size=96,
                                textured=args.targets + 1, model_size=args.model_size)
        model, capture = model or str(data.model), capture or str(data.capture)
    return model, capture, []


def measure(app, window, seconds: float) -> dict:
    """Frames drawn per second over ``seconds`` (GUI side), plus the worker's numbers."""
    session = window.session
    infer, render = [], []
    on_frame = lambda b: infer.append(b.infer_ms) if b.fresh and b.mesh is not None else None  # noqa: E731
    on_render = render.append
    session.frame_ready.connect(on_frame)
    window.viewer.render_ms.connect(on_render)
    shown0, dropped0, t0 = session.frames_shown, session.worker.dropped, time.perf_counter()
    run_event_loop(seconds)  # a real event loop: spinning processEvents() would eat a core
    elapsed = time.perf_counter() - t0
    session.frame_ready.disconnect(on_frame)
    window.viewer.render_ms.disconnect(on_render)
    frames = session.frames_shown - shown0
    mean = lambda v: round(sum(v) / len(v), 2) if v else 0.0  # noqa: E731
    return {"fps": round(frames / elapsed, 2), "frames": frames, "infer_ms": mean(infer), "render_ms": mean(render),
            "dropped_stale": session.worker.dropped - dropped0}


def run_event_loop(seconds: float) -> None:
    from PySide6.QtCore import QEventLoop, QTimer
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def measure_headless(app, window, seconds: float) -> dict:
    """The same loop with the window's drawing switched off: read + infer + hand-over only."""
    session = window.session
    session.frame_ready.disconnect(window._on_frame)
    try:
        measure(app, window, 1.0)
        return measure(app, window, seconds)
    finally:
        session.frame_ready.connect(window._on_frame)


def wait_for(app, predicate, timeout: float, what: str) -> None:
    end = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > end:
            raise SystemExit(f"studio_fps: timed out waiting for {what}")
        run_event_loop(0.02)


def open_studio(args: argparse.Namespace, model: str, ground_truth: bool = True) -> tuple:
    """The real main window at args.size in args.mode, shown, autoplaying, with `model` loaded;
    returns (app, window). Sets args.threads to the inference threads the window chose."""
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from app.paths import set_application_names
    set_application_names()
    app = QApplication.instance() or QApplication([])
    window = MainWindow(threads=args.threads or None)
    args.threads = window.threads
    width, height = (int(v) for v in args.size.lower().split("x"))
    window.resize(width, height)
    window.show()
    window.set_view_mode(args.mode)
    if not ground_truth:
        window.gt_action.setChecked(False)
        window.presenter.show_ground_truth = False
    window.session.autoplay = True
    window.open_model(model)
    wait_for(app, lambda: bool(window.session.model_info), 120, "the model")
    return app, window


def run(args: argparse.Namespace) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="studio_fps_"))
    os.environ["MIA_STUDIO_HOME"] = str(scratch / "home")
    try:
        model, capture, _ = inputs(args, scratch)
        app, window = open_studio(args, model, ground_truth=not args.no_ground_truth)
        session = window.session
        headset = None
        if args.source == "mjpeg":
            from app.fake_headset import FakeHeadset, capture_frames
            headset = FakeHeadset(capture_frames(capture), fps=30.0).start()
            window.open_source({"kind": "cameras", "headset": "bench", "urls": headset.urls,
                                "rotate": [0, 0, 0], "flip": [False] * 3})
        else:
            window.open_capture(capture)
        session.set_paced(False)
        session.set_loop(True)
        wait_for(app, lambda: session.frames_shown > 3, 120, "the first frames")
        results = {"model": model, "capture": capture, "source": args.source, "threads": args.threads,
                   "mode": args.mode, "window": args.size, "ground_truth": not args.no_ground_truth,
                   "model_info": {k: session.model_info.get(k) for k in ("model", "device",
                                                                                           "image_size")}}
        measure(app, window, args.warmup)
        results["1 subject"] = measure(app, window, args.seconds)
        results["1 subject, no drawing"] = measure_headless(app, window, args.seconds / 2)
        candidates = [n for n in session.subject_names() if n != session.subject_info.get("name")]
        targets = candidates[:args.targets]
        window.retarget.set_textured(True)
        window.retarget.set_subjects(session.subject_names(), checked=targets)
        session.set_targets(targets)
        wait_for(app, lambda: len(session.driven_targets) == len(targets), 60, "the retarget subjects")
        measure(app, window, args.warmup)
        results[f"+{len(targets)} retarget subjects"] = measure(app, window, args.seconds)
        results[f"+{len(targets)} retarget subjects, no drawing"] = measure_headless(app, window, args.seconds / 2)
        results["targets"] = targets
        if headset is not None:
            headset.stop()
        window.close()
        return results
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not os.environ.get("DISPLAY"):
        xvfb = shutil.which("xvfb-run")
        if xvfb is None:
            print("studio_fps: needs a display or xvfb-run", file=sys.stderr)
            return 2
        env = dict(os.environ, QT_QPA_PLATFORM="xcb")
        return subprocess.call([xvfb, "-a", "-s", "-screen 0 1600x1000x24", sys.executable, __file__, *argv], env=env)
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    args = parse(argv)
    results = run(args)
    print(f"MIA Studio full loop ({results['source']}, {results['mode']} view, window {args.size}, "
          f"ground truth {'shown' if results['ground_truth'] else 'hidden'}, {args.threads} threads, "
          f"model {Path(results['model']).name}):")
    for key, value in results.items():
        if isinstance(value, dict) and "fps" in value:
            verdict = "" if key != "1 subject" else (" (meets the 30 fps target)" if value["fps"] >= TARGET_FPS
                                                     else " (below the 30 fps target)")
            print(f"  {key:>36}: {value['fps']:6.1f} fps  infer {value['infer_ms']:6.1f} ms  "
                  f"render {value['render_ms']:5.1f} ms  stale frames skipped {value['dropped_stale']}{verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
