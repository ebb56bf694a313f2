"""Synthetic identities: face shape, IR albedo texture (skin, brows, beard, make-up) and expression style.

The style is what makes MIA's problem real: the same expression *intent* (ARKit weights) gives each
person a different motion, so identities cannot be aligned by copying weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine.errors import SourceError
from engine.facemodel import FaceModel
from engine.synth.config import AppearanceConfig, IdentityConfig

BROW_L = slice(17, 22)
BROW_R = slice(22, 27)
EYE_L = slice(36, 42)
EYE_R = slice(42, 48)
LIPS_OUTER = slice(48, 60)
JAW = slice(2, 15)


@dataclass
class Identity:
    """One synthetic person: who they are, independent of any capture session."""

    name: str
    seed: int
    shape_weights: np.ndarray     # (identity_modes,)
    skin_albedo: float
    brow_darkness: float
    beard: float                  # default beard amount 0..1
    style: np.ndarray             # (E, E) intent -> this person's blendshape weights
    texture_noise: np.ndarray     # (S, S) fixed skin detail of this person

    def neutral_full(self, model: FaceModel) -> np.ndarray:
        return model.identity_shape(self.shape_weights)

    def neutral(self, model: FaceModel) -> np.ndarray:
        """Neutral mesh on the model topology (what a user would load as ``neutral.obj``)."""
        return model.to_topology(self.neutral_full(model))

    def styled(self, intent: np.ndarray) -> np.ndarray:
        """This person's blendshape weights for expression intent(s) (..., E)."""
        return np.clip(intent @ self.style.T, 0.0, 1.0).astype(np.float32)


def _style_matrix(model: FaceModel, rng: np.random.Generator, cfg: IdentityConfig) -> np.ndarray:
    names = model.expression_names
    e = len(names)
    gain = np.exp(rng.normal(0.0, cfg.style_gain_std, e))
    for i, n in enumerate(names):  # left/right asymmetry: the same person favours one side
        if n.endswith("_L"):
            j = names.index(n[:-2] + "_R")
            a = rng.normal(0.0, cfg.style_asymmetry)
            gain[i] *= np.exp(a)
            gain[j] *= np.exp(-a)
    style = np.diag(gain)
    groups = {}
    for i, n in enumerate(names):
        groups.setdefault(n.rstrip("_LR").split("_")[0][:5], []).append(i)
    for idx in groups.values():  # cross-talk inside related groups (mouthSmile raises mouthStretch ...)
        for i in idx:
            for j in idx:
                if i != j:
                    style[i, j] += abs(rng.normal(0.0, cfg.style_crosstalk)) * 0.5
    for a, b in (("mouthSmile", "cheekSquint"), ("jawOpen", "mouthStretch"), ("eyeBlink", "cheekRaiser"),
                 ("browInnerUp", "eyeWide"), ("mouthPucker", "mouthFunnel")):
        for side in ("_L", "_R", ""):
            if a + side in names and b + side in names:
                style[names.index(b + side), names.index(a + side)] += abs(rng.normal(0, cfg.style_crosstalk))
    return style.astype(np.float32)


def identity_name(index: int) -> str:
    """The subject name of synthetic identity ``index``: 7 -> 'id007'."""
    return f"id{index:03d}"


def identity_index(subject: str | int) -> int:
    """'id007', '7' or 7 -> 7: synthetic subjects are named by their index in the seeded draw."""
    if isinstance(subject, (int, np.integer)) and not isinstance(subject, bool):
        return int(subject)
    text = str(subject).strip()
    digits = text[2:] if text.lower().startswith("id") else text
    if not digits.isdigit():
        raise SourceError(f"synthetic subject {subject!r}: expected a name like 'id003' or an index")
    return int(digits)


def make_identity(model: FaceModel, index: int, seed: int, cfg: IdentityConfig) -> Identity:
    """Draw identity ``index`` of a dataset deterministically from ``seed``."""
    rng = np.random.default_rng([seed, index, 1])
    s = cfg.texture_size
    noise = cv2.GaussianBlur(rng.normal(0, 1, (s, s)).astype(np.float32), (0, 0), s / 64) * 0.6
    noise += cv2.GaussianBlur(rng.normal(0, 1, (s, s)).astype(np.float32), (0, 0), s / 12) * 2.0
    noise += rng.normal(0, 0.25, (s, s)).astype(np.float32)
    return Identity(
        name=identity_name(index), seed=int(seed),
        shape_weights=rng.normal(0, cfg.identity_scale, cfg.identity_modes).astype(np.float32),
        skin_albedo=float(rng.uniform(*cfg.skin_albedo)),
        brow_darkness=float(rng.uniform(*cfg.brow_darkness)),
        beard=float(rng.uniform(0.3, 1.0)) if rng.random() < cfg.beard_probability else 0.0,
        style=_style_matrix(model, rng, cfg),
        texture_noise=noise,
    )


def _uv_px(model: FaceModel, kit_idx: np.ndarray, s: int) -> np.ndarray:
    uv = model.vertex_uvs[kit_idx]
    return np.stack([uv[:, 0] * s, (1.0 - uv[:, 1]) * s], 1).astype(np.float32)


def albedo_texture(model: FaceModel, ident: Identity, appearance: AppearanceConfig | None = None) -> np.ndarray:
    """The face tile of this person's IR albedo (S, S) float in [0, 1], row 0 = v=1."""
    app = appearance or AppearanceConfig()
    s = ident.texture_noise.shape[0]
    lm = _uv_px(model, model.landmarks68, s)
    tex = np.full((s, s), ident.skin_albedo, np.float32) * (1.0 + 0.06 * ident.texture_noise)
    sc = 16  # draw at sub-pixel precision
    def poly(mask: np.ndarray, pts: np.ndarray, thick: int = 0, closed: bool = False) -> None:
        p = np.round(pts * sc).astype(np.int32).reshape(-1, 1, 2)
        if thick:
            cv2.polylines(mask, [p], closed, 1.0, thick, cv2.LINE_AA, shift=4)
        else:
            cv2.fillPoly(mask, [p], 1.0, cv2.LINE_AA, shift=4)
    brows = np.zeros((s, s), np.float32)
    for sl in (BROW_L, BROW_R):
        poly(brows, lm[sl], thick=max(2, s // 40))
    brows = cv2.GaussianBlur(brows, (0, 0), s / 200 + 0.5)
    hair_tex = 0.75 + 0.25 * np.clip(ident.texture_noise, -1, 1)
    tex *= 1.0 - ident.brow_darkness * brows * hair_tex
    beard_amount = ident.beard if app.beard < 0 else app.beard
    if beard_amount > 0:
        beard = np.zeros((s, s), np.float32)
        jaw = lm[JAW]
        chin_up = np.array([0, -0.02 * s], np.float32)
        upper = np.concatenate([lm[48:49], lm[31:36], lm[54:55]]) + chin_up
        region = np.concatenate([jaw, upper[::-1]])
        poly(beard, region)
        lips = np.zeros((s, s), np.float32)
        poly(lips, lm[LIPS_OUTER])
        beard = cv2.GaussianBlur(np.clip(beard - cv2.dilate(lips, np.ones((3, 3))), 0, 1), (0, 0), s / 60)
        rng = np.random.default_rng(ident.seed + 17)
        stubble = (rng.random((s, s)) < 0.35 + 0.5 * beard_amount).astype(np.float32)
        tex *= 1.0 - beard * beard_amount * (0.25 + 0.45 * stubble)
    if app.makeup > 0:
        liner = np.zeros((s, s), np.float32)
        for sl in (EYE_L, EYE_R):
            poly(liner, lm[sl], thick=max(1, s // 90), closed=True)
        lips = np.zeros((s, s), np.float32)
        poly(lips, lm[LIPS_OUTER])
        liner = cv2.GaussianBlur(liner, (0, 0), 0.8)
        lips = cv2.GaussianBlur(lips, (0, 0), 0.8)
        tex *= (1.0 - 0.55 * app.makeup * liner) * (1.0 - 0.25 * app.makeup * lips)
    return np.clip(tex * app.skin_gain, 0.02, 1.0)
