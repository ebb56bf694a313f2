"""The camera model, in one place: a pinhole with radial distortion seeing the head (PinholeCamera),
and its one conversion to and from the calibration a capture stores (CameraCalib in capture.json).

A capture's calibration holds each camera with the head seated nominally; the camera that saw a
frame is that calibration composed with the frame's head pose (the per-session slop). The renderer,
the synthetic world, the training data and the 3D augmentation layer all get their cameras here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.io.capture_schema import CameraCalib


@dataclass
class PinholeCamera:
    """Intrinsics (pixels), radial distortion and extrinsics (head mm -> camera mm, OpenCV axes)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    dist: tuple[float, float, float]
    R: np.ndarray  # (3, 3)
    t: np.ndarray  # (3,)

    @property
    def mv(self) -> np.ndarray:
        m = np.eye(4, dtype=np.float32)
        m[:3, :3] = self.R
        m[:3, 3] = self.t
        return m

    def to_camera(self, verts: np.ndarray) -> np.ndarray:
        return verts @ np.asarray(self.R, np.float32).T + np.asarray(self.t, np.float32)

    def project(self, verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Head-space points (N,3) -> pixel coordinates (N,2) and camera depth (N,), as the shader does."""
        p = self.to_camera(verts)
        z = np.maximum(p[:, 2], 1e-3)
        xy = p[:, :2] / z[:, None]
        r2 = (xy ** 2).sum(1, keepdims=True)
        k1, k2, k3 = self.dist
        d = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        px = xy * d * np.array([self.fx, self.fy], np.float32) + np.array([self.cx, self.cy], np.float32)
        return px.astype(np.float32), p[:, 2]

    def scaled(self, width: int, height: int) -> PinholeCamera:
        """The same camera with its image resampled to another size."""
        sx, sy = width / self.width, height / self.height
        return PinholeCamera(width, height, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy,
                             self.dist, self.R, self.t)

    def posed(self, head_pose: np.ndarray) -> PinholeCamera:
        """The same camera seeing the head moved by `head_pose` (4x4, head space)."""
        m = self.mv @ head_pose
        return PinholeCamera(self.width, self.height, self.fx, self.fy, self.cx, self.cy, self.dist,
                             m[:3, :3], m[:3, 3])


def camera_from_calib(calib: CameraCalib, head_pose: np.ndarray | None = None,
                      size: tuple[int, int] | None = None) -> PinholeCamera:
    """The camera that saw a frame: a capture's ``CameraCalib`` composed with the frame's head pose
    (capture.json holds the calibration with the head seated nominally), optionally resized (W, H).
    The composition runs in float64 from the stored calibration, then the pose is kept as float32."""
    mv = np.eye(4)
    mv[:3, :3], mv[:3, 3] = calib.R, calib.t
    if head_pose is not None:
        mv = mv @ np.asarray(head_pose, np.float64)
    cam = PinholeCamera(int(calib.width), int(calib.height), float(calib.fx), float(calib.fy),
                        float(calib.cx), float(calib.cy), tuple(float(k) for k in calib.dist),
                        mv[:3, :3].astype(np.float32), mv[:3, 3].astype(np.float32))
    return cam if size is None else cam.scaled(*size)


def calib_from_camera(cam: PinholeCamera, name: str) -> CameraCalib:
    """The calibration a capture stores for `cam` (the inverse of `camera_from_calib` without a pose)."""
    return CameraCalib(name=name, width=cam.width, height=cam.height, fx=cam.fx, fy=cam.fy, cx=cam.cx,
                       cy=cam.cy, dist=np.asarray(cam.dist, np.float64), R=np.asarray(cam.R, np.float64),
                       t=np.asarray(cam.t, np.float64))
