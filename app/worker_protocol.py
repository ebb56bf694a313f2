"""What the GUI side (the session) and the frame worker say to each other, as typed values.

The session posts *commands* (frozen dataclasses) to the worker's queue; the worker answers with
*reports* (``SourceOpened``, ``SubjectSet``, ``TargetsSet``) through Qt signals and hands over
each frame as a ``FrameBundle``. Nothing crosses the thread boundary as a command string or an
ad-hoc dict, so a typo is an AttributeError at the call site, not a silently ignored command.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Union

import numpy as np

from app.subjects import SubjectSpec
from engine.runtime.sources import CameraState, Images

Roi = tuple[int, int, int, int]


# --------------------------------------------------------------------------- commands (GUI -> worker)
@dataclass(frozen=True)
class OpenSource:
    """Open a capture / live cameras / synthetic source; ``request`` tags its first frame."""

    spec: dict[str, Any]
    profile: Any = None
    request: int = 0


@dataclass(frozen=True)
class CloseSource:
    pass


@dataclass(frozen=True)
class LoadModel:
    path: str


@dataclass(frozen=True)
class SetSubject:
    """Drive this subject (None: back to the one the source shows)."""

    spec: SubjectSpec | None


@dataclass(frozen=True)
class ResolveSubject:
    """The session learned more about the subjects (a model loaded): resolve the driven one again,
    keeping a subject the user chose."""


@dataclass(frozen=True)
class SetTargets:
    """Retarget to these subjects (in this order)."""

    specs: tuple[SubjectSpec, ...]


@dataclass(frozen=True)
class ShowTargets:
    """Whether the retarget grid is on screen. While it is not, the targets' meshes are still made
    (outputs stream them, exports write them) but not their textures and normals, which only the
    grid draws."""

    shown: bool


@dataclass(frozen=True)
class SetRois:
    rois: tuple[Roi | None, Roi | None, Roi | None]


@dataclass(frozen=True)
class Play:
    playing: bool


@dataclass(frozen=True)
class Seek:
    index: int
    request: int


@dataclass(frozen=True)
class Step:
    delta: int
    request: int


@dataclass(frozen=True)
class SetSpeed:
    speed: float


@dataclass(frozen=True)
class SetLoop:
    loop: bool


@dataclass(frozen=True)
class SetPaced:
    """False: run frames as fast as the machine allows (benchmarks, exports)."""

    paced: bool


@dataclass(frozen=True)
class Refresh:
    """Re-run the frame on screen (a paused recorded source)."""


@dataclass(frozen=True)
class Wake:
    """The GUI took the frame in the slot; the loop may compute the next."""


@dataclass(frozen=True)
class Quit:
    pass


Command = Union[OpenSource, CloseSource, LoadModel, SetSubject, ResolveSubject, SetTargets, ShowTargets, SetRois, Play,
                Seek, Step,
                SetSpeed, SetLoop, SetPaced, Refresh, Wake, Quit]


# --------------------------------------------------------------------------- reports (worker -> GUI)
@dataclass(frozen=True)
class SourceOpened:
    kind: str
    name: str
    live: bool
    fps: float
    subject_id: str | None
    headset_id: str | None
    spec: dict[str, Any]
    frame_count: int | None  # None for live sources
    has_ground_truth: bool

    def as_dict(self) -> dict[str, Any]:
        """The session's ``source_info`` (what its listeners read)."""
        return asdict(self)


@dataclass(frozen=True, eq=False)
class SubjectSet:
    """Who is driven now, and how (shape only or with texture), in words for the neutral panel."""

    name: str
    origin: str
    textured: bool
    note: str
    mode: str
    template: bool  # the model's template face stands in for a subject without a neutral mesh
    neutral: np.ndarray
    override: bool  # chosen by the user rather than by the source

    def as_dict(self) -> dict[str, Any]:
        """The session's ``subject_info`` (what its listeners read)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class TargetsSet:
    driven: tuple[str, ...]
    problems: tuple[str, ...]  # one sentence per target that could not be driven


# --------------------------------------------------------------------------- frames (worker -> GUI)
@dataclass
class FrameBundle:
    """Everything the GUI draws for one frame."""

    index: int
    timestamp: float
    live: bool
    images: Images
    camera_states: tuple[CameraState, ...]
    ground_truth: np.ndarray | None = None
    mesh: np.ndarray | None = None
    texture: np.ndarray | None = None
    code: np.ndarray | None = None
    embedding: np.ndarray | None = None  # (E,) the identity-free expression code e (the ARKit head reads it)
    targets: dict[str, tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict)
    targets_drawable: bool = True  # False: made while the grid was off screen, without textures and normals
    # smooth vertex normals computed by the worker (on the GUI thread lighting costs ~2 ms a face):
    # of "mesh" and "ground_truth", and of each target by name; absent when not in this topology
    normals: dict[str, np.ndarray] = field(default_factory=dict)
    target_normals: dict[str, np.ndarray] = field(default_factory=dict)
    vertex_error: np.ndarray | None = None  # (V,) mm, ||pred - gt|| per vertex
    region_error: dict[str, float] | None = None  # region -> mean mm
    read_ms: float = 0.0
    infer_ms: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    worker_fps: float = 0.0
    fresh: bool = True
    request: int = 0  # the seek/step request this frame answers (0: playback)
