"""Where a frame's ARKit-52 weights come from: the ARKit head on e, the bounded fit of the mesh, or both.

``WeightSource`` is what `mia stream`, `mia blendshapes`, the output thread and the benchmark call
per frame. Modes:
- ``fit``: the bounded least-squares fit of (mesh - neutral) onto the expression modes (solver.py);
- ``head``: the checkpoint's ARKit head on B's code e (head.py);
- ``combined``: the head, but the shapes in ``from_fit`` (default: jawOpen) from the fit;
- ``auto``: ``combined`` when the checkpoint has a usable head, else ``fit`` (the reason is kept in
  ``reason`` for `mia info` and the stream's summary).
The head's weights are identity-free like e, so a retarget target gets the same head weights as
the driven subject (one backbone call drives them all); only the fit's part and the gaze depend on
each face's own mesh and neutral. Gaze always comes from the corneas of the mesh (solver.gaze).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from engine.output.head import DEFAULT_FROM_FIT, MODES, ArkitHead, HeadError, combine, head_status
from engine.output.solver import BlendshapeSolver


class WeightSource:
    """ARKit-52 weights (and gaze) for a driven face from its mesh, its neutral and the frame's e."""

    def __init__(self, head: ArkitHead | None = None, mode: str = "auto", reason: str = "",
                 solver: BlendshapeSolver | None = None, from_fit: Iterable[str] = DEFAULT_FROM_FIT) -> None:
        if mode not in MODES:
            raise HeadError(f"ARKit weight mode must be one of {MODES}, got {mode!r}")
        if mode in ("head", "combined") and head is None:
            raise HeadError(f"ARKit weight mode {mode!r} needs an ARKit head, but {reason or 'none was given'}")
        self.head = head
        self.mode = ("combined" if head is not None else "fit") if mode == "auto" else mode
        self.reason = reason or ("ARKit head" if head is not None else "no ARKit head")
        self.from_fit = frozenset(from_fit)
        self._solver = solver

    @classmethod
    def for_checkpoint(cls, checkpoint: object, mode: str = "auto", solver: BlendshapeSolver | None = None) -> WeightSource:
        """The source a loaded Checkpoint supports: its head when usable (``head_status``), else the fit."""
        status = head_status(checkpoint)
        return cls(status.head, mode, status.reason, solver)

    @property
    def solver(self) -> BlendshapeSolver:
        """The bounded fit (built on first use: ~1 s for the face model)."""
        if self._solver is None:
            self._solver = BlendshapeSolver()
        return self._solver

    def describe(self) -> str:
        """One line for logs and summaries: which weights are sent and why."""
        if self.mode == "fit":
            return f"ARKit weights: bounded fit of the mesh ({self.reason})"
        if self.mode == "head":
            return f"ARKit weights: head on e ({self.reason})"
        return (f"ARKit weights: head on e, bounded fit of the mesh for {', '.join(sorted(self.from_fit))} "
                f"({self.reason})")

    def arkit(self, mesh: np.ndarray, neutral: np.ndarray, embedding: np.ndarray | None) -> np.ndarray:
        """(N, V, 3) or (V, 3) meshes, their neutral and the frames' codes (N, E) or (E,) -> ARKit weights.

        Without a code (a caller that has only the mesh) the fit answers, whatever the mode."""
        if self.mode == "fit" or embedding is None or self.head is None:
            return self.solver.arkit(mesh, neutral)
        head_w = self.head(embedding)
        if self.mode == "head":
            return head_w
        return combine(head_w, self.solver.arkit(mesh, neutral), self.from_fit)

    def gaze(self, mesh: np.ndarray, neutral: np.ndarray) -> np.ndarray:
        return self.solver.gaze(mesh, neutral)
