"""The one mapping table between the face model, ARKit and VRCFaceTracking (Unified Expressions v2).

Every output protocol speaks a different dialect of the same 52 ARKit blendshapes, so the whole
correspondence lives here, in one table, and nowhere else:

- ``ARKIT_NAMES``: Apple's 52 ``ARFaceAnchor.BlendShapeLocation`` names, in the order Live Link Face
  packs them (Unreal's ``EARFaceBlendShape``), so index i is slot i of a Live Link packet.
- ``TABLE``: one row per ARKit shape: the ICT-FaceKit expression modes it comes from (ICT splits
  ``browInnerUp`` and ``cheekPuff`` into ``_L``/``_R`` halves, which are averaged; ICT has no
  ``tongueOut``, which stays 0), its group (eyes, brows, jaw, mouth, cheeks, nose, tongue) and the
  Unified Expressions v2 base parameters it drives one-to-one (VRCFaceTracking's own ARKit mapping:
  mouthSmile -> MouthCornerPull + MouthCornerSlant, mouthRoll -> LipSuck, mouthShrug -> MouthRaiser ...).
- ``UNIFIED_COMBINED``: v2 parameters that combine several shapes (``JawX`` = right - left in -1..1,
  ``EyeLidLeft`` = openness with 0.75 at rest, ...).

ICT's ``cheekRaiser_*`` and ``PupilDilate_*`` have no ARKit counterpart and are not sent. ICT's
``_L`` is the subject's left, as ARKit's ``Left``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

ARKIT_COUNT = 52
GROUPS = ("eyes", "brows", "jaw", "mouth", "cheeks", "nose", "tongue")


@dataclass(frozen=True)
class ArkitShape:
    """One ARKit blendshape: where it comes from in the face model and what it drives downstream."""

    name: str  # ARKit / Live Link / Babble name (camelCase)
    ict: tuple[str, ...]  # ICT-FaceKit expression modes, averaged (empty: the model lacks it)
    group: str
    unified: tuple[str, ...]  # VRCFaceTracking Unified Expressions v2 base parameters it sets


def _row(name: str, ict: str | tuple[str, ...], group: str, *unified: str) -> ArkitShape:
    return ArkitShape(name, (ict,) if isinstance(ict, str) else ict, group, unified)


TABLE: tuple[ArkitShape, ...] = (
    _row("eyeBlinkLeft", "eyeBlink_L", "eyes"),  # Unified: through EyeLidLeft (combined)
    _row("eyeLookDownLeft", "eyeLookDown_L", "eyes"),
    _row("eyeLookInLeft", "eyeLookIn_L", "eyes"),
    _row("eyeLookOutLeft", "eyeLookOut_L", "eyes"),
    _row("eyeLookUpLeft", "eyeLookUp_L", "eyes"),
    _row("eyeSquintLeft", "eyeSquint_L", "eyes", "EyeSquintLeft"),
    _row("eyeWideLeft", "eyeWide_L", "eyes", "EyeWideLeft"),
    _row("eyeBlinkRight", "eyeBlink_R", "eyes"),
    _row("eyeLookDownRight", "eyeLookDown_R", "eyes"),
    _row("eyeLookInRight", "eyeLookIn_R", "eyes"),
    _row("eyeLookOutRight", "eyeLookOut_R", "eyes"),
    _row("eyeLookUpRight", "eyeLookUp_R", "eyes"),
    _row("eyeSquintRight", "eyeSquint_R", "eyes", "EyeSquintRight"),
    _row("eyeWideRight", "eyeWide_R", "eyes", "EyeWideRight"),
    _row("jawForward", "jawForward", "jaw", "JawForward"),
    _row("jawLeft", "jawLeft", "jaw", "JawLeft"),
    _row("jawRight", "jawRight", "jaw", "JawRight"),
    _row("jawOpen", "jawOpen", "jaw", "JawOpen"),
    _row("mouthClose", "mouthClose", "mouth", "MouthClosed"),
    _row("mouthFunnel", "mouthFunnel", "mouth", "LipFunnel"),
    _row("mouthPucker", "mouthPucker", "mouth", "LipPucker"),
    _row("mouthLeft", "mouthLeft", "mouth", "MouthUpperLeft", "MouthLowerLeft"),
    _row("mouthRight", "mouthRight", "mouth", "MouthUpperRight", "MouthLowerRight"),
    _row("mouthSmileLeft", "mouthSmile_L", "mouth", "MouthCornerPullLeft", "MouthCornerSlantLeft"),
    _row("mouthSmileRight", "mouthSmile_R", "mouth", "MouthCornerPullRight", "MouthCornerSlantRight"),
    _row("mouthFrownLeft", "mouthFrown_L", "mouth", "MouthFrownLeft"),
    _row("mouthFrownRight", "mouthFrown_R", "mouth", "MouthFrownRight"),
    _row("mouthDimpleLeft", "mouthDimple_L", "mouth", "MouthDimpleLeft"),
    _row("mouthDimpleRight", "mouthDimple_R", "mouth", "MouthDimpleRight"),
    _row("mouthStretchLeft", "mouthStretch_L", "mouth", "MouthStretchLeft"),
    _row("mouthStretchRight", "mouthStretch_R", "mouth", "MouthStretchRight"),
    _row("mouthRollLower", "mouthRollLower", "mouth", "LipSuckLower"),
    _row("mouthRollUpper", "mouthRollUpper", "mouth", "LipSuckUpper"),
    _row("mouthShrugLower", "mouthShrugLower", "mouth", "MouthRaiserLower"),
    _row("mouthShrugUpper", "mouthShrugUpper", "mouth", "MouthRaiserUpper"),
    _row("mouthPressLeft", "mouthPress_L", "mouth", "MouthPressLeft"),
    _row("mouthPressRight", "mouthPress_R", "mouth", "MouthPressRight"),
    _row("mouthLowerDownLeft", "mouthLowerDown_L", "mouth", "MouthLowerDownLeft"),
    _row("mouthLowerDownRight", "mouthLowerDown_R", "mouth", "MouthLowerDownRight"),
    _row("mouthUpperUpLeft", "mouthUpperUp_L", "mouth", "MouthUpperUpLeft"),
    _row("mouthUpperUpRight", "mouthUpperUp_R", "mouth", "MouthUpperUpRight"),
    _row("browDownLeft", "browDown_L", "brows", "BrowDownLeft"),
    _row("browDownRight", "browDown_R", "brows", "BrowDownRight"),
    _row("browInnerUp", ("browInnerUp_L", "browInnerUp_R"), "brows", "BrowInnerUp"),
    _row("browOuterUpLeft", "browOuterUp_L", "brows", "BrowOuterUpLeft"),
    _row("browOuterUpRight", "browOuterUp_R", "brows", "BrowOuterUpRight"),
    _row("cheekPuff", ("cheekPuff_L", "cheekPuff_R"), "cheeks", "CheekPuffLeft", "CheekPuffRight"),
    _row("cheekSquintLeft", "cheekSquint_L", "cheeks", "CheekSquintLeft"),
    _row("cheekSquintRight", "cheekSquint_R", "cheeks", "CheekSquintRight"),
    _row("noseSneerLeft", "noseSneer_L", "nose", "NoseSneerLeft"),
    _row("noseSneerRight", "noseSneer_R", "nose", "NoseSneerRight"),
    _row("tongueOut", (), "tongue", "TongueOut"),
)

ARKIT_NAMES: tuple[str, ...] = tuple(r.name for r in TABLE)
ARKIT_INDEX: dict[str, int] = {n: i for i, n in enumerate(ARKIT_NAMES)}
assert len(ARKIT_NAMES) == ARKIT_COUNT and len(ARKIT_INDEX) == ARKIT_COUNT


def _w(a: np.ndarray, name: str) -> float:
    return float(a[ARKIT_INDEX[name]])


def _eyelid(blink: float, wide: float) -> float:
    """VRCFT eye openness: 0 closed, 0.75 at rest, 1 wide open."""
    return min(1.0, max(0.0, 0.75 * (1.0 - blink) + 0.25 * wide))


# v2 parameters built from several ARKit shapes (VRCFaceTracking's "combined" parameters); ranges in
# the comments. Eye X is +1 looking to the subject's right (VRCFT's convention), Y +1 looking up.
UNIFIED_COMBINED: dict[str, Callable[[np.ndarray], float]] = {
    "EyeLidLeft": lambda a: _eyelid(_w(a, "eyeBlinkLeft"), _w(a, "eyeWideLeft")),  # 0..1
    "EyeLidRight": lambda a: _eyelid(_w(a, "eyeBlinkRight"), _w(a, "eyeWideRight")),  # 0..1
    "EyeLeftX": lambda a: _w(a, "eyeLookInLeft") - _w(a, "eyeLookOutLeft"),  # -1..1
    "EyeRightX": lambda a: _w(a, "eyeLookOutRight") - _w(a, "eyeLookInRight"),  # -1..1
    "EyeY": lambda a: 0.5 * (_w(a, "eyeLookUpLeft") + _w(a, "eyeLookUpRight")
                             - _w(a, "eyeLookDownLeft") - _w(a, "eyeLookDownRight")),  # -1..1
    "JawX": lambda a: _w(a, "jawRight") - _w(a, "jawLeft"),  # -1..1
    "MouthX": lambda a: _w(a, "mouthRight") - _w(a, "mouthLeft"),  # -1..1
    "SmileFrownLeft": lambda a: _w(a, "mouthSmileLeft") - _w(a, "mouthFrownLeft"),  # -1..1
    "SmileFrownRight": lambda a: _w(a, "mouthSmileRight") - _w(a, "mouthFrownRight"),  # -1..1
}
SIGNED_UNIFIED = frozenset(k for k in UNIFIED_COMBINED if k not in ("EyeLidLeft", "EyeLidRight"))


def unified_names() -> tuple[str, ...]:
    """Every v2 parameter name sent to VRChat, base parameters first, in table order."""
    base = [u for r in TABLE for u in r.unified]
    return tuple(dict.fromkeys(base + list(UNIFIED_COMBINED)))


def unified_values(arkit: np.ndarray) -> dict[str, float]:
    """ARKit-52 weights -> {v2 parameter name: value} (base parameters in 0..1, combined as noted)."""
    arkit = np.asarray(arkit, np.float32)
    out: dict[str, float] = {}
    for i, row in enumerate(TABLE):
        for u in row.unified:
            out[u] = float(arkit[i])
    for name, fn in UNIFIED_COMBINED.items():
        out[name] = fn(arkit)
    return out


class IctToArkit:
    """A (52, E) averaging matrix from a face model's expression weights to ARKit-52 weights."""

    def __init__(self, expression_names: Sequence[str]) -> None:
        names = list(expression_names)
        self.matrix = np.zeros((ARKIT_COUNT, len(names)), np.float32)
        missing = []
        for i, row in enumerate(TABLE):
            for ict in row.ict:
                if ict not in names:
                    missing.append(ict)
                    continue
                self.matrix[i, names.index(ict)] = 1.0 / len(row.ict)
        if missing:
            raise KeyError(f"the face model lacks expression modes {missing} the ARKit table maps from")

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        """(..., E) model weights -> (..., 52) ARKit weights."""
        return np.asarray(weights, np.float32) @ self.matrix.T


def group_indices() -> dict[str, np.ndarray]:
    """ARKit indices of each group (eyes, brows, jaw, mouth, cheeks, nose, tongue)."""
    return {g: np.array([i for i, r in enumerate(TABLE) if r.group == g]) for g in GROUPS}
