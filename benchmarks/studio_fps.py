"""Frames per second of MIA Studio's full loop: read three feeds, infer, update and draw the window.

It runs the real window (MainWindow + Session) under Xvfb, unpaced, on a recorded capture (or live
MJPEG feeds from a local stand-in headset with ``--source mjpeg``), and counts the frames the GUI
presented and the new frames the 3D view painted, first driving one subject, then with retargeting
to four more subjects. Targets on
this 2-core machine: 60 fps with one subject, 30 fps with four retarget subjects.

For every configuration it says where the milliseconds of a frame go and how the rate compares
with headset cameras (30 and 90 Hz):

- read, infer: the frame worker's wall time per frame (it overlaps the GUI's drawing);
- draw: the GUI thread's CPU time per frame, split into updating the views (FramePresenter),
  drawing the 3D views (vispy, offscreen; reading their pixels back is counted in the rest) and the
  rest (2D widgets, Qt's composition, events);
- other: the frame period minus draw: the GUI thread waiting for the next frame or for a core;
- CPU per frame: the whole process, by thread (GUI, frame worker, GL rasteriser, the rest).

CPU times hold up on a busy machine where wall times stretch, so compare those across runs made
under different loads; the load average is printed with the results.

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
TARGETS_FPS = {"1 subject": 60.0, "retarget": 30.0}  # 2-core machine, under Xvfb
CAMERA_HZ = (30.0, 90.0)


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


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds so far of this process's threads, grouped: GUI, frame worker, GL rasteriser, rest."""
    groups = {"GUI": 0.0, "worker": 0.0, "GL": 0.0, "rest": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    pid = os.getpid()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:  # the thread ended meanwhile
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        group = ("GUI" if int(tid) == pid else "worker" if name.startswith("frame-worker")
                 else "GL" if name.startswith("llvmpipe") else "rest")
        groups[group] += seconds
    return groups


class GuiTimes:
    """The GUI thread's CPU time in the presenter's update and in the vispy canvases' draws."""

    def __init__(self, window) -> None:
        self.window = window
        self.update_s = self.draw3d_s = 0.0
        self._t_draw = 0.0
        window.session.frame_ready.disconnect(window._on_frame)
        window.session.frame_ready.connect(self._on_frame)
        for canvas in (window.viewer.canvas, window.retarget.canvas):
            canvas.events.draw.connect(self._draw_start, position="first")
            canvas.events.draw.connect(self._draw_end, position="last")

    def _on_frame(self, bundle) -> None:
        t = time.thread_time()
        self.window._on_frame(bundle)
        self.update_s += time.thread_time() - t

    def _draw_start(self, _event) -> None:
        self._t_draw = time.thread_time()

    def _draw_end(self, _event) -> None:
        self.draw3d_s += time.thread_time() - self._t_draw

    def snapshot(self) -> tuple[float, float]:
        return self.update_s, self.draw3d_s


class PaintCounter:
    """Paints of the 3D viewer that showed a newly drawn scene (offscreen canvases): the frames a
    person sees change. A bundle the presenter showed but a newer one replaced before Qt painted
    the window is counted in `fps`, not here."""

    def __init__(self, widget) -> None:
        self.widget, self.count = widget, 0
        self._draw = getattr(widget, "_draw", None)  # OffscreenCanvasWidget draws a new scene here
        if self._draw is not None:
            widget._draw = self._counted

    def _counted(self) -> None:
        self.count += 1
        self._draw()

    def stop(self, elapsed: float) -> float | None:
        if self._draw is None:
            return None
        del self.widget._draw
        return round(self.count / elapsed, 2)


def measure(app, window, seconds: float, gui: GuiTimes | None = None) -> dict:
    """Frames drawn per second over ``seconds`` (GUI side), the worker's numbers and where the ms go
    (the draw split into update / 3D views / rest needs ``gui``, installed before)."""
    session = window.session
    infer, read, render = [], [], []

    def on_frame(b) -> None:
        if b.fresh and b.mesh is not None:
            infer.append(b.infer_ms)
            read.append(b.read_ms)
    on_render = render.append
    session.frame_ready.connect(on_frame)
    window.viewer.render_ms.connect(on_render)
    gui0 = gui.snapshot() if gui else (0.0, 0.0)
    cpu0, process0 = thread_cpu_s(), time.process_time()
    painted = PaintCounter(window.viewer.canvas_widget)
    shown0, dropped0, t0 = session.frames_shown, session.worker.dropped, time.perf_counter()
    run_event_loop(seconds)  # a real event loop: spinning processEvents() would eat a core
    elapsed = time.perf_counter() - t0
    cpu1, process1 = thread_cpu_s(), time.process_time()
    gui1 = gui.snapshot() if gui else (0.0, 0.0)
    session.frame_ready.disconnect(on_frame)
    window.viewer.render_ms.disconnect(on_render)
    frames = session.frames_shown - shown0
    n = max(frames, 1)
    mean = lambda v: round(sum(v) / len(v), 2) if v else 0.0  # noqa: E731
    cpu = {k: round((cpu1[k] - cpu0[k]) * 1e3 / n, 2) for k in cpu0}
    update, draw3d = ((b - a) * 1e3 / n for a, b in zip(gui0, gui1))
    period = elapsed * 1e3 / n
    draw = cpu["GUI"]
    painted_fps = painted.stop(elapsed)
    return {"fps": round(frames / elapsed, 2), "frames": frames, "painted_fps": painted_fps,
            "infer_ms": mean(infer), "render_ms": mean(render),
            "dropped_stale": session.worker.dropped - dropped0,
            "period_ms": round(period, 2), "read_ms": mean(read), "draw_ms": draw,
            "draw_update_ms": round(update, 2), "draw_3d_ms": round(draw3d, 2),
            "draw_rest_ms": round(max(draw - update - draw3d, 0.0), 2), "other_ms": round(period - draw, 2),
            "cpu_ms": round((process1 - process0) * 1e3 / n, 2), "cpu_by_thread_ms": cpu,
            "camera_ratio": {f"{hz:g} Hz": round(frames / elapsed / hz, 2) for hz in CAMERA_HZ}}


def run_event_loop(seconds: float) -> None:
    from PySide6.QtCore import QEventLoop, QTimer
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def measure_headless(app, window, seconds: float, gui: GuiTimes | None = None) -> dict:
    """The same loop with the window's drawing switched off: read + infer + hand-over only."""
    session = window.session
    draws = gui._on_frame if gui else window._on_frame
    session.frame_ready.disconnect(draws)
    try:
        measure(app, window, 1.0)
        return measure(app, window, seconds)
    finally:
        session.frame_ready.connect(draws)


def progress(what: str) -> None:
    """Say on stderr what is measured now (a profiler can attach for exactly that part)."""
    print(f"studio_fps: measuring {what}", file=sys.stderr, flush=True)


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
        gui = GuiTimes(window)
        results["load_before"] = [round(v, 2) for v in os.getloadavg()]
        measure(app, window, args.warmup)
        progress("1 subject")
        results["1 subject"] = measure(app, window, args.seconds, gui)
        progress("1 subject, no drawing")
        results["1 subject, no drawing"] = measure_headless(app, window, args.seconds / 2, gui)
        candidates = [n for n in session.subject_names() if n != session.subject_info.get("name")]
        targets = candidates[:args.targets]
        window.retarget.set_textured(True)
        window.retarget.set_subjects(session.subject_names(), checked=targets)
        session.set_targets(targets)
        wait_for(app, lambda: len(session.driven_targets) == len(targets), 60, "the retarget subjects")
        measure(app, window, args.warmup)
        name = f"+{len(targets)} retarget subjects"
        progress(name)
        results[name] = measure(app, window, args.seconds, gui)
        progress(f"{name}, no drawing")
        results[f"{name}, no drawing"] = measure_headless(app, window, args.seconds / 2, gui)
        if targets:  # the grid tabbed behind the Output panel: it must cost nothing (MainWindow.on_screen)
            window.docks["output"].raise_()
            wait_for(app, lambda: not window.on_screen(window.retarget), 10, "the Output tab")
            progress(f"{name}, grid behind the Output tab")
            results[f"{name}, grid behind the Output tab"] = measure(app, window, args.seconds / 2, gui)
            window.docks["retarget"].raise_()
        results["load_after"] = [round(v, 2) for v in os.getloadavg()]
        results["targets"] = targets
        if headset is not None:
            headset.stop()
        window.close()
        return results
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def verdict(key: str, fps: float) -> str:
    target = TARGETS_FPS["1 subject"] if key == "1 subject" else \
        TARGETS_FPS["retarget"] if key.endswith("retarget subjects") else None
    if target is None:
        return ""
    return f" (meets the {target:g} fps target)" if fps >= target else f" (below the {target:g} fps target)"


def report(results: dict, args: argparse.Namespace) -> None:
    load = "load average {:.1f} -> {:.1f}".format(results["load_before"][0], results["load_after"][0])
    print(f"MIA Studio full loop ({results['source']}, {results['mode']} view, window {args.size}, "
          f"ground truth {'shown' if results['ground_truth'] else 'hidden'}, {args.threads} inference threads, "
          f"model {Path(results['model']).name}, {os.cpu_count()} cores, {load}):")
    for key, v in results.items():
        if not (isinstance(v, dict) and "fps" in v):
            continue
        ratio = ", ".join(f"{r:.2f}x a {hz} camera" for hz, r in v["camera_ratio"].items())
        painted = v.get("painted_fps") if "no drawing" not in key else None
        print(f"  {key}: {v['fps']:.1f} fps = {v['period_ms']:.1f} ms a frame ({ratio})"
              + ("" if painted is not None else verdict(key, v['fps'])))
        if painted is not None:
            print(f"      painted: {painted:.1f} new frames a second in the 3D view{verdict(key, painted)} (frames "
                  "presented but replaced before Qt painted the window count above, not here)")
        if "no drawing" not in key:
            print(f"      read {v['read_ms']:.1f} | infer {v['infer_ms']:.1f} | draw {v['draw_ms']:.1f} (update "
                  f"{v['draw_update_ms']:.1f}, 3D views {v['draw_3d_ms']:.1f}, 2D widgets + Qt {v['draw_rest_ms']:.1f})"
                  f" | other {v['other_ms']:.1f} ms")
        else:
            print(f"      read {v['read_ms']:.1f} | infer {v['infer_ms']:.1f} ms")
        c = v["cpu_by_thread_ms"]
        print(f"      CPU {v['cpu_ms']:.1f} ms a frame: GUI {c['GUI']:.1f}, frame worker {c['worker']:.1f}, "
              f"GL rasteriser {c['GL']:.1f}, rest {c['rest']:.1f}; stale frames skipped {v['dropped_stale']}")
    print("  read, infer: the worker's wall ms (overlapping the drawing); draw: the GUI thread's CPU ms; other: "
          "the frame period minus draw (waiting for a frame or a core)")


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
    report(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
