"""The output stage on its own thread, so the frame loop never waits for a fit or a socket.

``submit`` drops a frame's mesh (or ready-made weights) into a one-slot mailbox and returns at once;
an unread frame is replaced by the newer one (outputs want the newest face, not a backlog). The thread
computes ARKit weights (engine.output.weights: the checkpoint's ARKit head on the frame's code e
when ``set_weights`` gave one, else the bounded fit of the mesh), runs the OutputStage and keeps the latest weights and
statistics for whoever draws meters. Settings changes and "set neutral" are applied on the thread
between frames. No Qt: the GUI and `mia stream` both use it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.output.solver import BlendshapeSolver
from engine.output.stage import OutputConfig, OutputStage
from engine.output.weights import WeightSource


@dataclass
class _Job:
    mesh: np.ndarray | None
    neutral: np.ndarray | None
    arkit: np.ndarray | None
    gaze: np.ndarray | None
    time_s: float | None
    embedding: np.ndarray | None = None


class OutputStreamer:
    """Owns an OutputStage (and a BlendshapeSolver, built on first use) on a daemon thread."""

    def __init__(self, config: OutputConfig = OutputConfig(), solver: BlendshapeSolver | None = None) -> None:
        self._solver = solver
        self._weights: WeightSource | None = None
        self._config = config
        self._stage: OutputStage | None = None
        self._job: _Job | None = None
        self._commands: list[tuple[str, Any]] = [("configure", config)]
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
        self._stats: dict = {"packets": {}, "packets_per_s": 0.0, "frames": 0, "errors": {}, "output_ms": 0.0,
                             "solve_ms": 0.0, "calibrating": False, "active": []}
        self._solve_ms = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="mia-output", daemon=True)
        self._thread.start()

    # ----- any thread
    def submit(self, mesh: np.ndarray, neutral: np.ndarray, time_s: float | None = None,
               embedding: np.ndarray | None = None) -> None:
        """A driven mesh and its neutral (mm, model topology), and the frame's code e when known (the
        ARKit head needs it; it is identity-free, so a retarget target's frame has the same e); never blocks."""
        self._put(_Job(mesh, neutral, None, None, time_s, embedding))

    def set_weights(self, source: WeightSource) -> None:
        """Where weights come from from now on (WeightSource.for_checkpoint of the model in use)."""
        self._command("weights", source)

    def submit_weights(self, arkit: np.ndarray, gaze: np.ndarray | None = None, time_s: float | None = None) -> None:
        """Ready-made ARKit-52 weights (and (2, 2) gaze); never blocks."""
        self._put(_Job(None, None, arkit, gaze, time_s))

    def configure(self, config: OutputConfig) -> None:
        """Rebuild the senders with new settings (on the thread; errors show in stats()['errors'])."""
        self._config = config
        self._command("configure", config)

    def set_neutral(self, frames: int = 15) -> None:
        self._command("neutral", frames)

    def reset_calibration(self) -> None:
        self._command("reset", None)

    @property
    def config(self) -> OutputConfig:
        """The settings with the calibration as it stands now (what a profile saves)."""
        stage = self._stage
        return stage.calibrated_config() if stage is not None and stage.config == self._config else self._config

    def latest(self) -> tuple[np.ndarray | None, np.ndarray | None, dict]:
        """(raw weights, sent weights, stats) of the newest processed frame."""
        with self._cond:
            raw, sent = self._latest
            return raw, sent, dict(self._stats)

    def close(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # ----- the thread
    def _put(self, job: _Job) -> None:
        with self._cond:
            self._job = job
            self._cond.notify_all()

    def _command(self, name: str, arg: Any) -> None:
        with self._cond:
            self._commands.append((name, arg))
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._closed or self._job or self._commands):
                        self._cond.wait(0.5)
                    if self._closed:
                        return
                    commands, self._commands = self._commands, []
                    job, self._job = self._job, None
                for name, arg in commands:
                    self._apply(name, arg)
                if job is not None:
                    self._process(job)
        finally:
            if self._stage is not None:
                self._stage.close()

    def _apply(self, name: str, arg: Any) -> None:
        if name == "configure":
            old, self._stage = self._stage, None
            if old is not None:
                old.close()
            self._stage = OutputStage(arg)
            self._publish_stats()
        elif name == "weights":
            self._weights = arg
            self._publish_stats()
        elif self._stage is not None and name == "neutral":
            self._stage.set_neutral(arg)
        elif self._stage is not None and name == "reset":
            self._stage.reset_calibration()

    def _process(self, job: _Job) -> None:
        stage = self._stage
        if stage is None:
            return
        try:
            arkit, gaze = job.arkit, job.gaze
            if arkit is None:
                if self._weights is None:
                    self._weights = WeightSource(solver=self._solver)
                self._weights.solver  # noqa: B018 (built once, ~1 s: not part of the per-frame solve time)
                t0 = time.perf_counter()
                arkit = self._weights.arkit(job.mesh, job.neutral, job.embedding)
                gaze = self._weights.gaze(job.mesh, job.neutral)
                dt = (time.perf_counter() - t0) * 1e3
                self._solve_ms = dt if not self._solve_ms else 0.95 * self._solve_ms + 0.05 * dt
            frame = stage.process(arkit, gaze, job.time_s)
        except Exception as err:  # a bad frame (wrong topology ...) must not kill the thread
            stage.errors["frame"] = f"cannot compute output weights: {err}"
            self._publish_stats()
            return
        stage.errors.pop("frame", None)
        with self._cond:
            self._latest = (frame.raw, frame.weights)
        self._publish_stats()

    def _publish_stats(self) -> None:
        stage = self._stage
        if stage is None:
            return
        stats = stage.stats()
        stats["solve_ms"] = self._solve_ms
        stats["weights"] = self._weights.describe() if self._weights is not None else ""
        with self._cond:
            self._stats = stats
