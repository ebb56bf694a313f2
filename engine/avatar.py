"""Person-specific avatars D_i(z, v): the codec avatars MIA drives (paper Sec. 3.1, eq. 3).

The paper presumes a pre-trained, person-specific decoder per identity that turns an expression
code z (256) and a view vector v (3) into a view-dependent texture. Here they are built from the
synthetic world, three parts in one file because evaluation needs all three without the trainer:

- the *ground-truth avatar texture* of a frame: the person's albedo shaded for that frame's geometry
  (normals change with wrinkles, mouth and eyelids) and seen from v, baked in UV space;
- `AvatarAutoencoder`, E_i(geometry, frontal texture) -> z and D_i(z, v) -> (texture, geometry);
- the avatar file (`subjects/<id>/avatar/avatar.pt`) and `AvatarDecoder`, its inference wrapper.

Every identity is trained alone from its own random initialisation, so latent axes are not shared
between identities; that is the problem MIA's adaptation layers F_i and PCA bases P_i solve.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from engine.io.checkpoint import atomic_torch_save, check_finite, safe_torch_load
from engine.io.layout import AVATAR_DIR, AVATAR_FILE
from engine.errors import AvatarError
from engine.facemodel import FaceModel, load_face_model
from engine.render import MeshRenderer

FORMAT = "mia-avatar"
VERSION = 1
MM_PER_CM = 10.0
MIN_RELATIVE_SPREAD = 1e-3  # geometry PCA components spreading less than this x the first are dropped
FRONTAL_VIEW = np.array([0.0, 0.0, 1.0], np.float32)  # head coordinates: +z points out of the face
LIGHT_DIR = np.array([0.3, 0.5, 1.0], np.float32) / np.linalg.norm([0.3, 0.5, 1.0])  # key light, fixed to the head


# --------------------------------------------------------------------------- ground-truth textures

def texture_faces(model: FaceModel | None = None) -> np.ndarray:
    """Model-topology triangles of the texture-mapped face skin.

    The eye caps' UVs point into the kit's eyeball tile, not the face albedo, so baking them would
    smear long slivers across the face texture; they are left out (gaze still shows through the
    eyelids' shading)."""
    model = model or load_face_model()
    topo = model.topology
    a, b = model.ranges["narrow_face"]
    kit = topo.kit_index[topo.faces]
    return topo.faces[((kit >= a) & (kit < b)).all(1)]


def texture_renderer(albedo: np.ndarray, model: FaceModel | None = None) -> MeshRenderer:
    """A renderer that bakes a subject's textures from whole (V, 3) model-topology meshes.

    A degenerate triangle on the last vertex keeps the renderer's vertex count equal to the
    topology's even though the eye-cap triangles are dropped; it covers no texel."""
    model = model or load_face_model()
    topo = model.topology
    last = topo.vertex_count - 1
    faces = np.concatenate([texture_faces(model), np.full((1, 3), last, np.int32)])
    renderer = MeshRenderer(faces, topo.uvs)
    renderer.set_texture(np.asarray(albedo, np.float32))
    return renderer


def frame_texture(renderer: MeshRenderer, mesh: np.ndarray, view: np.ndarray, size: int = 128) -> np.ndarray:
    """The ground-truth avatar texture of one frame: (size, size) float32 in [0, 1], row 0 = v=1.

    ``mesh`` (V, 3) mm in head coordinates, ``view`` (3,) from the face towards the viewer."""
    renderer.set_vertices(mesh)
    return np.clip(renderer.bake_uv(size, np.asarray(view, np.float64), LIGHT_DIR), 0.0, 1.0)


def uv_mask(size: int = 128, model: FaceModel | None = None) -> np.ndarray:
    """(size, size) bool: texels a face triangle covers (the paper's W_T); the rest is never drawn."""
    model = model or load_face_model()
    renderer = texture_renderer(np.ones((4, 4), np.float32), model)
    try:
        renderer.set_vertices(model.to_topology(model.neutral))
        return renderer.bake_uv(size, FRONTAL_VIEW, LIGHT_DIR, light=(0.0, 1.0, 0.0, 1.0)) > 0.5
    finally:
        renderer.release()


def load_albedo(subject_dir: str | os.PathLike) -> np.ndarray:
    """A subject's UV albedo (``albedo.png``, 8 or 16 bit gray) as float32 in [0, 1]."""
    path = Path(subject_dir) / "albedo.png"
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.exists() else None
    if img is None or img.ndim != 2:
        raise AvatarError(f"{path}: missing or not a single-channel image; a subject needs its UV albedo "
                          "to build an avatar (written by `mia synth`)")
    return img.astype(np.float32) / float(np.iinfo(img.dtype).max)


def view_vectors(yaw_deg: np.ndarray, pitch_deg: np.ndarray) -> np.ndarray:
    """Unit view vectors (N, 3) for yaw (about y) and pitch (about x) away from frontal."""
    yaw, pitch = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    v = np.stack([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)], -1)
    return v.astype(np.float32)


# --------------------------------------------------------------------------- the network

@dataclass
class AvatarConfig:
    """Sizes of one avatar autoencoder; saved in the avatar file so it can be rebuilt."""

    latent_dim: int = 256
    texture_size: int = 128
    geometry: bool = True       # also encode/decode geometry offsets from the neutral
    geometry_rank: int = 24     # PCA components of the low-rank geometry head (24 leave < 0.01 mm)
    geometry_hidden: int = 128
    width: int = 16             # conv channels at full resolution, doubled per level ...
    max_width: int = 48         # ... up to this

    def __post_init__(self) -> None:
        s = self.texture_size
        if s < 8 or s & (s - 1):
            raise AvatarError(f"texture_size must be a power of two >= 8, got {s}")
        if self.latent_dim < 1 or self.geometry_rank < 1:
            raise AvatarError(f"latent_dim and geometry_rank must be positive, got {self.latent_dim}, "
                              f"{self.geometry_rank}")

    @property
    def channels(self) -> list[int]:
        """Channels after each stride-2 level, from size/2 down to 4x4."""
        return [min(self.width * 2 ** k, self.max_width) for k in range(int(math.log2(self.texture_size)) - 2)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AvatarConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise AvatarError(f"avatar config has unknown fields {unknown}; known: {sorted(names)}")
        return cls(**d)


def round_to_storage(module: nn.Module) -> None:
    """Round every float weight and buffer to fp16 precision in place (what the avatar file keeps)."""
    with torch.no_grad():
        for t in module.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


class AvatarAutoencoder(nn.Module):
    """E_i(geometry offsets in cm, frontal texture) -> z and D_i(z, v) -> (texture, geometry in mm).

    The texture path predicts a residual over the subject's mean texture, and the geometry path
    coefficients of a fixed PCA basis of the subject's offsets (the low-rank linear head), so a
    few hundred CPU steps suffice; the random MLP/conv weights are what make z identity-specific.
    """

    def __init__(self, cfg: AvatarConfig, vertex_count: int):
        super().__init__()
        self.cfg, self.vertex_count = cfg, vertex_count
        s, ch, r, h = cfg.texture_size, cfg.channels, cfg.geometry_rank, cfg.geometry_hidden
        self.register_buffer("texture_mean", torch.zeros(s, s))
        enc, c_in = [], 1
        for c in ch:
            enc += [nn.Conv2d(c_in, c, 4, 2, 1), _act()]
            c_in = c
        self.texture_encoder = nn.Sequential(*enc, nn.Flatten())
        dec = []
        for c in [*ch[::-1][1:], 1]:
            dec += [nn.ConvTranspose2d(c_in, c, 4, 2, 1), _act()]
            c_in = c
        self.texture_decoder = nn.Sequential(*dec[:-1])
        outputs = [dec[-2]]
        self.texture_head = nn.Sequential(nn.Linear(cfg.latent_dim + 3, ch[-1] * 16), _act())
        geo_features = 0
        if cfg.geometry:
            n = vertex_count * 3
            self.register_buffer("geometry_mean", torch.zeros(n))
            self.register_buffer("geometry_basis", torch.zeros(r, n))
            self.register_buffer("geometry_scale", torch.ones(r))
            self.geometry_encoder = nn.Sequential(nn.Linear(r, h), _act())
            outputs.append(nn.Linear(h, r))
            self.geometry_decoder = nn.Sequential(nn.Linear(cfg.latent_dim, h), _act(), outputs[-1])
            geo_features = h
        self.to_code = nn.Linear(ch[-1] * 16 + geo_features, cfg.latent_dim)
        for layer in outputs:  # start at the mean texture and mean geometry, then refine
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @torch.no_grad()
    def fit_statistics(self, offsets_cm: Tensor, textures: Tensor) -> None:
        """Mean texture and the geometry PCA from training data (N, V*3) cm and (N, S, S).

        Components with (almost) no variance are dropped: dividing by their tiny spread would turn
        rounding noise into huge encoder inputs. Everything is rounded to fp16, the precision the
        avatar file stores, so training sees exactly what inference will."""
        self.texture_mean.copy_(textures.mean(0))
        if self.cfg.geometry:
            mean = offsets_cm.mean(0)
            _, sv, vh = torch.linalg.svd(offsets_cm - mean, full_matrices=False)
            std = sv / math.sqrt(max(len(offsets_cm) - 1, 1))
            r = min(self.cfg.geometry_rank, int((std > MIN_RELATIVE_SPREAD * std[0]).sum()))
            self.geometry_mean.copy_(mean)
            self.geometry_basis.zero_()
            self.geometry_basis[:r] = vh[:r]
            self.geometry_scale.fill_(1.0)
            self.geometry_scale[:r] = std[:r]
        round_to_storage(self)

    @torch.no_grad()
    def normalise_codes(self, codes: Tensor) -> None:
        """Rescale the latent so these (training) codes have unit RMS, leaving D(E(x)) unchanged.

        MIA's code loss (eq. 5) is balanced for O(1) codes; the scale is exact to move because
        E ends and D starts with a linear layer."""
        scale = codes.pow(2).mean().sqrt().clamp_min(1e-8)
        self.to_code.weight /= scale
        self.to_code.bias /= scale
        self.texture_head[0].weight[:, :self.cfg.latent_dim] *= scale
        if self.cfg.geometry:
            self.geometry_decoder[0].weight *= scale

    def encode(self, offsets_cm: Tensor | None, texture: Tensor) -> Tensor:
        """E_i: offsets (N, V*3) cm from the neutral and frontal textures (N, S, S) -> z (N, latent)."""
        feats = [self.texture_encoder((texture - self.texture_mean).unsqueeze(1))]
        if self.cfg.geometry:
            if offsets_cm is None:
                raise AvatarError("this avatar encodes geometry too; pass the frame's mesh")
            coeffs = (offsets_cm - self.geometry_mean) @ self.geometry_basis.T / self.geometry_scale
            feats.append(self.geometry_encoder(coeffs))
        return self.to_code(torch.cat(feats, 1))

    def decode_texture(self, z: Tensor, view: Tensor) -> Tensor:
        """D_i texture: z (N, latent), unit view vectors (N, 3) -> (N, S, S), not clipped."""
        x = self.texture_head(torch.cat([z, view], 1)).unflatten(1, (-1, 4, 4))  # batch stays symbolic in ONNX
        return self.texture_decoder(x).squeeze(1) + self.texture_mean

    def decode_geometry(self, z: Tensor) -> Tensor:
        """D_i geometry: z (N, latent) -> offsets from the neutral (N, V, 3) in mm."""
        if not self.cfg.geometry:
            raise AvatarError("this avatar was trained without geometry (AvatarConfig.geometry=False)")
        coeffs = self.geometry_decoder(z) * self.geometry_scale
        flat = coeffs @ self.geometry_basis + self.geometry_mean
        return flat.view(len(z), self.vertex_count, 3) * MM_PER_CM

    def forward(self, offsets_cm: Tensor | None, texture: Tensor, view: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        """Autoencode: (texture seen from ``view``, geometry offsets mm or None, z)."""
        z = self.encode(offsets_cm, texture)
        geometry = self.decode_geometry(z) if self.cfg.geometry else None
        return self.decode_texture(z, view), geometry, z


# --------------------------------------------------------------------------- the avatar file

def save_avatar(path: str | os.PathLike, model: AvatarAutoencoder, *, subject_id: str, neutral: np.ndarray,
                mask: np.ndarray, topology: dict, provenance: dict | None = None) -> Path:
    """Write an avatar atomically (temp file + rename); weights in fp16 keep it under ~3 MB."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "subject_id": subject_id, "config": model.cfg.to_dict(),
               "state_dict": state, "neutral": np.asarray(neutral, np.float32),
               "uv_mask": np.asarray(mask, bool), "topology": dict(topology), "provenance": provenance or {}}
    return atomic_torch_save(payload, path)


def _as_tensor(x: np.ndarray | Tensor) -> Tensor:
    return (x if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x))).float()


class AvatarDecoder:
    """A loaded avatar for inference: D_i(z, v) -> texture, and E_i for ground-truth codes.

    ``model`` is the frozen network (float32, eval) for callers that need gradients through D_i,
    as MIA's texture loss (eq. 5) does."""

    def __init__(self, model: AvatarAutoencoder, *, subject_id: str, neutral: np.ndarray, mask: np.ndarray,
                 topology: dict, provenance: dict, path: Path | None = None):
        self.model = model.float().eval().requires_grad_(False)
        self.subject_id, self.neutral, self.uv_mask = subject_id, neutral, mask
        self.topology, self.provenance, self.path = topology, provenance, path

    @property
    def config(self) -> AvatarConfig:
        return self.model.cfg

    @property
    def texture_size(self) -> int:
        return self.config.texture_size

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def subject_dir(self) -> Path | None:
        """The subject folder of an avatar stored as ``<subject>/avatar/avatar.pt``."""
        return None if self.path is None else self.path.parent.parent

    def _views(self, view: np.ndarray | Tensor, n: int) -> Tensor:
        v = _as_tensor(view)
        v = v.expand(n, 3) if v.dim() == 1 else v
        if v.shape != (n, 3):
            raise AvatarError(f"view must be (3,) or ({n}, 3), got {tuple(v.shape)}")
        return v / v.norm(dim=1, keepdim=True).clamp_min(1e-8)

    def decode_inputs(self, z: np.ndarray | Tensor, view: np.ndarray | Tensor = FRONTAL_VIEW) -> tuple[Tensor, Tensor]:
        """Checked codes (N, latent) and unit views (N, 3), from views (N, 3) or (3,): what
        ``masked_textures`` takes (shared with the onnxruntime decoder, engine/runtime/avatar_onnx.py)."""
        z = _as_tensor(z)
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise AvatarError(f"codes must be (N, {self.latent_dim}), got {tuple(z.shape)}")
        return z, self._views(view, len(z))

    def masked_textures(self, z: Tensor, views: Tensor) -> Tensor:
        """D_i's textures clamped to [0, 1] and zero off the face (the graph the onnx backend exports)."""
        return self.model.decode_texture(z, views).clamp(0, 1) * torch.from_numpy(self.uv_mask).to(z.dtype)

    @torch.no_grad()
    def decode(self, z: np.ndarray | Tensor, view: np.ndarray | Tensor = FRONTAL_VIEW) -> np.ndarray:
        """Codes (N, latent) and views (N, 3) or (3,) -> textures (N, S, S) float32 in [0, 1], 0 off the face."""
        return self.masked_textures(*self.decode_inputs(z, view)).numpy()

    @torch.no_grad()
    def decode_geometry(self, z: np.ndarray | Tensor) -> np.ndarray:
        """Codes (N, latent) -> meshes (N, V, 3) mm: the neutral plus decoded offsets."""
        return self.model.decode_geometry(_as_tensor(z)).numpy() + self.neutral

    @torch.no_grad()
    def encode(self, mesh: np.ndarray | Tensor | None, texture: np.ndarray | Tensor) -> np.ndarray:
        """Meshes (N, V, 3) mm and frontal textures (N, S, S) -> codes (N, latent) float32."""
        texture = _as_tensor(texture)
        if texture.dim() != 3 or texture.shape[1:] != (self.texture_size, self.texture_size):
            raise AvatarError(f"textures must be (N, {self.texture_size}, {self.texture_size}), "
                              f"got {tuple(texture.shape)}")
        offsets = None
        if mesh is not None and self.config.geometry:
            mesh = _as_tensor(mesh)
            if mesh.shape != (len(texture), *self.neutral.shape):
                raise AvatarError(f"meshes must be ({len(texture)}, {self.neutral.shape[0]}, 3) to match "
                                  f"the textures and this avatar's topology, got {tuple(mesh.shape)}")
            offsets = ((mesh - torch.from_numpy(self.neutral)) / MM_PER_CM).reshape(len(mesh), -1)
        return self.model.encode(offsets, texture).numpy()


def load_avatar(folder_or_file: str | os.PathLike) -> AvatarDecoder:
    """Load an avatar from its file, its ``avatar/`` folder or its subject folder.

    Every problem (missing, unreadable, another format, weights that do not fit) is an AvatarError
    naming the file."""
    p = Path(folder_or_file)
    path = next((c for c in (p, p / AVATAR_FILE, p / AVATAR_DIR / AVATAR_FILE) if c.is_file()), None)
    if path is None:
        raise AvatarError(f"{p}: no avatar found (expected {AVATAR_DIR}/{AVATAR_FILE} in a subject folder; "
                          "`mia avatars DATASET` trains them)")
    d = safe_torch_load(path, AvatarError, "avatar file")
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise AvatarError(f"{path}: not an avatar file (field 'format' should be {FORMAT!r})")
    if d.get("version") != VERSION:
        raise AvatarError(f"{path}: avatar version {d.get('version')!r} is not supported (expected {VERSION})")
    missing = [k for k in ("subject_id", "config", "state_dict", "neutral", "uv_mask") if k not in d]
    if missing:
        raise AvatarError(f"{path}: missing fields {missing}")
    try:
        cfg = AvatarConfig.from_dict(dict(d["config"]))
    except (TypeError, ValueError) as err:
        raise AvatarError(f"{path}: invalid field 'config' ({err})") from err
    neutral = np.asarray(d["neutral"], np.float32)
    mask = np.asarray(d["uv_mask"], bool)
    if neutral.ndim != 2 or neutral.shape[1] != 3 or mask.shape != (cfg.texture_size,) * 2:
        raise AvatarError(f"{path}: 'neutral' {neutral.shape} or 'uv_mask' {mask.shape} do not fit the config "
                          f"(expected (V, 3) and ({cfg.texture_size}, {cfg.texture_size}))")
    if not isinstance(d["state_dict"], dict) or not all(isinstance(v, Tensor) for v in d["state_dict"].values()):
        raise AvatarError(f"{path}: field 'state_dict' must map parameter names to tensors")
    check_finite(path, AvatarError, {"neutral": neutral, **{f"state_dict.{k}": v for k, v in d["state_dict"].items()}})
    model = AvatarAutoencoder(cfg, neutral.shape[0])
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in d["state_dict"].items()})
    except RuntimeError as err:
        raise AvatarError(f"{path}: weights do not fit the network its config describes ({err})") from err
    return AvatarDecoder(model, subject_id=str(d["subject_id"]), neutral=neutral, mask=mask,
                         topology=d.get("topology", {}), provenance=d.get("provenance", {}), path=path)
