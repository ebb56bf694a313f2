"""The headset-mounted cameras (HMC): a nominal three-camera rig, per-unit assembly variation, and
per-session slop (how the headset sits on the head).

Coordinates: head space in mm (x = subject's left, y up, z out of the face); cameras use OpenCV axes
(x right, y down, z forward). cam0 looks at the left eye, cam1 at the right eye, cam2 at the mouth.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.camera import PinholeCamera
from engine.io.capture_schema import CAMERA_NAMES
from engine.synth.config import HeadsetConfig, SessionConfig

# nominal camera position and look-at target in head space (mm), chosen so each eye camera sees the
# eye with its lids and brow from below-front, and the mouth camera sees lips, chin and cheeks.
NOMINAL_RIG = {
    "left_eye": ((36.0, 20.0, 128.0), (32.0, 45.0, 90.0)),
    "right_eye": ((-36.0, 20.0, 128.0), (-32.0, 45.0, 90.0)),
    "mouth": ((0.0, -40.0, 142.0), (0.0, -34.0, 95.0)),
}


# distance at which each camera's LED gives unit irradiance: the mouth camera sits closer to the lips
LED_REF_MM = (40.0, 40.0, 28.0)


def look_at(position: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Extrinsics (R, t) of an OpenCV camera at ``position`` looking at ``target``."""
    position, target = np.asarray(position, np.float64), np.asarray(target, np.float64)
    f = target - position
    f /= np.linalg.norm(f)
    up = np.asarray(up, np.float64)
    down = -(up - up.dot(f) * f)
    down /= np.linalg.norm(down)
    x = np.cross(down, f)
    R = np.stack([x, down, f])
    return R.astype(np.float32), (-R @ position).astype(np.float32)


def rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rotation matrix from Euler angles in radians (applied x, then y, then z)."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return (Rz @ Ry @ Rx).astype(np.float32)


def rigid(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    m = np.eye(4, dtype=np.float32)
    m[:3, :3], m[:3, 3] = R, t
    return m


@dataclass
class Headset:
    """One physical headset unit: its three cameras (at a reference resolution) and LED powers."""

    headset_id: str
    cameras: list[PinholeCamera]
    led_power: np.ndarray  # (3,)
    led_ref_mm: tuple[float, float, float] = LED_REF_MM

    def cameras_at(self, size: int, head_pose: np.ndarray | None = None) -> list[PinholeCamera]:
        """Cameras for ``size`` x ``size`` images, seeing a head moved by ``head_pose`` (4x4)."""
        out = []
        for cam in self.cameras:
            c = cam.scaled(size, size)
            out.append(c if head_pose is None else c.posed(head_pose))
        return out


def make_headset(headset_id: str, rng: np.random.Generator, cfg: HeadsetConfig, ref_size: int = 192) -> Headset:
    """A headset unit: the nominal rig perturbed by assembly tolerances drawn from ``rng``."""
    cams = []
    for name in CAMERA_NAMES:
        pos, target = (np.asarray(p, np.float32) for p in NOMINAL_RIG[name])
        pos = pos + rng.normal(0, cfg.placement_mm, 3)
        R, _ = look_at(pos, target)
        R = rotation(*np.deg2rad(rng.normal(0, cfg.placement_deg, 3))) @ R
        t = -R @ pos
        fov = cfg.mouth_fov_deg if name == "mouth" else cfg.eye_fov_deg
        f = 0.5 * ref_size / np.tan(np.deg2rad(fov) / 2) * (1 + rng.normal(0, cfg.focal_variation))
        c = ref_size / 2 + rng.normal(0, cfg.placement_mm * 0.5, 2)
        cams.append(PinholeCamera(ref_size, ref_size, float(f), float(f), float(c[0]), float(c[1]),
                                  (cfg.distortion_k1, cfg.distortion_k2, 0.0), R, t.astype(np.float32)))
    return Headset(headset_id, cams, rng.uniform(*cfg.led_power, 3).astype(np.float32))


SLOP_PIVOT = np.array([0.0, 20.0, 40.0], np.float32)  # roughly where the headset presses on the face


def make_slop(rng: np.random.Generator, cfg: SessionConfig) -> np.ndarray:
    """The per-session rigid pose of the head inside the headset (4x4, head -> headset head space)."""
    R = rotation(*np.deg2rad(rng.normal(0, cfg.slop_rot_deg, 3)))
    t = rng.normal(0, cfg.slop_trans_mm, 3).astype(np.float32)
    return rigid(R, SLOP_PIVOT - R @ SLOP_PIVOT + t)


def session_poses(slop: np.ndarray, n_frames: int, fps: float, rng: np.random.Generator,
                  cfg: SessionConfig) -> np.ndarray:
    """Per-frame head poses (T, 4, 4): the session slop plus a slow drift while the headset is worn."""
    k = max(int(fps * 2), 1)
    knots = max(n_frames // k + 2, 2)
    rot = rng.normal(0, np.deg2rad(cfg.jitter_rot_deg), (knots, 3))
    tr = rng.normal(0, cfg.jitter_trans_mm, (knots, 3))
    tt = np.arange(n_frames) / k
    poses = np.empty((n_frames, 4, 4), np.float32)
    for i, x in enumerate(tt):
        a, w = int(x), x - int(x)
        w = 0.5 - 0.5 * np.cos(np.pi * w)
        r = (1 - w) * rot[a] + w * rot[a + 1]
        t = (1 - w) * tr[a] + w * tr[a + 1]
        R = rotation(*r)
        poses[i] = rigid(R, SLOP_PIVOT - R @ SLOP_PIVOT + t) @ slop
    return poses
