"""The test-time reading options every command that runs the model shares: `--averaging COPIES`
and `--mirror/--no-mirror` (engine/runtime/averaging.py). One definition, so their meaning and
help read the same in `mia eval`, `blendshapes`, `export`, `stream` and `bundle`."""
from __future__ import annotations

import argparse


def add_reading_options(p: argparse.ArgumentParser, copies: int | None = None, mirror: bool | None = None,
                        why: str = "") -> None:
    """Add both options; None defaults mean "what the checkpoint recommends" (16 copies + mirror
    for the shipped model). `why` ends the help of a command whose default differs."""
    recommended = "the checkpoint's recommendation"
    copies_default = recommended if copies is None else str(copies)
    mirror_default = recommended if mirror is None else "on" if mirror else "off"
    p.add_argument("--averaging", type=int, default=copies, metavar="COPIES",
                   help="test-time averaging: read each frame this many times, slightly moved, and average "
                        f"(1 = no moved copies; default: {copies_default}{why})")
    p.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=mirror,
                   help="also read each frame's mirror image (eye cameras swapped, images flipped) and average "
                        f"the mirrored-back mesh with the direct one (default: {mirror_default}{why})")
