"""Renders a synthetic person in a headset to three IR camera images plus ground truth.

The mesh is rasterised (engine.render) textured with the person's albedo and lit by each camera's
co-located LED; then the sensor model adds background, ambient IR, vignetting, gain, noise and
quantisation. Ground truth is the mesh on the model topology in head space (independent of headset,
slop and background) and per-camera vertex visibility from the depth buffer.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from engine.facemodel import FaceModel
from engine.camera import PinholeCamera
from engine.render import MeshRenderer
from engine.synth.config import AppearanceConfig, EnvironmentConfig, SensorConfig
from engine.synth.headset import Headset
from engine.synth.identity import Identity, albedo_texture

VISIBILITY_TOLERANCE_MM = 1.5
PART_ALBEDO = {"mouth_socket": 0.22, "gums_tongue": 0.38, "teeth": 0.85, "eye_socket_left": 0.35,
               "eye_socket_right": 0.35}
SCLERA, IRIS, PUPIL = 0.75, 0.32, 0.04


@dataclass
class RenderMesh:
    """The kit split at UV seams for rasterisation: render vertex r is kit vertex ``kit_index[r]``."""

    kit_index: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    albedo: np.ndarray   # constant albedo of non-skin parts
    texw: np.ndarray     # 1 where the albedo texture applies (the face tile)


@lru_cache(maxsize=2)
def render_mesh(model: FaceModel) -> RenderMesh:
    keep = np.zeros(model.vertex_count, bool)
    keep[model.render_index] = True
    fmask = keep[model.faces].all(1)
    faces, faces_uv = model.faces[fmask], model.faces_uv[fmask]
    pairs = np.stack([faces.ravel(), faces_uv.ravel()], 1)
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    kit_index, uv_index = uniq[:, 0], uniq[:, 1]
    uvs = model.kit_uvs[uv_index].copy()
    albedo = np.full(len(uniq), 0.6, np.float32)
    texw = np.zeros(len(uniq), np.float32)
    a, b = model.ranges["face"]
    skin = (kit_index >= a) & (kit_index < b) & (uvs[:, 0] < 1.0)
    texw[skin] = 1.0
    for part, value in PART_ALBEDO.items():
        a, b = model.ranges[part]
        albedo[(kit_index >= a) & (kit_index < b)] = value
    for side in ("left", "right"):
        a, b = model.ranges[f"eyeball_{side}"]
        sel = (kit_index >= a) & (kit_index < b)
        d = model.neutral[kit_index[sel]] - model.eye_centre(side)
        cos = d[:, 2] / np.linalg.norm(d, axis=1)
        albedo[sel] = np.where(cos > np.cos(np.deg2rad(11)), PUPIL, np.where(cos > np.cos(np.deg2rad(26)), IRIS, SCLERA))
    return RenderMesh(kit_index, inv.reshape(-1, 3).astype(np.int32), uvs.astype(np.float32), albedo, texw)


@dataclass
class Environment:
    """Per-capture surroundings: ambient IR level and what each camera sees behind the face."""

    ambient: float
    backgrounds: np.ndarray  # (3, S, S) float in [0, 1]


def make_background(rng: np.random.Generator, size: int, level: float, structure: float) -> np.ndarray:
    """A smooth random background with some structure (headset interior, room light leaking in)."""
    low = cv2.resize(rng.random((4, 4)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    mid = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), size / 24)
    mid = (mid - mid.mean()) / (mid.std() + 1e-6)
    bg = level * (0.6 + 0.4 * low + 0.25 * structure * mid)
    yy, xx = np.mgrid[0:size, 0:size] / size
    ang = rng.uniform(0, np.pi)
    bars = 0.5 + 0.5 * np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * rng.uniform(4, 12) * np.pi)
    return np.clip(bg * (1 - 0.3 * structure * bars), 0, 1).astype(np.float32)


def make_environment(rng: np.random.Generator, cfg: EnvironmentConfig, size: int) -> Environment:
    level = rng.uniform(*cfg.background_level)
    bgs = np.stack([make_background(rng, size, level, cfg.background_texture) for _ in range(3)])
    return Environment(float(rng.uniform(*cfg.ambient)), bgs)


@dataclass
class SensorState:
    gain: np.ndarray       # (3,)
    vignette: np.ndarray   # (S, S)


def make_sensor(rng: np.random.Generator, cfg: SensorConfig, size: int) -> SensorState:
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size - 0.5
    r2 = (xx ** 2 + yy ** 2) / 0.5
    return SensorState(rng.uniform(*cfg.gain, 3).astype(np.float32),
                       (1.0 - cfg.vignetting * r2 ** 1.5).astype(np.float32))


@dataclass
class FrameResult:
    images: np.ndarray      # (3, H, W) uint8
    mesh: np.ndarray        # (V, 3) float32 model topology, head space, mm
    visibility: np.ndarray  # (3, V) bool


class HMCWorld:
    """One person (with one appearance) wearing one headset in one environment."""

    def __init__(self, model: FaceModel, identity: Identity, headset: Headset, environment: Environment,
                 sensor: SensorState, sensor_cfg: SensorConfig, image_size: int,
                 appearance: AppearanceConfig | None = None, supersample: int = 1):
        self.model, self.identity, self.headset = model, identity, headset
        self.environment, self.sensor, self.sensor_cfg = environment, sensor, sensor_cfg
        self.size, self.ss = image_size, supersample
        self.rm = render_mesh(model)
        albedo = self.rm.albedo.copy()
        albedo[(self.rm.texw == 0) & (albedo == 0.6)] = identity.skin_albedo  # skin off the face tile
        self.renderer = MeshRenderer(self.rm.faces, self.rm.uvs, albedo, self.rm.texw)
        self.renderer.set_texture(albedo_texture(model, identity, appearance))
        self.neutral_full = identity.neutral_full(model)
        self._topo = model.topology.kit_index

    def mesh_full(self, intent: np.ndarray, gaze: np.ndarray) -> np.ndarray:
        return self.model.expressed(self.neutral_full, self.identity.styled(intent), gaze)

    def render(self, intent: np.ndarray, gaze: np.ndarray, head_pose: np.ndarray,
               rng: np.random.Generator) -> FrameResult:
        full = self.mesh_full(intent, gaze)
        self.renderer.set_vertices(full[self.rm.kit_index])
        mesh = full[self._topo]
        s = self.size * self.ss
        images = np.empty((3, self.size, self.size), np.uint8)
        vis = np.zeros((3, len(mesh)), bool)
        for i, cam in enumerate(self.headset.cameras_at(s, head_pose)):
            out = self.renderer.render_ir(cam, float(self.headset.led_power[i]), self.environment.ambient,
                                          ref_dist=self.headset.led_ref_mm[i])
            images[i] = self._sensor(out, i, rng)
            vis[i] = visible_vertices(mesh, cam, out[..., 1])
        return FrameResult(images, mesh.astype(np.float32), vis)

    def _sensor(self, out: np.ndarray, cam: int, rng: np.random.Generator) -> np.ndarray:
        radiance, cover = out[..., 0], out[..., 2]
        if self.ss > 1:
            radiance = cv2.resize(radiance, (self.size, self.size), interpolation=cv2.INTER_AREA)
            cover = cv2.resize(cover, (self.size, self.size), interpolation=cv2.INTER_AREA)
        bg = self.environment.backgrounds[cam]
        if bg.shape[0] != self.size:
            bg = cv2.resize(bg, (self.size, self.size), interpolation=cv2.INTER_AREA)
        x = radiance + (1.0 - cover) * bg * (0.5 + 4 * self.environment.ambient)
        x = x * self.sensor.vignette * self.sensor.gain[cam]
        c = self.sensor_cfg
        x = x + rng.normal(0, 1, x.shape).astype(np.float32) * (c.read_noise + c.shot_noise * np.sqrt(np.clip(x, 0, None)))
        x = np.clip(x, 0, 1) ** c.gamma
        return np.round(x * 255).astype(np.uint8)


def visible_vertices(mesh: np.ndarray, cam: PinholeCamera, depth: np.ndarray) -> np.ndarray:
    """Vertices of ``mesh`` that ``cam`` sees: inside the image and not behind the depth buffer."""
    px, z = cam.project(mesh)
    h, w = depth.shape
    ok = np.isfinite(px).all(1) & (z > 1.0)
    px = np.where(ok[:, None], px, -1.0)
    xi, yi = np.floor(px[:, 0]).astype(int), np.floor(px[:, 1]).astype(int)
    inside = ok & (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    d = np.zeros(len(mesh), np.float32)
    d[inside] = depth[yi[inside], xi[inside]]
    return inside & (d > 0) & (z <= d + VISIBILITY_TOLERANCE_MM)
