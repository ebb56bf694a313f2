"""All the captions of one canvas, drawn by one text visual.

Why: every vispy visual costs the GUI thread its own per-draw Python (uniform bookkeeping, GL
state, the scene-to-render transform) whatever it draws. With a label per view title that was
0.4-0.8 ms of GUI CPU per title per frame in the studio (two titles in the 3D viewer, one per
retarget cell; `docs/studio_speed.md`). The titles are fixed text over grid cells, so the grid
keeps a ``CaptionSlot`` where a label was (an empty widget that takes the label's place in the
layout and is never drawn) and one ``Captions`` node per canvas draws every slot's text centred
on it, as vispy's Label centres its text, in a single draw. The text is a ``StillTextVisual``, so
its uniforms are sent only when the text or the layout moved.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
from vispy import scene

from widgets.still_label import StillTextVisual

CAPTIONS_ORDER = 1000  # drawn after the grids, which lay their slots out as they draw


class CaptionSlot(scene.Widget):
    """A caption's place in a grid: laid out like a Label, never drawn (``Captions`` draws it)."""

    def __init__(self, text: str, height_max: float | None = None) -> None:
        super().__init__()
        self.unfreeze()
        self._text = str(text)
        self.freeze()
        if height_max is not None:
            self.height_max = height_max
        self.visible = False  # the canvas skips it; grids lay out hidden children all the same

    @property
    def text(self) -> str:
        return self._text

    @text.setter
    def text(self, text: str) -> None:
        if str(text) != self._text:
            self._text = str(text)
            self.update()  # the canvas draws again; Captions picks the new text up as it draws


class CaptionsVisual(StillTextVisual):
    """The texts of the slots under ``root`` that are in the scene, centred on their slots."""

    def __init__(self, root: scene.Node, **kwargs: Any) -> None:
        self.root = root
        self.slots: list[CaptionSlot] = []
        self._shown: tuple | None = None
        super().__init__(text="", anchor_x="center", anchor_y="center", **kwargs)

    def _centre(self, slot: CaptionSlot) -> tuple[float, float] | None:
        """The slot's centre in the root's coordinates; None when it is not under the root."""
        (x, y), (w, h) = (0.0, 0.0), slot.size
        node: Any = slot
        while node is not None and node is not self.root:
            px, py = node.pos
            x, y = x + px, y + py
            node = node.parent
        return None if node is None else (x + w / 2.0, y + h / 2.0)

    def _follow_slots(self) -> None:
        shown = []
        for slot in self.slots:
            centre = self._centre(slot) if slot.text else None
            if centre is not None:
                shown.append((slot.text, round(centre[0], 3), round(centre[1], 3)))
        shown_key = tuple(shown)
        if shown_key == self._shown:
            return
        self._shown = shown_key
        self.text = [text for text, _x, _y in shown] if shown else ""
        if shown:
            self.pos = np.array([(x, y) for _t, x, y in shown], np.float32)

    def _prepare_draw(self, view: Any) -> bool | None:
        self._follow_slots()  # the grids drew (and laid out) before this node
        return super()._prepare_draw(view)


_CaptionsNode = scene.visuals.create_visual_node(CaptionsVisual)


class Captions(_CaptionsNode):  # type: ignore[misc, valid-type]
    """One node under ``parent`` (a canvas's central widget) that draws the captions of ``slots``."""

    def __init__(self, parent: scene.Node, slots: Iterable[CaptionSlot] = (), **kwargs: Any) -> None:
        super().__init__(parent, parent=parent, **kwargs)
        self.order = CAPTIONS_ORDER
        self.set_slots(slots)

    def set_slots(self, slots: Iterable[CaptionSlot]) -> None:
        """The slots whose texts are drawn (those not in the scene are skipped at each draw)."""
        self.slots = list(slots)
        self.update()
