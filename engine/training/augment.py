"""The 3D augmentation layer (paper Sec. 3.2, Fig. 5): re-render each HMC image through the frame's
3-D face shape under a perturbed head pose and camera, composited on a random background.

Why 3-D and not 2-D warps: the headset variations MIA must absorb (slop of the headset on the face,
camera placement and focal length) move a near-field face with strong parallax: nose, cheeks and eye
sockets shift by different amounts. A 2-D similarity/affine warp cannot produce that; resampling the
source image through the mesh can. Per camera:

1. project the mesh (head space, mm) into the source camera: each vertex's source pixel; a depth
   render from the source camera (or a capture's stored visibility) says which vertices the source
   image actually shows;
2. draw the mesh from the perturbed camera carrying (source x, source y, visibility) per vertex, so
   every target pixel knows where to sample the source (``MeshRenderer.render_source_coords``);
3. resample the source image there (bilinear). Target pixels whose surface was hidden in the source
   take the nearest visible pixel's source coordinates.

The model topology has holes (the mouth opening, the sclera ring around the corneas). Each inner
boundary loop is closed by a cone to an apex set back into the head, so the mouth interior and the
eyes come along with the lips and lids as a surface with depth (interpolating the rim's source
coordinates across the hole, no 2-D inpainting needed). Outside the face either a random
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

from engine.camera import PinholeCamera
from engine.render import MeshRenderer

VISIBILITY_TOLERANCE_MM = 1.5
CAP_DEPTH = 0.6          # apex of a hole's cap sits this many loop radii behind the loop (into the head)
CAP_RINGS = 4            # rings of vertices from a hole's rim to its apex
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


def moved_camera(cam: PinholeCamera, motion: np.ndarray, focal: float = 1.0,
                 shift: Sequence[float] = (0.0, 0.0)) -> PinholeCamera:
    """``cam`` seeing the head moved by ``motion`` (4x4, head space), focal scaled, centre shifted (px)."""
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

    ``pivot`` (head space, mm) is where the head rotates about, by default a point near the face
    centre; ``Augmenter`` passes the frame's mesh centroid."""
    pivot = np.array([0.0, 0.0, 80.0]) if pivot is None else np.asarray(pivot, np.float64)
    shared = head_motion(rng, cfg, pivot)
    out = []
    for cam in cameras:
        motion = shared if cfg.shared_pose else head_motion(rng, cfg, pivot)
        focal = float(np.clip(1.0 + rng.normal(0.0, cfg.focal_scale), 0.6, 1.4))
        out.append(moved_camera(cam, motion, focal, rng.normal(0.0, cfg.center_px, 2)))
    return out


def random_background(rng: np.random.Generator, height: int, width: int,
                      level: tuple[float, float]) -> np.ndarray:
    """A smooth random background in [0, 1]: blobs, a gradient and some texture at a random level,
    like the headset interior and room light the face is seen against."""
    def smooth(cells: int) -> np.ndarray:
        noise = rng.standard_normal((cells, cells)).astype(np.float32)
        return cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    a = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(a) * np.linspace(-0.5, 0.5, width, dtype=np.float32) \
        + np.sin(a) * np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    bg = rng.uniform(*level) * (1.0 + 0.15 * smooth(3) + rng.uniform(0, 0.6) * ramp
                                + rng.uniform(0, 0.1) * smooth(max(width // 6, 2)))
    return np.clip(bg, 0.0, 1.0)


def _blur(x: np.ndarray, sigma: float, factor: int = 4) -> np.ndarray:
    """A wide Gaussian blur computed at 1/factor resolution (it only carries smooth fields)."""
    h, w = x.shape[:2]
    small = cv2.resize(x, (max(w // factor, 1), max(h // factor, 1)), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / factor), (w, h), interpolation=cv2.INTER_LINEAR)


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


@dataclass
class HoleCaps:
    """Cones closing a mesh's holes: extra vertex j lies a fraction ``t[j]`` of the way from rim vertex
    ``rim[j]`` to the apex of hole ``hole[j]`` (t = 1: the apex). The rings in between keep the cap's
    triangles small, as the renderer interpolates source coordinates perspective-correctly."""

    loops: list[np.ndarray]  # rim vertices of each hole
    rim: np.ndarray
    hole: np.ndarray
    t: np.ndarray
    faces: np.ndarray        # cap triangles, extra vertex j has index V + j


def hole_caps(faces: np.ndarray, rings: int = CAP_RINGS) -> HoleCaps:
    """Close every boundary loop but the outer one (the longest) with a ringed cone to an apex."""
    loops = sorted(boundary_loops(faces), key=len, reverse=True)[1:]
    n = int(faces.max()) + 1
    rims, holes, ts, caps = [], [], [], []
    for i, edges in enumerate(loops):
        verts = np.unique(edges)
        local = np.searchsorted(verts, edges)                 # (E, 2) positions within this rim
        base = n + sum(len(r) for r in rims)
        idx = [edges] + [base + k * len(verts) + local for k in range(rings - 1)]
        apex = base + (rings - 1) * len(verts)
        for a, b in zip(idx[:-1], idx[1:]):                   # quads between successive rings
            caps += [np.column_stack([a[:, 0], a[:, 1], b[:, 0]]), np.column_stack([a[:, 1], b[:, 1], b[:, 0]])]
        caps.append(np.column_stack([idx[-1], np.full(len(edges), apex)]))
        rims += [verts] * (rings - 1) + [verts[:1]]
        ts += [np.full(len(verts), k / rings) for k in range(1, rings)] + [np.ones(1)]
        holes.append(np.full(len(verts) * (rings - 1) + 1, i))
    if not loops:
        none = np.zeros(0, np.int64)
        return HoleCaps([], none, none, np.zeros(0, np.float32), np.zeros((0, 3), np.int32))
    return HoleCaps([np.unique(e) for e in loops], np.concatenate(rims), np.concatenate(holes),
                    np.concatenate(ts).astype(np.float32), np.concatenate(caps).astype(np.int32))


class Augmenter:
    """The 3D augmentation layer over one mesh topology.

    Call it with one frame's three images, its mesh (head space, mm) and the three cameras that saw
    it (calibration composed with the frame's head pose, see ``engine.camera.camera_from_calib``). Holds one
    renderer per thread, made on first use, since GL contexts are bound to the thread that made them.
    """

    def __init__(self, cfg: AugmentConfig, faces: np.ndarray, image_size: int):
        self.cfg, self.image_size = cfg, int(image_size)
        faces = np.ascontiguousarray(faces, np.int32)
        self.n_verts = int(faces.max()) + 1
        self.caps = hole_caps(faces)
        self.faces = np.concatenate([faces, self.caps.faces])
        self._local = threading.local()

    def __getstate__(self) -> dict:  # picklable into data-loader workers, which make their own renderers
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

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
        """The mesh plus its hole caps; each apex is set back (-z, into the head) by a fraction of the
        hole's size, so the mouth interior has depth and the caps stay behind the corneas."""
        mesh = np.asarray(mesh, np.float32)[: self.n_verts]
        c = self.caps
        apexes = np.empty((len(c.loops), 3), np.float32)
        for i, loop in enumerate(c.loops):
            ring = mesh[loop]
            apexes[i] = ring.mean(0)
            apexes[i, 2] -= CAP_DEPTH * np.linalg.norm(ring[:, :2] - apexes[i, :2], axis=1).mean()
        rim = mesh[c.rim]
        return np.concatenate([mesh, rim + c.t[:, None] * (apexes[c.hole] - rim)])

    def _fit(self, cam: PinholeCamera) -> PinholeCamera:
        s = self.image_size
        return cam if (cam.width, cam.height) == (s, s) else cam.scaled(s, s)

    def source_visibility(self, source: PinholeCamera, px: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Which uploaded vertices the source image shows: inside it and not behind its depth buffer."""
        depth = self._renderer().render_source_coords(source, self._local.zeros)[..., 3]
        h, w = depth.shape
        xi, yi = np.floor(px[:, 0]).astype(np.int64), np.floor(px[:, 1]).astype(np.int64)
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h) & (z > 1.0)
        d = np.where(inside, depth[yi.clip(0, h - 1), xi.clip(0, w - 1)], 0.0)
        return inside & (d > 0) & (z <= d + VISIBILITY_TOLERANCE_MM)

    def source_coords(self, verts: np.ndarray, source: PinholeCamera, target: PinholeCamera,
                      visibility: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 4) for the target view: source pixel x, y (remap convention: pixel centres at
        integers), whether the source shows this surface point (0..1) and depth (0: no face).

        ``verts`` is the capped mesh, already uploaded. ``visibility`` (V,), the source's vertex
        visibility when known (captures store it), saves the source depth render."""
        with np.errstate(invalid="ignore", over="ignore"):  # points behind the camera project to inf
            px, z = source.project(verts)
        px = np.nan_to_num(px, nan=-1e4, posinf=1e4, neginf=-1e4).clip(-1e4, 1e4)
        if visibility is None:
            vis = self.source_visibility(source, px, z)
        else:
            vis = np.concatenate([np.asarray(visibility, bool)[: self.n_verts], np.zeros(len(self.caps.t), bool)])
        vis[self.n_verts:] = True  # cap vertices only steer how the rim is interpolated across a hole
        attrs = np.empty((len(px), 3), np.float32)
        attrs[:, :2], attrs[:, 2] = px - 0.5, vis
        return self._renderer().render_source_coords(target, attrs)

    def _pixel_grid(self, h: int, w: int) -> np.ndarray:
        grid = getattr(self._local, "grid", None)
        if grid is None or grid.shape[:2] != (h, w):
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
            grid = self._local.grid = np.dstack([xx, yy])
        return grid

    def background_map(self, source: PinholeCamera, target: PinholeCamera) -> np.ndarray:
        """(H, W, 2) source coordinates of the headset interior, which is fixed to the camera: only the
        intrinsics move it (distortion acts on the same normalised rays, so this map is exact)."""
        grid = self._pixel_grid(target.height, target.width)
        scale = np.array([source.fx / target.fx, source.fy / target.fy], np.float32)
        shift = np.array([source.cx, source.cy], np.float32) - 0.5
        return (grid - np.array([target.cx, target.cy], np.float32)) * scale + shift

    def flow(self, verts: np.ndarray, source: PinholeCamera, target: PinholeCamera,
             visibility: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Where each target pixel samples the source, (H, W, 2), and the face coverage (H, W) bool."""
        sc = self.source_coords(verts, source, target, visibility)
        cover = sc[..., 3] > 0
        valid = cover & (sc[..., 2] > 0.5)
        bg = self.background_map(source, target)
        if not valid.any():
            return bg, cover
        # every pixel takes the motion (relative to the background's) of the nearest pixel whose
        # surface the source showed: its own where it did
        dist, labels = cv2.distanceTransformWithLabels((~valid).astype(np.uint8), cv2.DIST_L2, 3,
                                                       labelType=cv2.DIST_LABEL_PIXEL)
        seen = np.flatnonzero(valid)
        pixel_of = np.zeros(labels.max() + 1, np.intp)
        pixel_of[labels.ravel()[seen]] = seen
        nearest = pixel_of[labels]
        motion = np.take(sc.reshape(-1, 4), nearest, axis=0)[..., :2] - np.take(bg.reshape(-1, 2), nearest, axis=0)
        # off the face, a smooth extension of the face's motion fades out, so the head beyond the
        # mesh edge follows the face while the headset interior further out stays put
        sigma = FACE_MOTION_FALLOFF * cover.shape[1]
        w = valid.astype(np.float32)
        smooth = _blur(np.dstack([motion * w[..., None], w]), sigma)
        outside = smooth[..., :2] * (np.exp(-dist / sigma) / np.maximum(smooth[..., 2], 1e-3))[..., None]
        return bg + np.where(cover[..., None], motion, outside), cover

    def rerender(self, images: np.ndarray, mesh: np.ndarray, sources: Sequence[PinholeCamera],
                 targets: Sequence[PinholeCamera], visibility: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """The geometric core: (C, H, W) images seen by ``sources`` as ``targets`` would see them.

        Returns float32 images in [0, 255] and the face coverage (C, H, W) bool of each target."""
        verts = self.capped_mesh(mesh)
        self._renderer().set_vertices(verts, self._local.zeros)
        out = np.empty(images.shape, np.float32)
        cover = np.empty(images.shape, bool)
        for i, (src, dst) in enumerate(zip(sources, targets)):
            flow, cover[i] = self.flow(verts, self._fit(src), self._fit(dst),
                                       None if visibility is None else visibility[i])
            out[i] = cv2.remap(images[i].astype(np.float32), flow, None, cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        return out, cover

    # ----- augmentation
    def __call__(self, images: np.ndarray, mesh: np.ndarray, cameras: Sequence[PinholeCamera],
                 rng: np.random.Generator, visibility: np.ndarray | None = None) -> np.ndarray:
        """(3, H, W) uint8 HMC images -> augmented (3, H, W) uint8 (a copy; unchanged when not drawn).

        ``visibility`` (3, V): optional per-camera vertex visibility of the source images."""
        cfg = self.cfg
        if images.shape[1:] != (self.image_size, self.image_size) or len(images) != len(cameras):
            raise ValueError(f"expected {len(cameras)} images of {self.image_size}x{self.image_size} "
                             f"(one per camera), got shape {images.shape}")
        if len(mesh) < self.n_verts:
            raise ValueError(f"expected a mesh of the augmenter's topology ({self.n_verts} vertices), "
                             f"got {len(mesh)} vertices")
        if not cfg.enabled or rng.random() >= cfg.probability:
            return images.copy()
        sources = [self._fit(c) for c in cameras]
        pivot = np.asarray(mesh[: self.n_verts], np.float64).mean(0)
        x, cover = self.rerender(images, mesh, sources, perturbed_cameras(sources, rng, cfg, pivot), visibility)
        x *= 1.0 / 255.0
        for i in range(len(x)):
            if rng.random() < cfg.background_probability:
                alpha = cv2.GaussianBlur(cover[i].astype(np.float32), (3, 3), 0.6)
                x[i] = alpha * x[i] + (1.0 - alpha) * random_background(rng, *x.shape[1:], cfg.background_level)
            x[i] *= 1.0 + rng.normal(0.0, cfg.brightness)
        x += cfg.noise * rng.standard_normal(x.shape, np.float32)
        return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)

    def augment_batch(self, images: np.ndarray, meshes: np.ndarray,
                      cameras_per_sample: Sequence[Sequence[PinholeCamera]], rng: np.random.Generator,
                      visibility: np.ndarray | None = None) -> np.ndarray:
        """(N, 3, H, W) uint8 with one mesh (N, V, 3) and camera triple per sample -> augmented
        (N, 3, H, W); ``visibility`` (N, 3, V) optional."""
        vis = [None] * len(images) if visibility is None else visibility
        return np.stack([self(im, m, cams, rng, v)
                         for im, m, cams, v in zip(images, meshes, cameras_per_sample, vis)])
