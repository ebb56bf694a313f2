"""End-to-end MIA Studio fps with the ARKit outputs off and on (VRChat OSC, Babble OSC, Live Link to loopback).

The real window (MainWindow + Session, as benchmarks/studio_fps.py) plays a capture unpaced under
Xvfb, driving one subject. It measures, alternating so that a changing machine load shows up as a
difference between the two "off" runs rather than as an output cost:

    outputs off | all three on (Output panel hidden) | all three on, Output panel shown (meters) | off again

and where the milliseconds go: per frame on the worker (inference) and GUI thread (drawing, the
controller's hand-over to the output thread, the panel's 10 Hz meter refresh), on the output thread
(ARKit fit, calibration + smoothing + sending), the process's CPU time per drawn frame, and the
packets the loopback receivers got.

    .venv/bin/python benchmarks/studio_fps_outputs.py [--seconds 10] [--json out/studio_fps_outputs.json]

Without a display it re-runs itself under xvfb-run.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from studio_fps import inputs, measure, open_studio, run_event_loop, wait_for  # noqa: E402

PROTOCOLS = ("vrchat", "babble", "livelink")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="checkpoint (default: resources/default_model.pt)")
    p.add_argument("--capture", help="capture folder (default: resources/demo_capture)")
    p.add_argument("--seconds", type=float, default=10.0, help="measuring time per configuration")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=0, help="inference threads (default: the studio's)")
    p.add_argument("--mode", default="textured", help="viewer mode: shaded, textured, wireframe, error")
    p.add_argument("--size", default="1500x950", help="window size WxH")
    p.add_argument("--rate", type=float, default=60.0, help="output rate limit, Hz (0: every frame)")
    p.add_argument("--repeats", type=int, default=1, help="run the off / on / on+panel sequence this many times")
    p.add_argument("--json", help="write the results here too")
    # what studio_fps.inputs() reads
    p.set_defaults(tiny=False, model_size="tiny", targets=0)
    return p.parse_args(argv)


class Receivers:
    """Three UDP sockets on 127.0.0.1 (kernel-chosen ports) drained by one thread, counting datagrams."""

    def __init__(self) -> None:
        self.socks = {}
        for p in PROTOCOLS:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            self.socks[p] = s
        self.counts = {p: 0 for p in PROTOCOLS}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def port(self, protocol: str) -> int:
        return self.socks[protocol].getsockname()[1]

    def _run(self) -> None:
        by_fd = {s.fileno(): p for p, s in self.socks.items()}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(self.socks.values()), [], [], 0.1)
            for s in ready:
                while True:
                    try:
                        s.recv(4096)
                    except BlockingIOError:
                        break
                    self.counts[by_fd[s.fileno()]] += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for s in self.socks.values():
            s.close()


class Timed:
    """Wraps the output controller's two GUI-thread slots to time them (mean ms per call)."""

    def __init__(self, window) -> None:
        self.ctl = window.outputs
        self.calls = {"hand-over": [], "panel refresh": []}
        session = window.session
        session.frame_ready.disconnect(self.ctl.on_frame)
        session.frame_ready.connect(self.on_frame)
        self.ctl.timer.timeout.disconnect(self.ctl.refresh)
        self.ctl.timer.timeout.connect(self.refresh)

    def on_frame(self, bundle) -> None:
        t = time.perf_counter()
        self.ctl.on_frame(bundle)
        self.calls["hand-over"].append((time.perf_counter() - t) * 1e3)

    def refresh(self) -> None:
        t = time.perf_counter()
        self.ctl.refresh()
        self.calls["panel refresh"].append((time.perf_counter() - t) * 1e3)

    def reset(self) -> None:
        for v in self.calls.values():
            v.clear()


def configure(window, receivers: Receivers | None, rate: float) -> None:
    d = {p: {"enabled": receivers is not None, "host": "127.0.0.1",
             "port": receivers.port(p) if receivers else 9} for p in PROTOCOLS}
    window.outputs.apply({**d, "rate_hz": rate})


def show_panel(window, shown: bool) -> None:
    window.docks["output" if shown else "retarget"].raise_()
    run_event_loop(0.2)


def one(app, window, timed: Timed, receivers: Receivers, args) -> dict:
    """One configuration: warm up, then measure fps, time per stage and packets."""
    measure(app, window, args.warmup)
    timed.reset()
    streamer = window.outputs.streamer
    stats0 = streamer.latest()[2]
    counts0 = dict(receivers.counts)
    cpu0 = time.process_time()
    result = measure(app, window, args.seconds)
    cpu = time.process_time() - cpu0
    stats = streamer.latest()[2]
    mean = lambda v: round(sum(v) / len(v), 3) if v else 0.0  # noqa: E731
    result["cpu_ms_per_frame"] = round(cpu * 1e3 / max(result["frames"], 1), 2)
    result["hand_over_ms"] = mean(timed.calls["hand-over"])
    result["panel_refresh_ms"] = mean(timed.calls["panel refresh"])
    result["panel_refreshes"] = len(timed.calls["panel refresh"])
    result["output_frames"] = stats.get("frames", 0) - stats0.get("frames", 0)
    result["solve_ms"] = round(stats.get("solve_ms", 0.0), 3)
    result["stage_ms"] = round(stats.get("output_ms", 0.0), 3)
    result["packets_received"] = {p: receivers.counts[p] - counts0[p] for p in PROTOCOLS}
    result["errors"] = stats.get("errors", {})
    result["panel_shown"] = window.outputs.panel_shown()
    if not result["output_frames"]:  # the running means are left over from the previous configuration
        result["solve_ms"] = result["stage_ms"] = 0.0
    return result


def run(args: argparse.Namespace) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="studio_fps_outputs_"))
    os.environ["MIA_STUDIO_HOME"] = str(scratch / "home")
    receivers = Receivers()
    try:
        model, capture, _ = inputs(args, scratch)
        app, window = open_studio(args, model)
        session = window.session
        window.open_capture(capture)
        session.set_paced(False)
        session.set_loop(True)
        wait_for(app, lambda: session.frames_shown > 3, 120, "the first frames")
        timed = Timed(window)
        results: dict = {"model": model, "capture": capture, "threads": args.threads, "mode": args.mode,
                         "window": args.size, "rate_hz": args.rate, "load_before": os.getloadavg()}
        plan = [("outputs off", False, False), ("outputs on (3 protocols), panel hidden", True, False),
                ("outputs on (3 protocols), Output panel shown", True, True)]
        plan = [(f"{name} #{k + 1}" if args.repeats > 1 else name, on, panel)
                for k in range(args.repeats) for name, on, panel in plan] + [("outputs off again", False, False)]
        for name, on, panel in plan:
            show_panel(window, panel)
            configure(window, receivers if on else None, args.rate)
            results[name] = one(app, window, timed, receivers, args)
        results["load_after"] = os.getloadavg()
        window.close()
        return results
    finally:
        receivers.close()
        shutil.rmtree(scratch, ignore_errors=True)


def report(results: dict) -> None:
    print(f"MIA Studio full loop with ARKit outputs ({results['mode']} view, window {results['window']}, "
          f"{results['threads']} inference thread(s), rate limit {results['rate_hz']:g} Hz, "
          f"load average {results['load_before'][0]:.1f} -> {results['load_after'][0]:.1f}):")
    print(f"  {'configuration':<46} {'fps':>6} {'infer':>6} {'render':>6} {'hand-over':>9} {'meters':>7} "
          f"{'solve':>6} {'stage':>6} {'CPU/frame':>9}  out frames  packets (vrchat/babble/livelink)")
    for key, v in results.items():
        if isinstance(v, dict) and "fps" in v:
            pk = v["packets_received"]
            print(f"  {key:<46} {v['fps']:6.1f} {v['infer_ms']:6.1f} {v['render_ms']:6.1f} "
                  f"{v['hand_over_ms']:9.3f} {v['panel_refresh_ms']:7.2f} {v['solve_ms']:6.2f} {v['stage_ms']:6.2f} "
                  f"{v['cpu_ms_per_frame']:9.1f}  {v['output_frames']:5d}/{v['frames']:<5d} "
                  f"{pk['vrchat']}/{pk['babble']}/{pk['livelink']}" + (f"  errors {v['errors']}" if v["errors"] else ""))
    print("  (ms per frame; 'meters' per 10 Hz panel refresh; solve/stage: the output thread's running means)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not os.environ.get("DISPLAY"):
        xvfb = shutil.which("xvfb-run")
        if xvfb is None:
            print("studio_fps_outputs: needs a display or xvfb-run", file=sys.stderr)
            return 2
        env = dict(os.environ, QT_QPA_PLATFORM="xcb")
        return subprocess.call([xvfb, "-a", "-s", "-screen 0 1600x1000x24", sys.executable, __file__, *argv], env=env)
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    args = parse(argv)
    results = run(args)
    report(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
