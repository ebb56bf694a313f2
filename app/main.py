"""`mia-studio`: start the GUI on the shipped model and demo capture (or the ones given).

    mia-studio [--capture PATH] [--model PATH] [--screenshot PNG --frames N --quit-after]

``--frames N`` waits for N driven frames before taking the screenshot (and quitting with
``--quit-after``); a one-line summary of frames shown, fps and inference time is printed then, which
is what ``make demo`` and the tests use to run the real window unattended.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field

from app.paths import default_threads, set_application_names

ATTENDED_TIMEOUT_S = 600.0


@dataclass
class RunStats:
    """What an unattended run reports."""

    frames_shown: int = 0
    driven_frames: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_frame: float = 0.0
    infer_ms: list[float] = field(default_factory=list)

    def add(self, bundle) -> None:
        if not bundle.fresh:
            return
        self.frames_shown += 1
        if self.first_frame == 0.0:
            self.first_frame = time.perf_counter()
        if bundle.mesh is not None:
            self.driven_frames += 1
            self.infer_ms.append(bundle.infer_ms)

    def summary(self) -> dict:
        span = time.perf_counter() - self.first_frame if self.first_frame else 0.0
        fps = (self.frames_shown - 1) / span if span > 0 and self.frames_shown > 1 else 0.0
        infer = sum(self.infer_ms) / len(self.infer_ms) if self.infer_ms else 0.0
        return {"frames_shown": self.frames_shown, "driven_frames": self.driven_frames,
                "mean_fps": round(fps, 2), "mean_inference_ms": round(infer, 2),
                "seconds": round(time.perf_counter() - self.started, 2)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mia-studio", description="MIA Studio: drive a face avatar from HMC cameras")
    p.add_argument("--capture", help="capture folder to open (default: the demo capture)")
    p.add_argument("--model", help="model checkpoint (default: the last one used, else the shipped one)")
    p.add_argument("--synthetic", metavar="SUBJECT", help="start on the synthetic live source of this subject")
    p.add_argument("--screenshot", help="save a PNG of the window after --frames frames")
    p.add_argument("--frames", type=int, default=0, help="frames to show before the screenshot / quitting")
    p.add_argument("--quit-after", action="store_true", help="quit after --frames frames (and the screenshot)")
    p.add_argument("--timeout", type=float, default=120.0, help="give up an unattended run after this many s")
    p.add_argument("--threads", type=int, default=default_threads(),
                   help="inference threads (default: cores - 1, at most 4; env MIA_STUDIO_THREADS)")
    p.add_argument("--summary-json", help="also write the run summary to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_application_names()
    from PySide6.QtWidgets import QApplication

    from app.logs import install_excepthook, setup_logging
    log_path = setup_logging()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from app.main_window import MainWindow
    window = MainWindow(threads=args.threads)
    install_excepthook(window.error_shown.emit)
    window.show()
    stats = RunStats()
    window.session.frame_ready.connect(stats.add)
    if args.synthetic:
        model = args.model or window.startup_model()
        if model:
            window.open_model(model)
        spec = {"kind": "synthetic", "subject": args.synthetic, "seed": 0}
        window.source_panel.set_spec(spec)
        window.open_source(spec)
    else:
        window.start(args.capture, args.model)
    unattended = args.frames > 0 or args.quit_after
    result = {"rc": 0}
    if unattended:
        _watch(app, window, stats, args, result)
    rc = app.exec()
    if unattended:
        summary = stats.summary()
        summary["log"] = log_path
        print("mia-studio summary: " + json.dumps(summary))
        if args.summary_json:
            with open(args.summary_json, "w") as fh:
                json.dump(summary, fh, indent=1)
    return result["rc"] or rc


def _watch(app, window, stats: RunStats, args, result: dict) -> None:
    """Poll until enough frames were shown (or time ran out), then screenshot and maybe quit."""
    from PySide6.QtCore import QTimer
    deadline = time.perf_counter() + (args.timeout if args.frames else ATTENDED_TIMEOUT_S)
    timer = QTimer(window)

    def check() -> None:
        enough = args.frames and stats.frames_shown >= args.frames
        late = time.perf_counter() > deadline
        if not (enough or late):
            return
        timer.stop()
        if late and not enough:
            print(f"mia-studio: only {stats.frames_shown} of {args.frames} frames in {args.timeout:g} s; "
                  f"status: {window.status.message_text}", file=sys.stderr)
            result["rc"] = 3
        if args.screenshot:
            window.save_screenshot(args.screenshot)
            print(f"screenshot saved to {args.screenshot}")
        if args.quit_after:
            window.close()
            app.quit()

    timer.timeout.connect(check)
    timer.start(50)


if __name__ == "__main__":
    raise SystemExit(main())
