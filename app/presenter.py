"""Puts one FrameBundle on screen: feeds, driven avatar, ground truth, error map, plots, grid.

Only the GUI thread calls it, once per frame the worker delivered. The feeds, the avatar and the
retargeting grid change every frame; the plots (error curves, frame marker, latency, summary
table) are redrawn four times a second, because on a software-GL machine replotting costs more
than the frame itself. Views the user cannot see (a closed dock, or one tabbed behind another,
which Qt still reports isVisible(): ``shown`` is the window's on-screen test) are not updated
at all; ``show_hidden`` catches them up when they appear again.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
from PySide6.QtWidgets import QWidget

from app.worker_protocol import FrameBundle
from app.session import ErrorHistory
from engine.runtime.sources import CameraState
from widgets.error_plots import ErrorPlots
from widgets.hmc_views import HMCViews
from widgets.latency_plot import LatencyPlot
from widgets.mesh_viewer import MeshViewer
from widgets.playback_bar import PlaybackBar
from widgets.retarget_grid import RetargetGrid
from widgets.summary_table import SummaryTable

PLOT_PERIOD_S = 0.25


class FramePresenter:
    """Updates the window's views from bundles (and remembers what it last showed)."""

    def __init__(self, hmc: HMCViews, viewer: MeshViewer, plots: ErrorPlots, table: SummaryTable,
                 grid: RetargetGrid, latency: LatencyPlot, playback: PlaybackBar,
                 shown: Callable[[QWidget], bool] = QWidget.isVisible) -> None:
        self.hmc, self.viewer, self.plots, self.table = hmc, viewer, plots, table
        self.shown = shown
        self.grid, self.latency, self.playback = grid, latency, playback
        self.error_scale_mm = 5.0
        self.show_ground_truth = True
        self.render_ms = 0.0
        self.last: FrameBundle | None = None
        self._states: list[tuple[str, bool] | None] = [None, None, None]
        self._last_plot = 0.0
        self._extra_rows: list[tuple[str, dict[str, tuple[float, float]]]] = []
        self._source_name = ""
        viewer.render_ms.connect(self._on_render_ms)

    def _on_render_ms(self, ms: float) -> None:
        self.render_ms = ms

    # ----- per source
    def reset(self, info: dict[str, Any]) -> None:
        """A new source: clear curves, table, latency; set the timeline."""
        self.last = None
        self._states = [None, None, None]
        self._extra_rows = []
        self._source_name = str(info.get("name", ""))
        self.plots.clear()
        self.table.set_rows([])
        self.latency.clear()
        self.viewer.set_ground_truth(None)
        self.viewer.set_error(None, self.error_scale_mm)
        self.playback.set_live(bool(info.get("live")))
        self.playback.set_frame_count(int(info.get("frame_count") or 0))
        self.playback.set_frame(0)

    def set_evaluation_rows(self, rows: list[tuple[str, dict[str, tuple[float, float]]]]) -> None:
        """Rows of a whole-capture evaluation, kept above the live running summary."""
        self._extra_rows = list(rows)

    # ----- per frame
    def show(self, bundle: FrameBundle, errors: ErrorHistory, fps: float) -> None:
        self._show_states(bundle.camera_states)
        self.hmc.set_frames(bundle.images)
        if not bundle.fresh:
            return
        self.last = bundle
        if bundle.mesh is not None:
            self.viewer.set_mesh(bundle.mesh, bundle.texture, bundle.normals.get("mesh"))
            gt = bundle.ground_truth if self.show_ground_truth else None
            if gt is not None or self.viewer.ground_truth_shown:
                self.viewer.set_ground_truth(gt, bundle.normals.get("ground_truth"))
            if self.viewer.mode == "error":
                self.viewer.set_error(bundle.vertex_error, self.error_scale_mm)
        if bundle.targets and bundle.targets_drawable and self.shown(self.grid):
            self.grid.set_meshes(bundle.targets, bundle.target_normals)
        if not bundle.live:
            self.playback.set_frame(bundle.index)
        self.latency.add_sample(bundle.infer_ms, self.render_ms, fps, redraw=False)
        if bundle.request:  # the answer to a seek or step: mark it at once
            self.plots.set_current_frame(bundle.index)
        if time.perf_counter() - self._last_plot >= PLOT_PERIOD_S:
            self.refresh_plots(errors)

    def show_hidden(self, errors: ErrorHistory) -> None:
        """Bring views that were hidden (and so skipped) up to date with the last frame. Targets made
        while the grid was off screen have no textures: the grid waits for the next frame instead
        (the worker re-runs a paused frame when told the grid is shown, Session.set_targets_shown)."""
        last = self.last
        if last is not None and last.targets and last.targets_drawable and self.shown(self.grid):
            self.grid.set_meshes(last.targets, last.target_normals)
        self.refresh_plots(errors)

    def refresh_plots(self, errors: ErrorHistory) -> None:
        """Redraw the error curves, frame marker, latency and the summary table (those that are shown)."""
        self._last_plot = time.perf_counter()
        if self.shown(self.latency):
            self.latency.redraw()
        if not (self.shown(self.plots) or self.shown(self.table)):
            return
        if self.last is not None:
            self.plots.set_current_frame(self.last.index)
        frames, curves = errors.curves()
        if len(frames) and any(np.isfinite(v).any() for v in curves.values()):
            self.plots.set_curves(curves, x=frames if errors.frame_count is None else None)
        rows = list(self._extra_rows)
        summary = errors.summary()
        if summary:
            seen = f"{errors.count} frames" if errors.frame_count is None else \
                f"{errors.count} of {errors.frame_count} frames"
            rows.append((f"{self._source_name}: live ({seen})", summary))
        if rows:
            self.table.set_rows(rows)

    def set_error_scale(self, mm: float) -> None:
        self.error_scale_mm = float(mm)
        if self.last is not None and self.viewer.mode == "error":
            self.viewer.set_error(self.last.vertex_error, self.error_scale_mm)

    def _show_states(self, states: tuple[CameraState, ...]) -> None:
        for cam, state in enumerate(states):
            shown = (state.text, state.ok)
            if self._states[cam] != shown:
                self._states[cam] = shown
                self.hmc.set_camera_state(cam, state.text, state.ok)
