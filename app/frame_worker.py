"""The per-frame loop, off the GUI thread: read three views → infer → publish, paced to the source.

The worker thread owns the source and the inference engine. The GUI never calls them directly:
it posts commands (app/worker_protocol.py: open a source, load a model, seek, play, change subject
or targets) which the loop applies between frames, so nothing races with a frame in flight and a synthetic source's GL
context stays on the thread that made it.

Results leave through a one-slot mailbox and ``frame_available`` is emitted only when the slot was
empty, so at most one notification is ever queued to the GUI. The loop does not compute a frame
while the GUI has not taken the previous one (no CPU is spent on frames nobody will see; the next
frame is inferred while the GUI draws the current one). If drawing falls behind, stale frames are
skipped, never queued: live cameras only ever hand over their newest picture, and real-time
playback of a capture jumps ahead to the frame that is due. A frame that still finds the slot full
(a state-only update) replaces the unread one.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QThread, Signal

from app.logs import LOG, report
from app.subjects import NeutralSource, SubjectSpec
from app.worker_protocol import (CloseSource, Command, FrameBundle, LoadModel, OpenSource, Play, Quit, Refresh,
                                 ResolveSubject, Seek, SetLoop, SetPaced, SetRois, SetSpeed, SetSubject, SetTargets, ShowTargets,
                                 SourceOpened, Step, SubjectSet, TargetsSet, Wake)
from engine.mesh_normals import TopologyNormals
from engine.runtime.sources import GT_CACHE_FRAMES, FrameSource, SourceFrame, open_source

__all__ = ["FrameBundle", "FrameWorker"]  # FrameBundle lives in app/worker_protocol.py

SLOT_POLL_S = 0.05
STATE_REFRESH_S = 0.25  # live source without news: still tell the GUI about camera states this often
ERROR_REPEAT_S = 3.0  # the same per-frame error is reported at most this often


Resolver = Callable[[FrameSource | None, Any], SubjectSpec | None]


class FrameWorker(QThread):
    """Owns source + engine; runs the loop; see the module docstring."""

    frame_available = Signal()
    source_opened = Signal(object)  # SourceOpened
    source_failed = Signal(str)
    model_loaded = Signal(dict)  # InferenceEngine.info()
    model_failed = Signal(str)
    subject_set = Signal(object)  # SubjectSet
    targets_set = Signal(object)  # TargetsSet
    playing_changed = Signal(bool)
    problem = Signal(str)

    def __init__(self, resolver: Resolver, threads: int = 2, backend: str = "torch",
                 averaging: int | None = None, mirror: bool | None = None) -> None:
        super().__init__()
        self.setObjectName("frame-worker")
        self.resolver = resolver
        self.threads, self.backend = threads, backend
        self.averaging = averaging  # test-time averaging copies; None: the checkpoint's recommendation
        self.mirror = mirror  # also read each frame's mirror image; None: the checkpoint's recommendation
        self._commands: queue.Queue[Command] = queue.Queue()
        self._slot: FrameBundle | None = None
        self._slot_lock = threading.Lock()
        self._errors: list[tuple[int, dict[str, float]]] = []
        self.dropped = 0  # stale frames replaced in the slot before the GUI took them
        self.skipped = 0  # capture frames jumped over to keep real time
        self.source: FrameSource | None = None
        self.engine: Any = None
        self._masks: RegionMeans | None = None
        self._normals: TopologyNormals | None = None
        self._truth_normals: dict[int, np.ndarray] = {}  # a recorded source's ground-truth normals, by frame
        self._subject_override: SubjectSpec | None = None
        self._targets: list[SubjectSpec] = []
        self._targets_shown = True  # the retarget grid is on screen: make the targets' textures and normals
        self._rois: list = [None, None, None]
        self._playing = False
        self._speed = 1.0
        self._loop = True
        self._paced = True
        self._pending: tuple[int, int] | None = None  # (frame, request id) to show once
        self._next_due = 0.0
        self._last_publish = 0.0
        self._fps = 0.0
        self._last_error = ("", 0.0)
        self._quit = False
        self._applied_key: tuple | None = None  # the subject spec last applied (see _spec_key)
        self._handlers: dict[type, Callable[[Any], None]] = {
            OpenSource: self._open, CloseSource: lambda _c: self._close_source(), LoadModel: self._load_model,
            SetSubject: self._set_subject, ResolveSubject: self._resolve_again,
            SetTargets: self._set_targets, ShowTargets: self._show_targets, SetRois: self._set_rois,
            Play: self._play, Seek: self._seek, Step: self._step, SetSpeed: self._set_speed,
            SetLoop: self._set_loop, SetPaced: self._set_paced, Refresh: lambda _c: self._refresh(),
            Wake: lambda _c: None, Quit: self._stop_loop}

    # ----- GUI side
    def post(self, command: Command) -> None:
        """Queue a command (app/worker_protocol.py) for the loop (thread-safe, never blocks)."""
        if type(command) not in self._handlers:
            raise TypeError(f"FrameWorker.post: {command!r} is not a worker command (app/worker_protocol.py)")
        self._commands.put(command)

    def take(self) -> FrameBundle | None:
        """The newest unread frame, emptying the slot (and waking the loop if it waits for that)."""
        with self._slot_lock:
            bundle, self._slot = self._slot, None
        self._commands.put(Wake())
        return bundle

    def take_errors(self) -> list[tuple[int, dict[str, float]]]:
        """Region errors of every inferred frame since the last call, skipped frames included
        (the curves must not have holes where the GUI dropped a stale frame)."""
        with self._slot_lock:
            errors, self._errors = self._errors, []
        return errors

    def stop(self, wait_ms: int = 5000) -> None:
        self.post(Quit())
        self.wait(wait_ms)

    # ----- the loop
    def run(self) -> None:
        try:
            while not self._quit:
                self._apply_commands(self._wait_time())
                if not self._quit and self._frame_due():
                    self._tick()
        finally:
            self._close_source()

    def _slot_busy(self) -> bool:
        with self._slot_lock:
            return self._slot is not None and self._slot.fresh

    def _wait_time(self) -> float | None:
        """How long the loop may sleep waiting for commands (None: until one arrives)."""
        src = self.source
        if src is None:
            return None
        if self._slot_busy():
            return SLOT_POLL_S  # take() posts a wake-up; the timeout is only a safety net
        if src.live or self._pending is not None:
            return 0.0
        if not self._playing:
            return None
        return 0.0 if not self._paced else max(0.0, self._next_due - time.perf_counter())

    def _frame_due(self) -> bool:
        src = self.source
        if src is None or self._slot_busy():
            return False
        if src.live or self._pending is not None:
            return True
        return self._playing and (not self._paced or time.perf_counter() >= self._next_due)

    def _apply_commands(self, timeout: float | None) -> None:
        try:
            command = self._commands.get(timeout=timeout) if timeout != 0.0 else self._commands.get_nowait()
        except queue.Empty:
            return
        while True:
            self._apply(command)
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return

    def _apply(self, command: Command) -> None:
        try:
            self._handlers[type(command)](command)
        except Exception as err:  # a command must never kill the loop
            self.problem.emit(report(err, _doing(command)))

    # ----- commands
    def _stop_loop(self, _command: Quit) -> None:
        self._quit = True

    def _open(self, command: OpenSource) -> None:
        self._close_source()
        try:
            source = open_source(command.spec, command.profile)
        except Exception as err:
            self.source_failed.emit(report(err, "cannot open the source"))
            return
        self.source = source
        self._pending = None if source.live else (0, command.request)
        self._next_due = time.perf_counter()
        self.source_opened.emit(SourceOpened(
            kind=source.kind, name=source.name, live=source.live, fps=source.fps, subject_id=source.subject_id,
            headset_id=source.headset_id, spec=command.spec,
            frame_count=None if source.live else len(source),  # type: ignore[arg-type]
            has_ground_truth=bool(getattr(source, "has_ground_truth", source.kind == "synthetic"))))
        self._subject_override = None
        self._apply_subject()

    def _engine(self, path: str, backend: str) -> Any:
        """The engine reading as asked; a model without a mirror map (another topology than the
        face model's) is read without the mirror rather than refused (the mirror is a default)."""
        from engine.errors import NoMirrorError
        from engine.runtime.inference import InferenceEngine
        try:
            return InferenceEngine(path, backend=backend, threads=self.threads, device=_device(),
                                   averaging=self.averaging, mirror=self.mirror)
        except NoMirrorError as err:
            LOG.warning("%s: %s; reading each frame without its mirror image", path, err)
            return InferenceEngine(path, backend=backend, threads=self.threads, device=_device(),
                                   averaging=self.averaging, mirror=False)

    def _load_model(self, command: LoadModel) -> None:
        path = command.path
        try:
            try:
                engine = self._engine(path, self.backend)
            except Exception as err:
                if self.backend != "onnx":
                    raise
                # a PS baseline, or a graph onnxruntime cannot run: the same model in torch
                LOG.warning("%s: onnxruntime cannot drive it (%s); using torch", path, err)
                engine = self._engine(path, "torch")
        except Exception as err:
            self.model_failed.emit(report(err, f"cannot load the model {path}"))
            return
        self.engine = engine
        self._masks, self._normals = _topology_helpers(engine)
        self._truth_normals = {}
        engine.set_rois(self._rois)
        info = engine.info()
        self.model_loaded.emit(info)
        self._apply_subject()
        self._apply_targets()

    def _set_subject(self, command: SetSubject) -> None:
        """A subject chosen by the user (None: back to the source's own)."""
        self._subject_override = command.spec
        self._apply_subject()
        self._refresh()

    def _resolve_again(self, _command: ResolveSubject) -> None:
        """Apply the subject again only when resolving it now gives another answer."""
        if self.engine is None or _spec_key(self._wanted_subject()) == self._applied_key:
            return
        self._apply_subject()
        self._refresh()

    def _wanted_subject(self) -> SubjectSpec | None:
        return self._subject_override or self.resolver(self.source, self.engine)

    def _set_targets(self, command: SetTargets) -> None:
        self._targets = list(command.specs)
        self._apply_targets()
        self._refresh()

    def _show_targets(self, command: ShowTargets) -> None:
        shown = bool(command.shown)
        if shown and not self._targets_shown:
            self._refresh()  # a paused capture's grid gets the textures it skipped at once
        self._targets_shown = shown

    def _set_rois(self, command: SetRois) -> None:
        self._rois = list(command.rois)
        if self.engine is not None:
            self.engine.set_rois(self._rois)
        self._refresh()

    def _play(self, command: Play) -> None:
        if self.source is None or self.source.live:
            return
        self._playing = bool(command.playing)
        self._next_due = time.perf_counter()
        self.playing_changed.emit(self._playing)

    def _seek(self, command: Seek) -> None:
        src = self.source
        if src is None or src.live:
            return
        self._pending = (int(np.clip(command.index, 0, len(src) - 1)), command.request)  # type: ignore[arg-type]

    def _step(self, command: Step) -> None:
        src = self.source
        if src is None or src.live:
            return
        current = getattr(src, "position", 1) - 1
        self._seek(Seek(current + int(command.delta), command.request))

    def _set_speed(self, command: SetSpeed) -> None:
        self._speed = max(0.01, float(command.speed))

    def _set_loop(self, command: SetLoop) -> None:
        self._loop = bool(command.loop)

    def _set_paced(self, command: SetPaced) -> None:
        self._paced = bool(command.paced)
        if hasattr(self.source, "paced"):
            self.source.paced = self._paced  # type: ignore[union-attr]

    # ----- subject and targets
    def _apply_subject(self) -> None:
        if self.engine is None:
            return
        spec = self._wanted_subject()
        self._applied_key = _spec_key(spec)
        engine, note = self.engine, ""
        try:
            subject = None if spec is None else engine.set_subject(spec.name, spec.neutral, spec.avatar)
        except Exception as err:
            note = f"Cannot drive {spec.name} with its neutral mesh ({report(err)}). "  # type: ignore[union-attr]
            subject = None
        if subject is None:
            name = (spec.name if spec else None) or (self.source.subject_id if self.source else None)
            note += _template_note(name)
            spec = SubjectSpec(name or "template", engine.checkpoint.template, None, "the model's template",
                               NeutralSource.TEMPLATE)
            subject = engine.set_subject(spec.name if name else "template", spec.neutral, None)
        textured = subject.has_adapter and subject.avatar is not None
        why = ("" if textured else " — no adaptation layer F_i in the model" if not subject.has_adapter
               else " — no avatar decoder D_i found")
        self.subject_set.emit(SubjectSet(
            name=spec.name, origin=spec.origin, textured=textured, note=note,
            mode=("shape + texture (G, F_i, D_i)" if textured else f"shape only (G){why}"),
            template=spec.source is NeutralSource.TEMPLATE, neutral=np.asarray(subject.neutral),
            override=self._subject_override is not None))

    def _apply_targets(self) -> None:
        engine = self.engine
        if engine is None:
            return
        wanted = {s.name: s for s in self._targets}
        for name in list(engine.targets):
            engine.remove_target(name)
        driven, problems = [], []
        for name, spec in wanted.items():
            try:
                engine.add_target(name, spec.neutral, spec.avatar)
                driven.append(name)
            except Exception as err:
                problems.append(report(err, f"retarget {name}"))
        self.targets_set.emit(TargetsSet(tuple(driven), tuple(problems)))

    # ----- frames
    def _refresh(self) -> None:
        """Re-run the frame on screen (paused recorded sources) so a change shows at once."""
        src = self.source
        if src is not None and not src.live and not self._playing and self._pending is None:
            self._pending = (max(0, getattr(src, "position", 1) - 1), 0)

    def _tick(self) -> None:
        src = self.source
        assert src is not None
        t0 = time.perf_counter()
        request = 0
        try:
            if self._pending is not None:
                index, request = self._pending
                self._pending = None
                src.seek(index)
            elif self._playing and self._paced and not src.live:
                self._catch_up(src)
            frame = src.read(timeout=0.1)
            if frame is None and not src.live:
                frame = self._end_of_capture(src)
                if frame is None:
                    return
        except Exception as err:
            self._problem(report(err, f"cannot read {src.name}"))
            self._playing = False
            self.playing_changed.emit(False)
            return
        if self._playing and not src.live:
            self._next_due += 1.0 / (src.fps * self._speed)
        read_ms = (time.perf_counter() - t0) * 1e3
        if src.live and not frame.fresh:
            if time.perf_counter() - self._last_publish >= STATE_REFRESH_S:
                self._publish(FrameBundle(frame.index, frame.timestamp, True, frame.images,
                                          frame.camera_states, fresh=False))
            return
        self._publish(self._infer(frame, src.live, read_ms, request))

    def _catch_up(self, src: FrameSource) -> None:
        """Real-time playback that fell behind skips to the frame that is due now."""
        period = 1.0 / (src.fps * self._speed)
        behind = int((time.perf_counter() - self._next_due) / period)
        if behind <= 0:
            return
        self._next_due += behind * period
        self.skipped += behind
        n = len(src)  # type: ignore[arg-type]
        target = src.position + behind  # type: ignore[attr-defined]
        if target >= n:
            target = target % n if self._loop else n - 1
        src.seek(target)

    def _end_of_capture(self, src: FrameSource) -> SourceFrame | None:
        if self._loop and self._playing:
            src.seek(0)
            return src.read()
        if self._playing:
            self._playing = False
            self.playing_changed.emit(False)
        return None

    def _infer(self, frame: SourceFrame, live: bool, read_ms: float, request: int) -> FrameBundle:
        bundle = FrameBundle(frame.index, frame.timestamp, live, frame.images, frame.camera_states,
                             frame.ground_truth, read_ms=read_ms, request=request)
        engine = self.engine
        if engine is None or engine.subject is None or not frame.complete:
            return bundle
        t0 = time.perf_counter()
        drawable = self._targets_shown
        try:
            result = engine(frame.images, target_textures=drawable)
        except Exception as err:
            self._problem(report(err, "inference failed"))
            return bundle
        bundle.infer_ms = (time.perf_counter() - t0) * 1e3
        bundle.latency_ms = dict(result.latency_ms)
        bundle.mesh, bundle.texture, bundle.code = result.mesh, result.texture, result.code
        bundle.embedding = result.embedding
        bundle.targets = {name: (t.mesh, t.texture) for name, t in result.targets.items()}
        bundle.targets_drawable = drawable
        gt = frame.ground_truth
        if self._normals is not None:
            bundle.normals = _normals_of(self._normals, {"mesh": result.mesh})
            if (truth := self._ground_truth_normals(frame.index, gt, live)) is not None:
                bundle.normals["ground_truth"] = truth
            if drawable:
                bundle.target_normals = _normals_of(self._normals, {n: t.mesh for n, t in result.targets.items()})
        if gt is not None and gt.shape == result.mesh.shape:
            bundle.vertex_error = np.linalg.norm(result.mesh - gt, axis=1).astype(np.float32)
            if self._masks is not None:
                bundle.region_error = self._masks(bundle.vertex_error)
                with self._slot_lock:
                    self._errors.append((bundle.index, bundle.region_error))
                    del self._errors[:-10_000]
        return bundle

    def _ground_truth_normals(self, index: int, gt: np.ndarray | None, live: bool) -> np.ndarray | None:
        """Normals of a frame's ground truth; a recorded capture's are kept (read-only) for looped
        playback, as its source keeps the meshes."""
        if gt is None or self._normals is None:
            return None
        if live:
            return self._normals(gt)
        normals = self._truth_normals.get(index)
        if normals is None and (normals := self._normals(gt)) is not None:
            normals.setflags(write=False)
            if len(self._truth_normals) < GT_CACHE_FRAMES:
                self._truth_normals[index] = normals
        return normals

    def _publish(self, bundle: FrameBundle) -> None:
        now = time.perf_counter()
        if bundle.fresh and self._last_publish:
            rate = 1.0 / max(now - self._last_publish, 1e-6)
            self._fps = rate if self._fps == 0 else 0.9 * self._fps + 0.1 * rate
        if bundle.fresh:
            self._last_publish = now
        bundle.worker_fps = self._fps
        with self._slot_lock:
            was_empty = self._slot is None
            if not was_empty and self._slot.request and not bundle.request:  # type: ignore[union-attr]
                bundle.request = self._slot.request  # type: ignore[union-attr]  # keep the answer to a seek
            self._slot = bundle
        if was_empty:
            self.frame_available.emit()
        else:
            self.dropped += 1

    def _problem(self, message: str) -> None:
        last, when = self._last_error
        if message != last or time.monotonic() - when > ERROR_REPEAT_S:
            self._last_error = (message, time.monotonic())
            self.problem.emit(message)

    def _close_source(self) -> None:
        src, self.source = self.source, None
        self._truth_normals = {}
        with self._slot_lock:
            self._errors = []
        self._playing = False
        self._pending = None
        self._fps = 0.0
        self._last_publish = 0.0
        if src is not None:
            try:
                src.close()
            except Exception as err:
                LOG.warning("closing %s: %s", src.name, err)


def _device() -> str:
    """MIA_STUDIO_DEVICE, else the GPU when torch sees one (one frame at a time is still faster);
    engine.device.pick_device applies the same rule as training."""
    import os

    from engine.device import pick_device
    return str(pick_device(os.environ.get("MIA_STUDIO_DEVICE", "").strip() or "auto"))


def _template_note(name: str | None) -> str:
    """Why the template face is driven, and what to do about it."""
    if name is None:
        return ("No subject chosen for this source: driving the model's template face. Load the wearer's "
                "neutral mesh in the Neutral mesh panel.")
    return (f"No neutral mesh found for {name} (not in the model, no subjects/{name}/neutral.obj beside the "
            "capture or in resources/subjects): driving the model's template face. Load its neutral mesh.")


class RegionMeans:
    """Mean of a per-vertex value over each region, as one (R, V) product (a boolean-mask mean per region
    per frame cost the worker more than a millisecond)."""

    def __init__(self, masks: dict[str, np.ndarray]) -> None:
        self.regions = list(masks)
        weights = np.stack([np.asarray(m, np.float64) for m in masks.values()])
        self.weights = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1.0)

    def __call__(self, per_vertex: np.ndarray) -> dict[str, float]:
        means = self.weights @ np.asarray(per_vertex, np.float64)
        return {r: float(v) for r, v in zip(self.regions, means)}


def _topology_helpers(engine: Any) -> tuple[RegionMeans | None, TopologyNormals | None]:
    """The face model's eyes/mouth/face region means and its vertex normals (for the GUI's
    lighting), when the model uses its topology; (None, None) otherwise."""
    try:
        from engine.facemodel import load_face_model
        fm = load_face_model()
        if not fm.uses_topology(engine.checkpoint.topology):
            return None, None
        return RegionMeans(fm.region_masks), TopologyNormals(fm.topology.faces)
    except Exception as err:
        LOG.warning("no region masks or worker-side normals: %s", err)
        return None, None


def _normals_of(normals: TopologyNormals, meshes: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
    return {k: n for k, m in meshes.items() if (n := normals(m)) is not None}


def _spec_key(spec: SubjectSpec | None) -> tuple | None:
    """What identifies a subject spec's resolution (its neutral may be an array, which == cannot compare)."""
    if spec is None:
        return None
    neutral = spec.neutral if isinstance(spec.neutral, (str, type(None))) else id(spec.neutral)
    return spec.name, neutral, spec.avatar, spec.source


def _doing(command: Command) -> str:
    """What a command was doing, for an error sentence ("set targets", "load model")."""
    name = type(command).__name__
    return "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()
