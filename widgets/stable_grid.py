"""A vispy Grid that lays its children out again only when that layout can have changed.

Why: vispy's ``Grid`` re-runs its whole layout (its constraint solver's read-out, a vectorised sum
per child, a ``repr`` of the layout) in ``_prepare_draw``, i.e. on every draw of the canvas, even
when neither the grid's size nor its children changed. The studio draws its canvases at the
camera's frame rate, and with the retargeting grid (one grid per target cell inside an outer
grid, plus the viewer's) that was about 9 ms of the GUI thread per frame (cProfile, four targets).
Here the layout runs when the grid's rectangle, spacing, padding or margin changed or a child was
added or removed; everything else is vispy's Grid. Its ``repr`` is short too: SceneCanvas.draw_visual
formats every drawn node for its profiler on every draw, and Grid's repr prints its layout array
(another 0.4 ms per grid per draw). Use ``StableGrid`` where ``add_grid`` would be
used (``parent.add_widget(StableGrid(...))``); its own ``add_grid`` makes StableGrids too.
"""
from __future__ import annotations

from typing import Any

from vispy.scene.widgets import Grid


class StableGrid(Grid):
    """vispy's Grid, laid out on changes instead of on every draw (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._laid_out: tuple | None = None  # what the current layout was computed for
        super().__init__(*args, **kwargs)

    def add_widget(self, *args: Any, **kwargs: Any) -> Any:
        self._laid_out = None
        return super().add_widget(*args, **kwargs)

    def remove_widget(self, widget: Any) -> None:
        self._laid_out = None
        super().remove_widget(widget)

    def add_grid(self, row: int | None = None, col: int | None = None, row_span: int = 1, col_span: int = 1,
                 **kwargs: Any) -> StableGrid:
        return self.add_widget(StableGrid(**kwargs), row, col, row_span, col_span)

    def __repr__(self) -> str:
        return f"<StableGrid at {hex(id(self))}>"

    def _layout_key(self) -> tuple:
        rect = self.rect
        return (tuple(rect.pos), tuple(rect.size), self.spacing, self.padding, self.margin)

    def _prepare_draw(self, view: Any) -> None:
        key = self._layout_key()
        if key != self._laid_out:
            super()._prepare_draw(view)
            self._laid_out = key
