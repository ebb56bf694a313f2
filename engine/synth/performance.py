"""Performances: what a subject does in front of the headset, as expression intents and gaze over time.

Segments mirror the paper's capture script: peak expressions, range of motion, speech (recited
sentences) and conversation; blinks and saccades run on top of every segment.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.synth.config import PerformanceConfig

PEAKS: dict[str, dict[str, float]] = {
    "smile": {"mouthSmile_L": 1, "mouthSmile_R": 1, "cheekSquint_L": .5, "cheekSquint_R": .5},
    "big_smile": {"mouthSmile_L": 1, "mouthSmile_R": 1, "jawOpen": .35, "mouthUpperUp_L": .4, "mouthUpperUp_R": .4},
    "jaw_open": {"jawOpen": 1},
    "scream": {"jawOpen": .8, "mouthStretch_L": .8, "mouthStretch_R": .8, "browInnerUp_L": .6, "browInnerUp_R": .6},
    "pucker": {"mouthPucker": 1},
    "funnel": {"mouthFunnel": 1, "jawOpen": .2},
    "frown": {"mouthFrown_L": 1, "mouthFrown_R": 1, "browDown_L": .7, "browDown_R": .7},
    "brows_up": {"browInnerUp_L": 1, "browInnerUp_R": 1, "browOuterUp_L": 1, "browOuterUp_R": 1, "eyeWide_L": .5, "eyeWide_R": .5},
    "brows_down": {"browDown_L": 1, "browDown_R": 1, "eyeSquint_L": .4, "eyeSquint_R": .4},
    "sneer": {"noseSneer_L": 1, "noseSneer_R": 1, "mouthUpperUp_L": .6, "mouthUpperUp_R": .6},
    "cheek_puff": {"cheekPuff_L": 1, "cheekPuff_R": 1, "mouthClose": .3},
    "squint": {"eyeSquint_L": 1, "eyeSquint_R": 1, "cheekRaiser_L": .5, "cheekRaiser_R": .5},
    "eyes_closed": {"eyeBlink_L": 1, "eyeBlink_R": 1},
    "wink_left": {"eyeBlink_L": 1, "cheekSquint_L": .4, "mouthSmile_L": .3},
    "wink_right": {"eyeBlink_R": 1, "cheekSquint_R": .4, "mouthSmile_R": .3},
    "jaw_left": {"jawLeft": 1, "mouthLeft": .5},
    "jaw_right": {"jawRight": 1, "mouthRight": .5},
    "jaw_forward": {"jawForward": 1, "jawOpen": .2},
    "lips_roll": {"mouthRollLower": 1, "mouthRollUpper": 1},
    "lips_press": {"mouthPress_L": 1, "mouthPress_R": 1, "mouthShrugUpper": .5},
    "mouth_left": {"mouthLeft": 1},
    "mouth_right": {"mouthRight": 1},
    "dimple": {"mouthDimple_L": 1, "mouthDimple_R": 1},
    "stretch": {"mouthStretch_L": 1, "mouthStretch_R": 1},
    "lower_down": {"mouthLowerDown_L": 1, "mouthLowerDown_R": 1, "jawOpen": .2},
    "shrug": {"mouthShrugLower": 1, "mouthShrugUpper": .6},
    "surprise": {"jawOpen": .6, "browInnerUp_L": 1, "browInnerUp_R": 1, "eyeWide_L": 1, "eyeWide_R": 1},
}
VISEMES: list[dict[str, float]] = [
    {"jawOpen": .45, "mouthStretch_L": .2, "mouthStretch_R": .2},        # a
    {"jawOpen": .2, "mouthSmile_L": .35, "mouthSmile_R": .35},          # e / i
    {"jawOpen": .3, "mouthFunnel": .6},                                 # o
    {"mouthPucker": .8, "jawOpen": .1},                                 # u / w
    {"mouthClose": .4, "mouthPress_L": .5, "mouthPress_R": .5},         # m b p
    {"mouthRollLower": .5, "mouthUpperUp_L": .3, "mouthUpperUp_R": .3},  # f v
    {"jawOpen": .15, "mouthShrugUpper": .3},                            # t d s
    {"jawOpen": .05},                                                   # rest
]


@dataclass
class Performance:
    """Expression intents (T, E) in [0, 1] and gaze (T, 2 eyes, [yaw, pitch]) radians."""

    intents: np.ndarray
    gaze: np.ndarray

    def __len__(self) -> int:
        return len(self.intents)


def _vec(names: list[str], d: dict[str, float]) -> np.ndarray:
    v = np.zeros(len(names), np.float32)
    for k, w in d.items():
        v[names.index(k)] = w
    return v


def _smooth(x: np.ndarray, frames: float) -> np.ndarray:
    """Critically damped smoothing (two passes of a one-pole filter) along time."""
    if frames <= 1:
        return x
    a = 1.0 / frames
    y = x.copy()
    for _ in range(2):
        for t in range(1, len(y)):
            y[t] = y[t - 1] + a * (y[t] - y[t - 1])
    return y


def _peaks(names, n, fps, rng) -> np.ndarray:
    out = np.zeros((n, len(names)), np.float32)
    t = 0
    keys = list(PEAKS)
    while t < n:
        hold = int(rng.uniform(0.6, 1.4) * fps)
        target = _vec(names, PEAKS[keys[rng.integers(len(keys))]]) * rng.uniform(0.6, 1.0)
        ramp = int(0.3 * fps)
        seg = np.concatenate([np.linspace(0, 1, ramp), np.ones(hold), np.linspace(1, 0, ramp), np.zeros(ramp // 2)])
        seg = seg[: n - t]
        out[t: t + len(seg)] = seg[:, None] * target
        t += len(seg)
    return out


def _range_of_motion(names, n, fps, rng) -> np.ndarray:
    order = [i for i in rng.permutation(len(names)) if not names[i].startswith(("eyeLook", "Pupil"))]
    out = np.zeros((n, len(names)), np.float32)
    per = max(int(0.8 * fps), 4)
    for k, t in enumerate(range(0, n, per)):
        i = order[k % len(order)]
        seg = np.sin(np.linspace(0, np.pi, per)) ** 2
        m = min(per, n - t)
        out[t: t + m, i] = seg[:m]
        j = order[(k + 3) % len(order)]
        out[t: t + m, j] = 0.5 * seg[:m] * rng.uniform(0, 1)
    return out


def _speech(names, n, fps, rng) -> np.ndarray:
    vis = np.stack([_vec(names, v) for v in VISEMES])
    out = np.zeros((n, len(names)), np.float32)
    t = 0
    while t < n:
        syl = int(fps / rng.uniform(3.5, 6.0))
        pause = rng.random() < 0.12
        w = vis[-1] if pause else vis[rng.integers(len(vis) - 1)] * rng.uniform(0.6, 1.3)
        out[t: t + syl] = w
        t += syl if not pause else syl * 2
    out = _smooth(out, fps / 15)
    brows = np.clip(_smooth(rng.normal(0, 1, (n, 1)).astype(np.float32), fps), 0, None) * 0.5
    for k in ("browInnerUp_L", "browInnerUp_R"):
        out[:, names.index(k)] += brows[:, 0]
    return out


def _conversation(names, n, fps, rng) -> np.ndarray:
    talk = _speech(names, n, fps, rng)
    speaking = _smooth((rng.random((n, 1)) < 0.5).astype(np.float32).repeat(1, 0), 1.0)
    blocks = np.repeat(rng.random(n // int(2 * fps) + 1) < 0.55, int(2 * fps))[:n, None]
    out = talk * blocks * speaking.clip(0, 1)
    drift = _smooth(np.abs(rng.normal(0, 0.5, (n, len(names)))).astype(np.float32), fps * 1.5)
    mask = rng.random(len(names)) < 0.2
    out += drift * mask * 0.6
    smiles = _smooth((rng.random((n, 1)) < 0.01).astype(np.float32) * 30, fps * 0.6).clip(0, 1)
    for k in ("mouthSmile_L", "mouthSmile_R", "cheekSquint_L", "cheekSquint_R"):
        out[:, names.index(k)] += smiles[:, 0] * 0.8
    return out


SEGMENTS = {"peaks": _peaks, "range_of_motion": _range_of_motion, "speech": _speech, "conversation": _conversation}


def _blinks(n, fps, rng, cfg: PerformanceConfig) -> np.ndarray:
    b = np.zeros(n, np.float32)
    t = int(rng.uniform(*cfg.blink_interval_s) * fps * 0.5)
    shape = np.sin(np.linspace(0, np.pi, max(int(0.2 * fps), 3)))
    while t < n:
        m = min(len(shape), n - t)
        b[t: t + m] = np.maximum(b[t: t + m], shape[:m])
        t += int(rng.uniform(*cfg.blink_interval_s) * fps)
    return b


def _saccades(n, fps, rng, cfg: PerformanceConfig) -> np.ndarray:
    g = np.zeros((n, 2), np.float32)
    t, cur = 0, np.zeros(2, np.float32)
    lim = np.deg2rad(cfg.gaze_range_deg)
    while t < n:
        nxt = np.clip(rng.normal(0, lim / 2, 2), -lim, lim).astype(np.float32)
        dur = int(rng.uniform(*cfg.saccade_interval_s) * fps)
        k = min(2, n - t)
        g[t: t + k] = cur + (nxt - cur) * np.linspace(0.5, 1, k)[:, None]
        g[t + k: t + dur] = nxt
        cur, t = nxt, t + max(dur, k)
    return g


def make_performance(names: list[str], n_frames: int, fps: float, rng: np.random.Generator,
                     cfg: PerformanceConfig, segments: tuple[str, ...] | None = None) -> Performance:
    """A performance of ``n_frames`` split evenly over the configured segment kinds."""
    segs = segments or cfg.segments
    unknown = [s for s in segs if s not in SEGMENTS]
    if unknown:
        raise ValueError(f"unknown performance segment(s) {unknown}; expected some of {list(SEGMENTS)}")
    bounds = np.linspace(0, n_frames, len(segs) + 1).astype(int)
    intents = np.concatenate([SEGMENTS[s](names, int(b - a), fps, rng)
                              for s, a, b in zip(segs, bounds[:-1], bounds[1:])])
    gaze_dir = _saccades(n_frames, fps, rng, cfg)
    blink = _blinks(n_frames, fps, rng, cfg)
    for side in ("_L", "_R"):
        i = names.index("eyeBlink" + side)
        intents[:, i] = np.maximum(intents[:, i], blink)
        yaw, pitch = gaze_dir[:, 0], gaze_dir[:, 1]
        lim = np.deg2rad(cfg.gaze_range_deg)
        look_in, look_out = (yaw < 0, yaw > 0) if side == "_L" else (yaw > 0, yaw < 0)
        intents[:, names.index("eyeLookIn" + side)] = np.abs(yaw) * look_in / lim
        intents[:, names.index("eyeLookOut" + side)] = np.abs(yaw) * look_out / lim
        intents[:, names.index("eyeLookUp" + side)] = np.clip(pitch, 0, None) / lim
        intents[:, names.index("eyeLookDown" + side)] = np.clip(-pitch, 0, None) / lim
    gaze = np.stack([gaze_dir, gaze_dir], 1)
    gaze[:, :, 1] = -gaze[:, :, 1]  # pitch positive = look up; rotation about +x tilts the eye down
    gaze[:, :, 0] = -gaze[:, :, 0]
    return Performance(np.clip(intents, 0, 1).astype(np.float32), gaze.astype(np.float32))
