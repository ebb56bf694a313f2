"""The session: what is open and what is happening, as one Qt object the window listens to.

It holds the current source, model, subject, retargeting targets, frame index and play state,
and emits signals when they change (napari's viewer model, in Qt signals). The work itself runs
in the FrameWorker thread; the session turns GUI requests into worker commands and worker
reports into state plus signals. Widgets never touch the engine; the session never touches a
widget. The commands and reports are typed (app/worker_protocol.py); what the session holds for
its listeners (``source_info``, ``subject_info``, ``model_info``) are plain dicts made from them.

Checking a neutral mesh the user loads (``load_neutral``) is the session's job too: it says whether
the mesh fits the model topology, whose it is and how it will be driven, and drives it when it fits;
the window only shows the answer.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from app.frame_worker import FrameWorker
from app.logs import report
from app.paths import SUBJECTS
from app.profiles import HeadsetProfiles
from app.subjects import NeutralSource, SubjectCatalog, SubjectSpec, mesh_subject_name, \
    sibling_avatar
from app.worker_protocol import (FrameBundle, LoadModel, OpenSource, Play, ResolveSubject, Seek, SetLoop, SetPaced, SetRois,
                                 SetSpeed, SetSubject, SetTargets, ShowTargets, SourceOpened, Step, SubjectSet, TargetsSet)
from engine.errors import MeshError, SourceError
from engine.runtime.sources import SyntheticSource
from engine.io.layout import subjects_dir

LIVE_CURVE_FRAMES = 1800  # live error curves keep the last minute at 30 fps
REGIONS = ("eyes", "mouth", "face")
STATUS_PERIOD_S = 0.25


class ErrorHistory:
    """Per-frame region errors of the current source: indexed by frame for a capture, rolling for live."""

    def __init__(self, frame_count: int | None) -> None:
        self.frame_count = frame_count
        n = frame_count if frame_count else LIVE_CURVE_FRAMES
        self.values = np.full((n, len(REGIONS)), np.nan)
        self.frames = np.arange(n, dtype=np.float64) if frame_count else np.full(n, np.nan)
        self._next = 0

    def add(self, index: int, errors: dict[str, float]) -> None:
        row = [errors.get(r, np.nan) for r in REGIONS]
        if self.frame_count:
            if 0 <= index < self.frame_count:
                self.values[index] = row
            return
        slot = self._next % len(self.values)
        self.values[slot], self.frames[slot] = row, index
        self._next += 1

    def set_all(self, frames: np.ndarray, errors: dict[str, np.ndarray]) -> None:
        """Fill from a whole-capture evaluation."""
        for k, region in enumerate(REGIONS):
            if region in errors:
                self.values[np.asarray(frames, int), k] = errors[region]

    def curves(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(frame numbers, region -> errors) in frame order."""
        order = np.argsort(self.frames, kind="stable") if not self.frame_count else slice(None)
        frames, values = self.frames[order], self.values[order]
        keep = ~np.isnan(frames)
        return frames[keep], {r: values[keep, k] for k, r in enumerate(REGIONS)}

    def summary(self) -> dict[str, tuple[float, float]]:
        """region -> (mean, std) over the frames seen so far."""
        out = {}
        for k, region in enumerate(REGIONS):
            v = self.values[:, k]
            v = v[~np.isnan(v)]
            if len(v):
                out[region] = (float(v.mean()), float(v.std()))
        return out

    @property
    def count(self) -> int:
        return int((~np.isnan(self.values[:, -1])).sum())


@dataclass(frozen=True)
class NeutralCheck:
    """The answer to loading a neutral mesh: drivable or not, what to show about it and why.

    ``details`` are the neutral panel's fields (path, vertex count, units, size, topology match,
    mode, message) when the mesh could be read; ``error`` the sentence to show when it could not
    (or did not fit); ``status_error`` what also goes to the status bar.
    """

    drivable: bool
    path: str
    name: str = ""
    details: dict[str, Any] | None = None
    error: str = ""
    status_error: str = ""


class Session(QObject):
    """Current source, model, subject, targets, frame and play state; see the module docstring."""

    frame_ready = Signal(object)  # FrameBundle
    error = Signal(str)
    notice = Signal(str)
    status = Signal(dict)  # fps, infer_ms, read_ms, dropped, model, device
    source_changed = Signal(dict)
    model_changed = Signal(dict)
    subject_changed = Signal(dict)
    targets_changed = Signal(list)
    subjects_changed = Signal(list)
    playing_changed = Signal(bool)

    def __init__(self, profiles: HeadsetProfiles | None = None, threads: int = 2, backend: str = "torch",
                 averaging: int | None = None, mirror: bool | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.profiles = profiles or HeadsetProfiles()
        self.catalog = SubjectCatalog([SUBJECTS] if SUBJECTS.is_dir() else [])
        self.source_info: dict[str, Any] = {}
        self.model_info: dict[str, Any] = {}
        self.subject_info: dict[str, Any] = {}
        self.targets: list[str] = []
        self._targets_shown = True  # the retarget grid is on screen (set_targets_shown)
        self.driven_targets: list[str] = []
        self.textured_targets = False
        self.frame_index = -1
        self.playing = False
        self.speed = 1.0
        self.loop = True
        self.autoplay = True
        self.rois: list = [None, None, None]
        self.errors = ErrorHistory(None)
        self.frames_shown = 0
        self.display_fps = 0.0
        self.infer_ms = 0.0
        self._last_status = 0.0
        self._last_shown = 0.0
        self._request = 0
        self._model_path = ""
        self._user_subject: SubjectSpec | None = None
        self.topology: Any = None  # the face model's topology (load_topology)
        self.worker = FrameWorker(self._resolve_subject, threads=threads, backend=backend, averaging=averaging,
                                  mirror=mirror)
        w = self.worker
        w.frame_available.connect(self._on_frame_available)
        w.source_opened.connect(self._on_source_opened)
        w.source_failed.connect(self._on_source_failed)
        w.model_loaded.connect(self._on_model_loaded)
        w.model_failed.connect(self._on_model_failed)
        w.subject_set.connect(self._on_subject_set)
        w.targets_set.connect(self._on_targets_set)
        w.playing_changed.connect(self._on_playing_changed)
        w.problem.connect(self.error.emit)
        w.start()

    # ----- requests from the GUI
    def open_source(self, spec: dict[str, Any]) -> None:
        """Open a capture / live cameras / synthetic source (errors come back through ``error``)."""
        spec = dict(spec)
        profile = None
        if spec.get("kind") == "cameras":
            name = str(spec.get("headset") or "default")
            spec["headset"] = name
            try:
                self.profiles.save_cameras(name, spec["urls"], spec.get("rotate", [0] * 3),
                                           spec.get("flip", [False] * 3))
            except SourceError as err:  # a refused URL: say so, open nothing
                self.error.emit(str(err))
                return
            profile = self.profiles.get(name)
        if spec.get("kind") == "capture" and spec.get("path"):
            self.catalog.add_root(subjects_dir(spec["path"]))
            self.subjects_changed.emit(self.catalog.names())
        self.worker.post(OpenSource(spec, profile, self._next_request()))

    def open_model(self, path: str) -> None:
        self.notice.emit(f"loading model {Path(path).name}…")
        self.worker.post(LoadModel(str(path)))

    @property
    def averaging(self) -> int | None:
        """Test-time averaging copies the worker loads models with (engine/runtime/averaging.py);
        None: each model's own recommendation. What the loaded model uses: model_info["averaging"]."""
        return self.worker.averaging

    @property
    def mirror(self) -> bool | None:
        """Whether the worker's models also read each frame's mirror image; None: each model's own."""
        return self.worker.mirror

    def set_averaging(self, copies: int, mirror: bool = False) -> None:
        """Read each frame `copies` times (1: once), and its mirror image as often when `mirror`,
        from now on: the current model is loaded again with it (subject, targets and source stay);
        the next model loaded uses it too."""
        if copies < 1:
            raise ValueError(f"test-time averaging needs at least one copy, got {copies}")
        self.worker.averaging, self.worker.mirror = copies, mirror  # read by the worker thread when it loads
        if self._model_path:
            reads = "once" if copies == 1 else f"{copies} times"
            self.notice.emit(f"reading each frame {reads}{' and its mirror image' if mirror else ''}…")
            self.worker.post(LoadModel(self._model_path))

    def load_topology(self) -> Any:
        """The face model's topology, which neutral meshes must match (raises when it cannot be read)."""
        if self.topology is None:
            from engine.facemodel import load_face_model
            self.topology = load_face_model().topology
        return self.topology

    def load_neutral(self, path: str) -> NeutralCheck:
        """Check a neutral mesh file against the model topology; when it fits, drive it (shape only,
        or textured when the model has the subject's F_i and an avatar sits beside the mesh)."""
        from engine.io.mesh import load_neutral
        path = str(path)
        topo = self.topology
        if topo is None:
            return NeutralCheck(False, path, error="The face model is missing, so meshes cannot be checked.")
        try:
            _verts, info = load_neutral(path, topo.vertex_count, topo.faces, topo.name)
        except MeshError as err:
            details = None
            if err.info is not None:
                details = {**dataclasses.asdict(err.info), "mode": "not drivable"}
            return NeutralCheck(False, path, details=details, error="" if details else str(err),
                                status_error=str(err))
        except Exception as err:
            return NeutralCheck(False, path, error=report(err, f"cannot read {path}"))
        name = mesh_subject_name(path)
        avatar = sibling_avatar(path)
        textured = avatar is not None and name in self.model_info.get("identities", [])
        details = dataclasses.asdict(info)
        details["mode"] = ("shape + texture (G, F_i, D_i)" if textured else "shape only (G)" + (
            "" if avatar is None else f" — {name} has no adaptation layer in the model"))
        details["message"] = f"Driving {name} with this neutral mesh ({info.units} converted to mm)."
        self.set_user_subject(name, path, avatar)
        return NeutralCheck(True, path, name, details)

    def set_user_subject(self, name: str, mesh_file: str, avatar_dir: str | None) -> None:
        """Drive the subject whose neutral mesh the user loaded (validated by the caller)."""
        self.catalog.add_loaded(name, mesh_file, avatar_dir)
        spec = self.catalog.resolve(name)
        self._user_subject = spec
        self.worker.post(SetSubject(spec))
        self.subjects_changed.emit(self.catalog.names())

    def set_targets(self, names: list[str]) -> None:
        self.targets = list(names)
        self._post_targets()

    def set_targets_shown(self, shown: bool) -> None:
        """Whether the retarget grid is on screen; while it is not, the worker skips the targets'
        textures and normals (~1.3 ms and ~0.6 ms a target a frame) but keeps their meshes."""
        if bool(shown) != self._targets_shown:
            self._targets_shown = bool(shown)
            self.worker.post(ShowTargets(self._targets_shown))

    def set_textured_targets(self, textured: bool) -> None:
        self.textured_targets = bool(textured)
        self._post_targets()

    def set_playing(self, playing: bool) -> None:
        self.worker.post(Play(bool(playing)))

    def play(self) -> None:
        self.set_playing(True)

    def pause(self) -> None:
        self.set_playing(False)

    def seek(self, index: int) -> int:
        """Show frame ``index``; returns the request id its FrameBundle will carry."""
        request = self._next_request()
        self.worker.post(Seek(int(index), request))
        return request

    def step(self, delta: int) -> int:
        request = self._next_request()
        if self.playing:
            self.pause()
        self.worker.post(Step(int(delta), request))
        return request

    def set_speed(self, speed: float) -> None:
        self.speed = float(speed)
        self.worker.post(SetSpeed(self.speed))

    def set_loop(self, loop: bool) -> None:
        self.loop = bool(loop)
        self.worker.post(SetLoop(self.loop))

    def set_paced(self, paced: bool) -> None:
        """False: run frames as fast as the machine allows (benchmarks, exports)."""
        self.worker.post(SetPaced(bool(paced)))

    def set_roi(self, cam: int, roi: tuple[int, int, int, int] | None) -> None:
        """Crop one camera for inference; saved in the headset's profile."""
        self.rois[cam] = roi
        headset = self.source_info.get("headset_id")
        if headset:
            self.profiles.set_roi(headset, cam, roi)
        self.worker.post(SetRois(tuple(self.rois)))

    def clear_rois(self) -> None:
        for cam in range(3):
            self.set_roi(cam, None)

    def shutdown(self) -> None:
        """Stop the worker (closing the source in its own thread)."""
        if self.worker.isRunning():
            self.worker.stop()

    # ----- state for the window
    @property
    def live(self) -> bool:
        return bool(self.source_info.get("live"))

    @property
    def frame_count(self) -> int:
        return int(self.source_info.get("frame_count") or 0)

    @property
    def model_path(self) -> str:
        """The checkpoint currently loaded ('' when none is)."""
        return self._model_path

    def subject_names(self) -> list[str]:
        return self.catalog.names()

    # ----- worker reports
    def _on_frame_available(self) -> None:
        bundle = self.worker.take()
        for index, errors in self.worker.take_errors():
            self.errors.add(index, errors)
        if bundle is None:
            return
        if bundle.fresh:
            self.frame_index = bundle.index
            now = time.perf_counter()
            if self._last_shown:
                rate = 1.0 / max(now - self._last_shown, 1e-6)
                self.display_fps = rate if not self.display_fps else 0.9 * self.display_fps + 0.1 * rate
            self._last_shown = now
            self.frames_shown += 1
            if bundle.infer_ms:
                self.infer_ms = bundle.infer_ms if not self.infer_ms else 0.9 * self.infer_ms + 0.1 * bundle.infer_ms
        self.frame_ready.emit(bundle)
        if time.perf_counter() - self._last_status >= STATUS_PERIOD_S:
            self.emit_status(bundle)

    def emit_status(self, bundle: FrameBundle | None = None) -> None:
        """The numbers of the status bar (at most a few times a second)."""
        self._last_status = time.perf_counter()
        self.status.emit({
            "fps": self.display_fps, "worker_fps": bundle.worker_fps if bundle else 0.0,
            "infer_ms": self.infer_ms, "read_ms": bundle.read_ms if bundle else 0.0,
            "dropped": self.worker.dropped, "frames_shown": self.frames_shown,
            "model": self.model_info.get("model", ""), "device": self.model_info.get("device", ""),
            "backend": self.model_info.get("backend", "")})

    def _on_source_opened(self, opened: SourceOpened) -> None:
        info = opened.as_dict()
        self.source_info = info
        self.frame_index = -1
        self.errors = ErrorHistory(info.get("frame_count"))
        self.frames_shown, self.display_fps, self._last_shown = 0, 0.0, 0.0
        headset = info.get("headset_id")
        self.rois = self.profiles.rois(headset) if headset else [None, None, None]
        self.worker.post(SetRois(tuple(self.rois)))
        self.source_changed.emit(info)
        self.subjects_changed.emit(self.catalog.names())
        if info["live"]:
            self.playing = True
            self.playing_changed.emit(True)
        elif self.autoplay:
            self.play()
        else:
            self._on_playing_changed(False)

    def _on_source_failed(self, message: str) -> None:
        self.error.emit(message)

    def _on_model_loaded(self, info: dict) -> None:
        self.model_info = info
        self._model_path = str(info.get("path", ""))
        self.catalog.set_model(info.get("subjects", []), info.get("identities", []))
        self.model_changed.emit(info)
        self.subjects_changed.emit(self.catalog.names())
        # the worker may have resolved the source's subject before the catalog knew this model's
        # adaptation layers (shape only where it should be textured): resolve it again
        self.worker.post(ResolveSubject())
        self._post_targets()

    def _on_model_failed(self, message: str) -> None:
        self.error.emit(message)

    def _on_subject_set(self, subject: SubjectSet) -> None:
        info = subject.as_dict()
        self.subject_info = info
        self.subject_changed.emit(info)
        if subject.note:
            self.notice.emit(subject.note)

    def _on_targets_set(self, targets: TargetsSet) -> None:
        self.driven_targets = list(targets.driven)
        self.targets_changed.emit(self.driven_targets)
        for message in targets.problems:
            self.error.emit(message)

    def _on_playing_changed(self, playing: bool) -> None:
        self.playing = bool(playing)
        self.playing_changed.emit(self.playing)

    # ----- helpers
    def _next_request(self) -> int:
        self._request += 1
        return self._request

    def _post_targets(self) -> None:
        specs = [s for s in (self.catalog.resolve(n, self.textured_targets) for n in self.targets) if s]
        missing = [n for n in self.targets if n not in {s.name for s in specs}]
        if missing:
            self.error.emit(f"retargeting: no neutral mesh found for {', '.join(missing)}")
        self.worker.post(SetTargets(tuple(specs)))

    def _resolve_subject(self, source: Any, engine: Any) -> SubjectSpec | None:
        """Called in the worker: who the open source shows (see app/subjects.py for the order)."""
        if source is None:
            return self._user_subject
        name = source.subject_id
        if name is None:  # live cameras: the person wearing the headset, as the user loaded them
            return self._user_subject
        if isinstance(source, SyntheticSource) and name not in engine.subjects:
            spec = self.catalog.resolve(name)
            if spec is None or spec.source is NeutralSource.MODEL:
                avatar = spec.avatar if spec else None
                return SubjectSpec(name, source.neutral, avatar, "the synthetic world", NeutralSource.SYNTHETIC)
            return spec
        return self.catalog.resolve(name)
