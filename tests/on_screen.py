"""One way for GUI tests to put a widget on screen: owned by qtbot, sized, shown and exposed."""
from __future__ import annotations


def show_widget(qtbot, widget, width: int, height: int):
    """``widget`` at ``width`` x ``height``, shown and exposed (qtbot closes it after the test)."""
    qtbot.addWidget(widget)
    widget.resize(width, height)
    widget.show()
    qtbot.waitExposed(widget)
    return widget
