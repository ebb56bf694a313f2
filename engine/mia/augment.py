"""The 3D augmentation layer (paper Sec. 3.2, Fig. 5): re-render each HMC image through the frame's
3-D face shape under a perturbed head pose and camera, composited on a random background.

Why 3-D and not 2-D warps: the headset variations MIA must absorb (slop of the headset on the face,
camera placement and focal length) move a near-field face with strong parallax: nose, cheeks and eye
sockets shift by different amounts. A 2-D similarity/affine warp cannot produce that; resampling the
source image through the mesh can. Per camera:

1. project the mesh (head space, mm) into the source camera: each vertex's source pixel; a depth
   render from the source camera says which vertices the source image actually shows;
2. draw the mesh from the perturbed camera carrying (source x, source y, visibility) per vertex, so
   every target pixel knows where to sample the source (``MeshRenderer.render_source_coords``);
3. resample the source image there (bilinear). Target pixels whose surface was hidden in the source
   take the nearest visible pixel's source coordinates.

The model topology has holes (the mouth opening, the sclera ring around the corneas). Each inner
boundary loop is closed by a cone to an apex set back into the head, so the mouth interior and the
eyes come along with the lips and lids instead of leaving holes. Outside the face either a random
smooth background is drawn (``background_probability``) or the source is resampled under the
background's own motion: the headset interior is fixed to the camera, so only the intrinsic change
moves it, blended near the face into the face's motion so the head beyond the mesh edge follows it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from engine.render import MeshRenderer, PinholeCamera

VISIBILITY_TOLERANCE_MM = 1.5
CAP_DEPTH = 0.6          # apex of a hole's cap sits this many loop radii behind the loop (into the head)
FACE_MOTION_FALLOFF = 0.08  # outside the face, its motion fades over this fraction of the image width


@dataclass
class AugmentConfig:
    """How much headset variation to simulate; spreads are standard deviations."""

    enabled: bool = True
    probability: float = 0.8          # chance a sample is augmented at all
    rot_deg: float = 4.0              # rotation of the head inside the headset
    trans_mm: float = 4.0             # translation of the head inside the headset
    focal_scale: float = 0.08         # relative focal-length change, per camera
    center_px: float = 2.0            # principal-point shift, per camera (pixels of the image)
    background_probability: float = 0.7
    background_level: tuple[float, float] = (0.0, 0.5)
    brightness: float = 0.15          # relative gain change, per camera
    noise: float = 0.01               # additive Gaussian noise (intensity in [0, 1])
    shared_pose: bool = True          # one head motion for all cameras (slop) vs one per camera


def camera_from_calib(calib, head_pose: np.ndarray | None = None,
                      size: tuple[int, int] | None = None) -> PinholeCamera:
    """The camera that saw a frame: a capture's ``CameraCalib`` composed with the frame's head pose
    (capture.json holds the calibration with the head seated nominally), optionally resized (W, H)."""
    mv = np.eye(4)
    mv[:3, :3], mv[:3, 3] = calib.R, calib.t
    if head_pose is not None:
        mv = mv @ np.asarray(head_pose, np.float64)
    cam = PinholeCamera(int(calib.width), int(calib.height), float(calib.fx), float(calib.fy), float(calib.cx),
                        float(calib.cy), tuple(float(k) for k in calib.dist),
                        mv[:3, :3].astype(np.float32), mv[:3, 3].astype(np.float32))
    return cam if size is None else cam.scaled(*size)


def _moved(cam: PinholeCamera, motion: np.ndarray, focal: float = 1.0, shift=(0.0, 0.0)) -> PinholeCamera:
    mv = cam.mv.astype(np.float64) @ motion
    return PinholeCamera(cam.width, cam.height, cam.fx * focal, cam.fy * focal, cam.cx + shift[0],
                         cam.cy + shift[1], cam.dist, mv[:3, :3].astype(np.float32), mv[:3, 3].astype(np.float32))


def head_motion(rng: np.random.Generator, cfg: AugmentConfig, pivot: np.ndarray) -> np.ndarray:
    """A random rigid motion (4x4, head space) rotating about ``pivot``: the headset slipping."""
    R, _ = cv2.Rodrigues(np.deg2rad(rng.normal(0.0, cfg.rot_deg, 3)))
    m = np.eye(4)
    m[:3, :3] = R
    m[:3, 3] = pivot - R @ pivot + rng.normal(0.0, cfg.trans_mm, 3)
    return m


def perturbed_cameras(cameras: Sequence[PinholeCamera], rng: np.random.Generator, cfg: AugmentConfig,
                      pivot: np.ndarray | None = None) -> list[PinholeCamera]:
    """The cameras after a random head motion inside the headset and per-camera focal/centre changes.

    ``pivot`` (head space, mm) is where the head rotates about, by default the face centre of the
    model topology."""
    pivot = np.array([0.0, 0.0, 80.0]) if pivot is None else np.asarray(pivot, np.float64)
    shared = head_motion(rng, cfg, pivot)
    out = []
    for cam in cameras:
        motion = shared if cfg.shared_pose else head_motion(rng, cfg, pivot)
        focal = float(np.clip(1.0 + rng.normal(0.0, cfg.focal_scale), 0.6, 1.4))
        out.append(_moved(cam, motion, focal, rng.normal(0.0, cfg.center_px, 2)))
    return out


def random_background(rng: np.random.Generator, height: int, width: int,
                      level: tuple[float, float]) -> np.ndarray:
    """A smooth random background in [0, 1]: blobs, a gradient and some texture at a random level."""
    blobs = cv2.resize(rng.random((3, 3)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(a) * xx / width + np.sin(a) * yy / height).astype(np.float32)
    tex = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), width / 24)
    tex /= tex.std() + 1e-6
    bg = rng.uniform(*level) * (0.6 + 0.4 * blobs + rng.uniform(0, 0.5) * ramp + rng.uniform(0, 0.15) * tex)
    return np.clip(bg, 0.0, 1.0)


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """The edges (E_i, 2) of each boundary loop of a triangle mesh (edges used by exactly one face)."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    edges, counts = np.unique(e, axis=0, return_counts=True)
    border = edges[counts == 1]
    if len(border) == 0:
        return []
    verts, inv = np.unique(border, return_inverse=True)
    inv = inv.reshape(-1, 2)
    n = len(verts)
    graph = sp.coo_matrix((np.ones(len(inv)), (inv[:, 0], inv[:, 1])), shape=(n, n))
    k, labels = connected_components(graph, directed=False)
    return [border[labels[inv[:, 0]] == i] for i in range(k)]


def hole_caps(faces: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Close every boundary loop but the outer one (the longest) with a fan to one new apex vertex.

    Returns each hole's loop vertices and the cap faces; apex i gets index ``V + i``."""
    loops = sorted(boundary_loops(faces), key=len, reverse=True)[1:]
    n = int(faces.max()) + 1
    caps = [np.column_stack([edges, np.full(len(edges), n + i)]) for i, edges in enumerate(loops)]
    caps_faces = np.concatenate(caps).astype(np.int32) if caps else np.zeros((0, 3), np.int32)
    return [np.unique(edges) for edges in loops], caps_faces


class Augmenter:
    """The 3D augmentation layer over one mesh topology.

    Call it with one frame's three images, its mesh (head space, mm) and the three cameras that saw
    it (calibration composed with the frame's head pose). Holds one renderer per thread, made on
    first use, since GL contexts are bound to the thread that made them.
    """

    def __init__(self, cfg: AugmentConfig, faces: np.ndarray, image_size: int):
        self.cfg, self.image_size = cfg, int(image_size)
        faces = np.ascontiguousarray(faces, np.int32)
        self.n_verts = int(faces.max()) + 1
        self.loops, caps = hole_caps(faces)
        self.faces = np.concatenate([faces, caps])
        self._local = threading.local()

    def __getstate__(self) -> dict:  # picklable into data-loader workers; renderers are per process
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    # ----- per-thread renderer
    def _renderer(self) -> MeshRenderer:
        r = getattr(self._local, "renderer", None)
        if r is None:
            r = self._local.renderer = MeshRenderer(self.faces)
            self._local.zeros = np.zeros((r.n_verts, 3), np.float32)
        return r

    def release(self) -> None:
        """Free the calling thread's renderer."""
        r = getattr(self._local, "renderer", None)
        if r is not None:
            r.release()
            self._local.renderer = None

    # ----- geometry
    def capped_mesh(self, mesh: np.ndarray) -> np.ndarray:
        """The mesh plus one apex per hole, set back (-z, into the head) by a fraction of its size."""
        mesh = np.asarray(mesh, np.float32)[: self.n_verts]
        apexes = np.empty((len(self.loops), 3), np.float32)
        for i, loop in enumerate(self.loops):
            ring = mesh[loop]
            c = ring.mean(0)
            c[2] -= CAP_DEPTH * np.linalg.norm(ring[:, :2] - c[:2], axis=1).mean()
            apexes[i] = c
        return np.concatenate([mesh, apexes])

    def _fit(self, cam: PinholeCamera) -> PinholeCamera:
        s = self.image_size
        return cam if (cam.width, cam.height) == (s, s) else cam.scaled(s, s)

    def source_coords(self, verts: np.ndarray, source: PinholeCamera, target: PinholeCamera) -> np.ndarray:
        """(H, W, 4) for the target view: source pixel x, y (remap convention: pixel centres at
        integers), whether that source pixel shows this surface point, and coverage (0/1).

        ``verts`` is the capped mesh and must already be uploaded (``set_vertices``)."""
        r = self._renderer()
        zeros = self._local.zeros
        depth = r.render_source_coords(source, zeros)[..., 3]
        px, z = source.project(verts)
        h, w = depth.shape
        xi, yi = np.floor(px[:, 0]).astype(np.int64), np.floor(px[:, 1]).astype(np.int64)
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h) & (z > 1.0)
        d = np.where(inside, depth[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)], 0.0)
        vis = inside & (d > 0) & (z <= d + VISIBILITY_TOLERANCE_MM)
        attrs = np.column_stack([px - 0.5, vis.astype(np.float32)])
        out = r.render_source_coords(target, attrs).copy()
        out[..., 3] = out[..., 3] > 0
        return out

    def warp(self, image: np.ndarray, verts: np.ndarray, source: PinholeCamera,
             target: PinholeCamera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Re-render one camera image: (face pixels float [0, 255], face coverage mask, map (H, W, 2)).

        Pixels off the face hold the source under the background's motion (see module doc)."""
        sc = self.source_coords(verts, source, target)
        cover = sc[..., 3] > 0
        valid = cover & (sc[..., 2] > 0.5)
        h, w = cover.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        bg = np.dstack([(xx + 0.5 - target.cx) * (source.fx / target.fx) + source.cx - 0.5,
                        (yy + 0.5 - target.cy) * (source.fy / target.fy) + source.cy - 0.5]).astype(np.float32)
        flow = bg.copy()
        if valid.any():
            flow[cover] = sc[..., :2][cover]
            # every other pixel follows the nearest pixel that saw its surface in the source
            dist, labels = cv2.distanceTransformWithLabels((~valid).astype(np.uint8), cv2.DIST_L2, 3,
                                                           labelType=cv2.DIST_LABEL_PIXEL)
            lut = np.zeros((labels.max() + 1, 2), np.float32)
            lut[labels[valid]] = (flow - bg)[valid]
            motion = lut[labels]
            hidden = cover & ~valid
            flow[hidden] = bg[hidden] + motion[hidden]
            fade = np.exp(-dist / (FACE_MOTION_FALLOFF * w))[..., None]
            flow[~cover] = (bg + fade * motion)[~cover]
        out = cv2.remap(image.astype(np.float32), flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return out, cover, flow

    # ----- augmentation
    def __call__(self, images: np.ndarray, mesh: np.ndarray, cameras: Sequence[PinholeCamera],
                 rng: np.random.Generator) -> np.ndarray:
        """(3, H, W) uint8 HMC images -> augmented (3, H, W) uint8 (a copy; unchanged when not drawn)."""
        cfg = self.cfg
        if images.shape[1:] != (self.image_size, self.image_size):
            raise ValueError(f"expected images of shape (C, {self.image_size}, {self.image_size}), got {images.shape}")
        if not cfg.enabled or rng.random() >= cfg.probability:
            return images.copy()
        verts = self.capped_mesh(mesh)
        self._renderer().set_vertices(verts, self._local.zeros)
        sources = [self._fit(c) for c in cameras]
        targets = perturbed_cameras(sources, rng, cfg, pivot=np.asarray(mesh, np.float64).mean(0))
        out = np.empty_like(images)
        for i, (img, src, dst) in enumerate(zip(images, sources, targets)):
            x, cover, _ = self.warp(img, verts, src, dst)
            x /= 255.0
            if rng.random() < cfg.background_probability:
                alpha = cv2.GaussianBlur(cover.astype(np.float32), (3, 3), 0.6)
                x = alpha * x + (1 - alpha) * random_background(rng, *x.shape, cfg.background_level)
            x = x * (1.0 + rng.normal(0.0, cfg.brightness)) + rng.normal(0.0, cfg.noise, x.shape)
            out[i] = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
        return out

    def augment_batch(self, images: np.ndarray, meshes: np.ndarray,
                      cameras_per_sample: Sequence[Sequence[PinholeCamera]],
                      rng: np.random.Generator) -> np.ndarray:
        """(N, 3, H, W) uint8 with one mesh and camera triple per sample -> augmented (N, 3, H, W)."""
        return np.stack([self(im, m, cams, rng) for im, m, cams in zip(images, meshes, cameras_per_sample)])
