"""A vispy Label whose text uniforms are sent when they change, not on every draw.

vispy's TextVisual re-sends all of its uniforms in each draw, among them the font's 16 x 1024 RGBA
filter kernel as a NumPy array, which gloo re-uploads as a texture every time. In the studio's
3D views, whose titles ("Driven", "Ground truth", the retarget subjects' names) are drawn at the
camera rate, that cost about 1.3 ms of GUI-thread CPU per canvas draw (cProfile with a CPU-time
clock, `benchmarks/studio_fps.py`). ``StillLabel`` draws the same text through ``StillTextVisual``,
a TextVisual subclass (vispy's documented extension point: ``_prepare_draw``) that lets its
parent set the uniforms only when what they are computed from has changed: the text, position,
colour, font size, dpi or the document-to-render scale (a resize).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from vispy import scene
from vispy.visuals import TextVisual


class StillTextVisual(TextVisual):
    """TextVisual that skips re-sending unchanged uniforms (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sent: tuple | None = None
        super().__init__(*args, **kwargs)

    def _uniform_inputs(self) -> tuple:
        """Everything the uniforms set in TextVisual._prepare_draw are computed from."""
        tr = self.transforms.get_transform("document", "render")
        px_scale = (tr.map((1, 0)) - tr.map((0, 1)))[:2]
        return (self._vertices is None, self._pos_changed, self._color_changed, self._font_size,
                self.transforms.dpi, tuple(np.round(np.asarray(px_scale, np.float64), 9)),
                self._scaling, id(self._font), tuple(np.asarray(self._color.rgba).ravel()))

    def _prepare_draw(self, view: Any) -> bool | None:
        if len(self.text) == 0:
            return False
        inputs = self._uniform_inputs()
        if inputs == self._sent:
            return None  # the program still holds these uniforms
        result = super()._prepare_draw(view)
        self._sent = self._uniform_inputs()  # after the parent cleared its *_changed flags
        return result


class StillLabel(scene.Label):
    """scene.Label drawn with StillTextVisual; same arguments and behaviour."""

    def __init__(self, text: str, rotation: float = 0.0, **kwargs: Any) -> None:
        self._text_visual = StillTextVisual(text=text, rotation=rotation, **kwargs)
        self.rotation = rotation
        scene.Widget.__init__(self)
        self.add_subvisual(self._text_visual)
        self._set_pos()
