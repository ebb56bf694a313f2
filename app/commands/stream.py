"""`mia stream`: drive the model from a source and send ARKit weights to other apps, without the GUI.

    mia stream resources/demo_capture --livelink 127.0.0.1:11111 --frames 300
    mia stream synthetic --subject id003 --osc 127.0.0.1:9000
    mia stream http://headset:8080/cam0 http://headset:8080/cam1 http://headset:8080/cam2 --subject id001 \
        --osc 127.0.0.1:9000 --babble 127.0.0.1:8888 --rotate 0 0 180 --flip 1 --roi 0 40 20 200 160
    mia stream headset --headset diy --subject id001 --livelink 127.0.0.1:11111

SOURCE is a capture folder (replayed at its own frame rate, ``--loop`` to repeat), ``synthetic``
(the synthetic world rendered live) or three cameras (device indices or stream URLs: left eye,
right eye, mouth; ``--rotate``/``--flip``/``--roi`` turn and crop each, ``--headset NAME`` takes them, and
with SOURCE ``headset`` the URLs too, from a headset saved in the studio). Each frame: inference, the ARKit weights (engine.output.weights: the checkpoint's
ARKit head on e where it has one, with jawOpen from the bounded least-squares fit of the mesh; the
fit alone for a checkpoint without a head; ``--weights`` picks) and the output stage
(calibration, one-euro smoothing, rate limit, senders). The stage runs in this loop, not on the
GUI's output thread: there is no GUI to keep responsive, and every frame is sent.

On a terminal a progress bar shows fps and packets; in a log, one status line every 30 s. Ctrl-C
(or SIGTERM) stops cleanly: sockets closed, camera threads joined, a summary printed, exit 130.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from engine.errors import MiaError
from app.commands.reading import add_reading_options

PHASES = ("read", "inference", "weights", "output")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("stream", help="drive the model from a capture/synthetic/cameras and send ARKit "
                                      "weights over OSC (VRChat, Babble) and Live Link Face")
    p.add_argument("source", nargs="+", metavar="SOURCE",
                   help="a capture folder, 'synthetic', or three camera indices/URLs (left eye, right eye, mouth)")
    p.add_argument("--model", type=Path, help="checkpoint (default: resources/default_model.pt)")
    p.add_argument("--subject", help="subject id or neutral mesh file (default: the capture's or synthetic "
                                     "id000; required for cameras)")
    p.add_argument("--osc", metavar="HOST:PORT", help="VRChat OSC, VRCFaceTracking v2 parameters (VRChat: 127.0.0.1:9000)")
    p.add_argument("--babble", metavar="HOST:PORT", help="Babble-style ARKit OSC addresses (usually port 8888)")
    p.add_argument("--livelink", metavar="HOST:PORT", help="Live Link Face packets (usually port 11111)")
    p.add_argument("--frames", type=int, default=0, help="stop after this many frames (default: until the "
                                                         "capture ends, or Ctrl-C)")
    p.add_argument("--fps", type=float, help="frames a second to run at (default: the source's; 0: as fast "
                                             "as possible)")
    p.add_argument("--loop", action="store_true", help="replay a capture from the start when it ends")
    p.add_argument("--rate", type=float, default=60.0, help="most packets a second per protocol (0: every frame)")
    p.add_argument("--no-smoothing", action="store_true", help="send the raw weights (no one-euro filter)")
    p.add_argument("--bundle", action="store_true", help="pack each frame's OSC messages into one bundle")
    p.add_argument("--weights", choices=("auto", "head", "fit", "combined"), default="auto",
                   help="where the ARKit weights come from: the checkpoint's ARKit head on e, the bounded fit of "
                        "the mesh, or the head with jawOpen from the fit (auto, the default: combined when the "
                        "checkpoint has a head, else fit)")
    p.add_argument("--seed", type=int, default=0, help="synthetic source: the world's seed")
    p.add_argument("--headset", metavar="NAME", help="cameras: a headset saved in the studio (its rotation, "
                                                      "flip and crop per camera; SOURCE 'headset' also takes its URLs)")
    p.add_argument("--rotate", type=int, nargs=3, metavar="DEG", help="cameras: degrees clockwise to turn each "
                                                                         "camera upright (0, 90, 180 or 270 each)")
    p.add_argument("--flip", type=int, nargs="+", metavar="CAMERA", help="cameras: mirror these cameras left-right "
                                                                           "(0 left eye, 1 right eye, 2 mouth)")
    p.add_argument("--roi", type=int, nargs=5, action="append", metavar=("CAMERA", "X", "Y", "W", "H"),
                   help="cameras: crop of one camera for inference, in upright pixels (repeat per camera)")
    add_reading_options(p, copies=1, mirror=False, why=", to keep up with live cameras; the shipped model "
                        "recommends 16 copies + mirror: ~45 ms a frame on one core here")
    p.add_argument("--threads", type=int, help="inference threads (default: the studio's, MIA_STUDIO_THREADS "
                                                 "or all cores but one)")
    p.add_argument("--json", type=Path, help="also write the final statistics here")
    return p


# --------------------------------------------------------------------------- inputs

def source_spec(words: list[str]) -> dict[str, Any]:
    """SOURCE words -> an engine.runtime.sources spec; MiaError when they are none of the three kinds."""
    if words == ["headset"]:
        return {"kind": "cameras", "urls": None}
    if len(words) == 3:
        from engine.runtime.sources import check_camera_url
        for w in words:
            check_camera_url(w)
        return {"kind": "cameras", "urls": list(words)}
    if len(words) != 1:
        raise MiaError(f"SOURCE: got {len(words)} words ({' '.join(words)}); expected a capture folder, "
                       "'synthetic', or three camera indices/URLs")
    word = words[0]
    if word == "synthetic":
        return {"kind": "synthetic"}
    path = Path(word)
    if (path / "capture.json").is_file():
        return {"kind": "capture", "path": str(path)}
    if path.is_dir():
        raise MiaError(f"{path}: is not a capture folder (no capture.json)")
    if word.isdigit() or "://" in word:
        raise MiaError(f"SOURCE {word!r}: live input needs three cameras (left eye, right eye, mouth)")
    raise MiaError(f"SOURCE {word!r}: no such capture folder; expected a capture folder, 'synthetic', "
                   "or three camera indices/URLs")


def output_config(args) -> Any:
    from app.commands.driving import parse_host_port
    from engine.output.endpoint import Endpoint
    from engine.output.filters import OneEuroConfig
    from engine.output.stage import OutputConfig
    kw: dict[str, Any] = {}
    for option, protocol in (("osc", "vrchat"), ("babble", "babble"), ("livelink", "livelink")):
        text = getattr(args, option)
        if text is not None:
            host, port = parse_host_port(text, f"--{option}")
            kw[protocol] = Endpoint(True, host, port)
    if not (args.rate >= 0 and args.rate < float("inf")):
        raise MiaError(f"--rate {args.rate}: expected 0 (every frame) or a positive rate in Hz")
    return OutputConfig(rate_hz=args.rate, smoothing=OneEuroConfig(enabled=not args.no_smoothing),
                        osc_bundle=args.bundle, **kw)


def camera_settings(spec: dict[str, Any], args) -> list[Any]:
    """The three cameras: URLs from SOURCE (or the --headset profile for SOURCE 'headset'), then the
    profile's rotation/flip/crop, then --rotate/--flip/--roi over them. MiaError names a bad value."""
    from engine.runtime.sources import ROTATIONS, CameraSettings
    from engine.errors import SourceError
    base = [CameraSettings(u) for u in spec["urls"]] if spec["urls"] else None
    if args.headset:
        from app.profiles import HeadsetProfiles
        profiles = HeadsetProfiles()
        saved = profiles.get(args.headset)
        if saved is None:
            raise MiaError(f"--headset {args.headset!r}: no such saved headset (saved: "
                           f"{', '.join(profiles.names()) or 'none'}; set one up in the studio's Source panel)")
        base = [CameraSettings(b.url if base else s.url, s.rotate, s.flip, s.roi) for b, s in zip(base or saved, saved)]
    if base is None:
        raise MiaError("SOURCE 'headset' needs --headset NAME (a headset saved in the studio)")
    rotate = args.rotate or [c.rotate for c in base]
    for cam, deg in enumerate(rotate):
        if deg not in ROTATIONS:
            raise MiaError(f"--rotate: camera {cam} by {deg} degrees; expected one of {ROTATIONS}")
    flip = [c.flip for c in base] if args.flip is None else [c in args.flip for c in range(3)]
    for cam in args.flip or []:
        if cam not in (0, 1, 2):
            raise MiaError(f"--flip {cam}: expected camera 0 (left eye), 1 (right eye) or 2 (mouth)")
    rois = [c.roi for c in base]
    for cam, x, y, w, h in args.roi or []:
        if cam not in (0, 1, 2) or w <= 0 or h <= 0 or x < 0 or y < 0:
            raise MiaError(f"--roi {cam} {x} {y} {w} {h}: expected CAMERA (0-2) X Y W H with X, Y >= 0 and W, H > 0")
        rois[cam] = (x, y, w, h)
    try:
        return [CameraSettings(c.url, int(rotate[k]), bool(flip[k]), rois[k]) for k, c in enumerate(base)]
    except SourceError as err:
        raise MiaError(str(err)) from None


def open_stream_source(spec: dict[str, Any], args) -> Any:
    from engine.runtime.sources import CaptureSource, LiveCameraSource, SyntheticSource
    if spec["kind"] == "capture":
        return CaptureSource(spec["path"])
    if spec["kind"] == "synthetic":
        fps = args.fps if args.fps else None
        return SyntheticSource(args.subject or 0, args.seed, fps=fps, paced=args.fps != 0)
    return LiveCameraSource(camera_settings(spec, args), args.headset or "", fps=args.fps or 30.0)


def driven_subject(engine: Any, source: Any, args) -> Any:
    from app.commands.driving import resolve_subject
    if source.kind == "synthetic":
        return engine.make_subject(str(source.subject_id), source.neutral)
    capture = getattr(source, "path", None)
    return resolve_subject(engine, args.subject or str(source.subject_id), capture)


# --------------------------------------------------------------------------- the loop

class Status:
    """fps, packets and errors: a tqdm bar on a terminal, a line every 30 s in a log."""

    def __init__(self, total: int, titles: dict[str, str]) -> None:
        from app.commands.progress import log_interval
        self.titles = titles
        self.tty = sys.stderr.isatty()
        self.interval = log_interval()
        self.start = time.perf_counter()
        self.last = self.start
        self.bar = None
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=total or None, unit="frame", desc="stream", mininterval=self.interval)
        self.errors: dict[str, str] = {}

    def packets_text(self, packets: dict[str, int]) -> str:
        return ", ".join(f"{self.titles[p]} {packets.get(p, 0)}" for p in self.titles) or "no outputs"

    def update(self, frames: int, stats: dict, note: str = "") -> None:
        for key, message in stats["errors"].items():
            if self.errors.get(key) != message:
                self.write(f"mia stream: {message}")
        self.errors = dict(stats["errors"])
        now = time.perf_counter()
        if now - self.last < self.interval:
            return
        self.last = now
        fps = frames / max(now - self.start, 1e-9)
        text = f"{fps:.1f} fps, packets: {self.packets_text(stats['packets'])}" + (f", {note}" if note else "")
        if self.bar is not None:
            self.bar.n = frames
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.refresh()
        else:
            print(f"mia stream: {frames} frames, {text}", file=sys.stderr, flush=True)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self, frames: int) -> None:
        if self.bar is not None:
            self.bar.n = frames
            self.bar.close()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the stream like Ctrl-C does (service managers stop programs with it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run(args) -> int:
    from app.commands.driving import model_path
    if args.frames < 0:
        raise MiaError(f"--frames {args.frames}: expected a positive number (0: no limit)")
    if args.fps is not None and not (0 <= args.fps < 10_000):
        raise MiaError(f"--fps {args.fps}: expected 0 (as fast as possible) or a positive rate")
    if args.threads is not None and args.threads < 1:
        raise MiaError("--threads must be at least 1")
    spec = source_spec(args.source)
    if spec["kind"] != "cameras" and (args.headset or args.rotate or args.flip or args.roi):
        raise MiaError("--headset, --rotate, --flip and --roi are for live cameras; SOURCE is a "
                       f"{spec['kind']}")
    if spec["kind"] == "cameras":
        camera_settings(spec, args)  # every camera option checked before the model loads
    if spec["kind"] == "cameras" and not args.subject:
        raise MiaError("live cameras: pass --subject ID (or a neutral mesh file) for the person wearing the headset")
    config = output_config(args)
    checkpoint = model_path(args.model)
    from engine.registration.blas import single_threaded_blas
    # numpy's work per frame (the ARKit fit, a compact capture's ground-truth meshes) is small; split
    # over the cores of a busy machine, OpenBLAS's spinning threads slowed the whole loop ~3x (measured).
    with sigterm_as_interrupt(), single_threaded_blas():
        return _stream(args, spec, config, checkpoint)


def _stream(args, spec: dict[str, Any], config: Any, checkpoint: Path) -> int:
    import numpy as np

    from app.commands.driving import default_threads
    from engine.output.stage import PROTOCOL_TITLES, PROTOCOLS, OutputStage
    source = stage = status = None
    titles: dict[str, str] = {}
    frames, interrupted = 0, False
    ms = {k: 0.0 for k in PHASES}
    start = time.perf_counter()
    try:
        from engine.runtime.inference import InferenceEngine
        from engine.output.weights import WeightSource
        source = open_stream_source(spec, args)
        engine = InferenceEngine(checkpoint, threads=args.threads or default_threads(), averaging=args.averaging,
                                 mirror=args.mirror)
        subject = driven_subject(engine, source, args)
        engine.set_subject(subject.name, subject.neutral)
        if source.kind == "cameras":
            engine.set_rois(source.rois)
        weights = WeightSource.for_checkpoint(engine.checkpoint, args.weights)
        weights.solver  # noqa: B018 (built before the first frame: ~1 s, not part of the frame times)
        stage = OutputStage(config)
        if stage.errors:
            raise MiaError("; ".join(stage.errors.values()))
        active = [p for p in PROTOCOLS if p in stage.senders]
        titles = {p: PROTOCOL_TITLES[p] for p in active}
        targets = ", ".join(f"{titles[p]} {config.endpoint(p).host}:{config.endpoint(p).port}" for p in active)
        print(f"mia stream: {source.name} -> {targets or 'no outputs (weights computed, nothing sent)'}; "
              f"subject {subject.name}, model {checkpoint.name}", file=sys.stderr, flush=True)
        print(f"mia stream: {weights.describe()}", file=sys.stderr, flush=True)
        pace = source.kind == "capture" and args.fps != 0
        period = 1.0 / (args.fps or source.fps) if pace else 0.0
        status = Status(args.frames, titles)
        start = time.perf_counter()
        while not args.frames or frames < args.frames:
            if pace:
                delay = start + frames * period - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            t0 = time.perf_counter()
            frame = source.read(timeout=0.5)
            t1 = time.perf_counter()
            if frame is None:  # the capture ended
                if not args.loop or len(source) == 0:
                    break
                source.seek(0)
                continue
            if not frame.fresh or not frame.complete:
                states = ", ".join(f"{s.text}" for s in frame.camera_states)
                status.update(frames, stage.stats(), f"cameras: {states}")
                continue
            result = engine(frame.images)
            t2 = time.perf_counter()
            arkit = weights.arkit(result.mesh, subject.neutral, result.embedding)
            gaze = weights.gaze(result.mesh, subject.neutral)
            t3 = time.perf_counter()
            stage.process(np.asarray(arkit), gaze, t3 - start)
            t4 = time.perf_counter()
            for k, dt in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                ms[k] += dt * 1e3
            frames += 1
            status.update(frames, stage.stats())
    except KeyboardInterrupt:
        interrupted = True
    finally:
        with ignoring_sigint():  # a second Ctrl-C must not cut the clean-up short
            elapsed = time.perf_counter() - start
            stats = stage.stats() if stage is not None else None
            if status is not None:
                status.close(frames)
            if stage is not None:
                stage.close()
            if source is not None:
                source.close()
    if stats is None:  # interrupted while loading
        print("mia stream: stopped (Ctrl-C) before streaming began", file=sys.stderr)
        return 130
    summary = {"frames": frames, "seconds": round(elapsed, 3), "fps": round(frames / max(elapsed, 1e-9), 2),
               "packets": {p: stats["packets"][p] for p in titles}, "errors": stats["errors"],
               "ms_per_frame": {k: round(v / max(frames, 1), 3) for k, v in ms.items()},
               "interrupted": interrupted, "subject": subject.name, "source": source.name,
               "weights": weights.mode, "weights_reason": weights.reason}
    if hasattr(source, "settings"):
        summary["cameras"] = [c.to_dict() for c in source.settings]
    print(f"mia stream: {frames} frame{'s' if frames != 1 else ''} in {elapsed:.2f} s ({summary['fps']:.1f} fps); packets: "
          f"{status.packets_text(summary['packets'])}")
    print("mia stream: ms per frame: " + ", ".join(f"{k} {v:.2f}" for k, v in summary["ms_per_frame"].items()))
    if args.json:
        try:
            args.json.write_text(json.dumps(summary, indent=1))
        except OSError as err:
            raise MiaError(f"--json {args.json}: cannot write it ({err.strerror or err})") from None
    if interrupted:
        print("mia stream: stopped by Ctrl-C; sockets closed", file=sys.stderr)
        return 130
    return 0


@contextmanager
def ignoring_sigint() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
