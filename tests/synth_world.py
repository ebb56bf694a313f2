"""The session's one tiny synthetic world (the ``synth_dataset`` fixture in tests/conftest.py).

Rendering even a tiny world is the dearest set-up in the suite, so the data, training, adaptation
and evaluation tests share this one, made once per session. It is read-only: a test that changes
files works on a copy (``shutil.copytree``). Tests that need a world of their own still make it:
the avatar tests (24 frames of two identities, which their assertions are written for), the
generalisation test (fixed headsets, 13 identities), the augmentation tests (48 px), another seed,
generation itself.
"""
from __future__ import annotations

IDENTITIES = 3  # id000, id001, id002
FRAMES = 16  # one capture of each identity
SIZE = 32  # camera images, px


def synth_config():
    from engine.synth.config import SynthConfig
    return SynthConfig(identities=IDENTITIES, captures_per_identity=1, frames_per_capture=FRAMES, image_size=SIZE)
