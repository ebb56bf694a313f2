"""Report figures for evaluations (PNG through matplotlib's Agg canvas).

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas rather than pyplot,
so plotting touches no global backend state and is safe inside the Qt application and in threads.

The figures take anything shaped like an evaluation result (``CaptureErrors``: per-region error
curves, their baselines and a mean), so this module does not import engine/evaluation/evaluate.py, which
imports it to write its reports.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from engine.io.atomic import atomic_path

Errors = dict[str, np.ndarray]  # region -> per-frame errors


class CaptureErrors(Protocol):
    """Per-frame errors of one capture, as engine.evaluation.evaluate.CaptureEvaluation holds them."""

    capture: str
    subject: str
    frames: np.ndarray
    shape: Errors
    baseline: Errors
    texture: Errors
    texture_baseline: Errors

    def mean(self, kind: str) -> dict[str, float]: ...

REGION_COLOURS = {"eyes": "tab:blue", "mouth": "tab:red", "face": "tab:green"}
UNITS = {"shape": "error (mm)", "texture": "error (intensity 0-255)"}


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    return path


def plot_frame_errors(result: CaptureErrors, path: str | os.PathLike) -> Path:
    """Per-frame error curves per region (solid) with the neutral baseline (dashed); texture below."""
    kinds = [("shape", "baseline")] + ([("texture", "texture_baseline")] if result.texture else [])
    fig = Figure(figsize=(9, 3.2 * len(kinds)), layout="constrained")
    for row, (kind, base) in enumerate(kinds):
        ax = fig.add_subplot(len(kinds), 1, row + 1)
        for region, values in getattr(result, kind).items():
            colour = REGION_COLOURS.get(region)
            ax.plot(result.frames, values, color=colour, lw=1.2, label=f"{region} ({np.mean(values):.2f})")
            baseline = getattr(result, base).get(region)
            if baseline is not None:
                ax.plot(result.frames, baseline, color=colour, lw=0.8, ls="--", alpha=0.6)
        ax.set_ylabel(UNITS[kind])
        ax.set_title(f"{result.capture} ({result.subject}): {kind} error per frame; dashed: neutral baseline",
                     fontsize=9)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(alpha=0.3)
    ax.set_xlabel("frame")
    return _save(fig, path)


def plot_capture_bars(results: list[CaptureErrors], path: str | os.PathLike, kind: str = "shape") -> Path:
    """Mean error per capture and region (bars) with the neutral baseline as a black tick."""
    base = "baseline" if kind == "shape" else "texture_baseline"
    rows = [r for r in results if getattr(r, kind)]
    regions = list(REGION_COLOURS)
    fig = Figure(figsize=(max(6.0, 1.1 * len(rows) + 3), 3.6), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    width = 0.8 / len(regions)
    for k, region in enumerate(regions):
        pos = x + (k - (len(regions) - 1) / 2) * width
        ax.bar(pos, [r.mean(kind)[region] for r in rows], width, color=REGION_COLOURS[region], label=region)
        floor = [r.mean(base).get(region, np.nan) if getattr(r, base) else np.nan for r in rows]
        ax.scatter(pos, floor, marker="_", s=200, color="black", zorder=3,
                   label="neutral baseline" if k == 0 else None)
    ax.set_xticks(x, [r.capture for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(UNITS[kind])
    ax.set_title(f"{kind} error per capture", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
