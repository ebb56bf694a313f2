"""The long jobs the Tools and File menus start, as plain functions of a TaskContext.

Each composes engine calls and turns their ``progress``/``cancel`` callbacks into the context's;
app/workers.py runs them in a thread behind a progress dialog. They hold no maths of their own.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.workers import TaskContext


@dataclass
class EvaluationResult:
    """What the error plots and the summary table show after evaluating a capture."""

    capture: str
    subject: str
    frames: np.ndarray
    shape: dict[str, np.ndarray]
    baseline: dict[str, np.ndarray]
    texture: dict[str, np.ndarray]
    notes: list[str]

    def rows(self) -> list[tuple[str, dict[str, tuple[float, float]]]]:
        """Summary-table rows: mean ± std over frames per region, as the paper's Table 1."""
        def stats(errors: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
            return {r: (float(np.mean(v)), float(np.std(v))) for r, v in errors.items()}
        rows = [(f"{self.capture}: MIA (mm)", stats(self.shape)),
                (f"{self.capture}: neutral baseline (mm)", stats(self.baseline))]
        if self.texture:
            rows.append((f"{self.capture}: texture (0-255)", stats(self.texture)))
        return rows


def evaluate(ctx: TaskContext, model: str, capture: str, subject: str | None, neutral: Any,
             avatar: str | None, threads: int = 2) -> EvaluationResult:
    """Region errors of every frame of ``capture`` (engine.evaluation.evaluate.evaluate_capture)."""
    from engine.evaluation.evaluate import evaluate_capture
    from engine.runtime.inference import InferenceEngine
    ctx.progress(0, 0, "loading the model…")
    engine = InferenceEngine(model, threads=threads)
    result = evaluate_capture(engine, capture, neutral=neutral, avatar=avatar, subject=subject, batch_size=16,
                              progress=lambda done, total: ctx.progress(done, total, f"frame {done} of {total}"))
    return EvaluationResult(Path(capture).name, result.subject, np.asarray(result.frames), result.shape,
                            result.baseline, result.texture, list(result.notes))


def adapt_subject(ctx: TaskContext, model: str, data: str, subject: str, out: str, steps: int,
                  neutral_file: str | None = None) -> Path:
    """Train only F_new for ``subject`` (engine.training.adapt); writes the checkpoint ``out``."""
    from engine.training.adapt import AdaptConfig, adapt
    neutral = None
    if neutral_file:
        from engine.io.mesh import guess_units, load_mesh
        verts, _ = load_mesh(neutral_file)
        neutral = verts * guess_units(verts)[1]
    ctx.progress(0, steps, "reading the subject's captures…")
    return adapt(model, data, subject, out, AdaptConfig(steps=steps), neutral=neutral,
                 progress=lambda step, total, m: ctx.progress(step, total, f"step {step} of {total}, "
                                                                         f"loss {m.get('loss', 0.0):.4f}"),
                 cancel=lambda: ctx.cancelled, show_bar=False)


def export_onnx(ctx: TaskContext, model: str, out: str) -> dict:
    """ONNX export of B+G and every F_i, checked against torch (engine.runtime.export)."""
    from engine.runtime.export import export_onnx as export
    ctx.progress(0, 0, "exporting and checking against torch…")
    manifest = export(model, out)
    ctx.check()
    return manifest
