"""The camera conventions for looking at a face: mm coordinates, face along +z, y up.

Shared by the 3D viewer and the retargeting grid so every face view opens from the
front, frames the face the same way and is lit by a head-light that follows the orbit.
"""
from __future__ import annotations

import numpy as np
from vispy import scene

FRONT_AZIMUTH, FRONT_ELEVATION = 90.0, 0.0  # with up='+y' this looks down -z at the face
# Direction the light travels in camera coordinates (x right, y up, looking down -z):
# from the viewer's upper left towards the face.
LIGHT_IN_CAMERA = np.array([0.35, -0.45, -1.0, 0.0])
VIEW_IN_CAMERA = np.array([0.0, 0.0, -1.0, 0.0])  # the direction the camera looks
VISUAL_APP = "pyside6"
BACKGROUND = (0.13, 0.14, 0.16, 1.0)
TITLE_COLOR = (0.9, 0.9, 0.9, 1.0)
# vispy's perspective near plane is distance / sqrt(10 * depth_value). Its default (1e6) puts it
# ~0.1 mm from the camera, which leaves a 24-bit depth buffer ~0.07 mm of resolution at the face
# and lets eyelids, eyeballs and nostrils, which lie closer than that, fight; 100 puts it at 1/32
# of the distance (the face stays in front of it until the camera is inside it).
DEPTH_VALUE = 100.0


def make_front_camera() -> scene.TurntableCamera:
    """A turntable camera with y up, looking at the face from the front."""
    camera = scene.TurntableCamera(up="+y", fov=30.0, azimuth=FRONT_AZIMUTH, elevation=FRONT_ELEVATION)
    camera.depth_value = DEPTH_VALUE
    return camera


def frame_camera(camera: scene.TurntableCamera, lo: np.ndarray, hi: np.ndarray) -> None:
    """Centre the camera on the box (lo, hi), seen from the front with a small margin."""
    camera.center = tuple(float(c) for c in (np.asarray(lo) + np.asarray(hi)) / 2.0)
    camera.scale_factor = float(max(hi[0] - lo[0], hi[1] - lo[1], 1e-3)) * 1.15
    camera.azimuth, camera.elevation, camera.roll = FRONT_AZIMUTH, FRONT_ELEVATION, 0.0


def headlight(camera: scene.TurntableCamera) -> tuple[np.ndarray, np.ndarray] | None:
    """(direction the light travels, direction the camera looks) in scene coordinates for the
    camera's current pose; None for a degenerate camera."""
    mapped = np.asarray(camera.transform.map(np.stack([LIGHT_IN_CAMERA, VIEW_IN_CAMERA])), np.float64)[:, :3]
    if not np.all(np.isfinite(mapped)) or not np.all(np.linalg.norm(mapped, axis=1) > 0):
        return None
    return mapped[0], mapped[1]
