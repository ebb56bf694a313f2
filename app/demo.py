"""`make demo`: open MIA Studio on the shipped model and demo capture.

With a display the window opens for the user. Without one (a server, CI) the demo re-runs itself
under ``xvfb-run``, plays ``--frames`` frames of the default capture unattended, saves
``out/demo_screenshot.png`` and prints what it showed: frames, mean fps and inference time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

XVFB_SCREEN = "1600x1000x24"
SCREENSHOT = Path("out/demo_screenshot.png")
SUMMARY = Path("out/demo_summary.json")
REEXEC_MARK = "MIA_DEMO_UNDER_XVFB"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app.demo", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=150, help="frames to play when there is no display")
    p.add_argument("--screenshot", type=Path, default=SCREENSHOT)
    p.add_argument("--summary", type=Path, default=SUMMARY, help="where the unattended run's summary goes")
    p.add_argument("--capture", help="capture folder (default: resources/demo_capture)")
    p.add_argument("--model", help="model checkpoint (default: resources/default_model.pt)")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--headless", action="store_true", help="run unattended even with a display")
    return p


def _studio_args(args: argparse.Namespace, unattended: bool) -> list[str]:
    out = []
    if args.capture:
        out += ["--capture", args.capture]
    if args.model:
        out += ["--model", args.model]
    if unattended:
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        out += ["--frames", str(args.frames), "--quit-after", "--screenshot", str(args.screenshot),
                "--timeout", str(args.timeout), "--summary-json", str(args.summary)]
    return out


def _reexec_under_xvfb(argv: list[str]) -> int:
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        print("demo: no display and no xvfb-run; install it with `make apt` (Debian package xvfb) "
              "or run on a machine with a display", file=sys.stderr)
        return 2
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", **{REEXEC_MARK: "1"})
    cmd = [xvfb, "-a", "-s", f"-screen 0 {XVFB_SCREEN}", sys.executable, "-m", "app.demo", *argv]
    return subprocess.call(cmd, env=env)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not os.environ.get("DISPLAY"):
        if os.environ.get(REEXEC_MARK):
            print("demo: xvfb-run started but DISPLAY is still unset", file=sys.stderr)
            return 2
        return _reexec_under_xvfb(argv + ([] if args.headless else ["--headless"]))
    unattended = args.headless or bool(os.environ.get(REEXEC_MARK))
    if unattended:
        os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    from app.main import main as studio_main
    rc = studio_main(_studio_args(args, unattended))
    if unattended:
        print(f"demo: screenshot {args.screenshot.resolve()}, summary {args.summary.resolve()}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
