"""The streaming MIA engine the GUI and the evaluation run: load a checkpoint once, drive per frame.

Per frame: crop and resize the three HMC views, one backbone call for the expression embedding e,
then G once over a batch of neutral meshes (the driven subject and every retargeting target, paper
eq. 1), then the codes z_j (eq. 4) of all of them that have an adaptation layer F_j in one batched
product (their F_j and P_j stacked), and for each with an avatar D_j its texture. Meshes are in mm;
textures are (S, S) float32 in [0, 1].

Two backends compute the same thing: torch (eager, CPU or GPU) and onnxruntime over an export made
by engine/runtime/export.py (cached by checkpoint hash). Every public method holds one lock, so a GUI thread
may change the subject or targets while a worker thread runs frames.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import cv2
import numpy as np
import torch

from engine.io.checkpoint import Checkpoint, load_checkpoint
from engine.errors import CheckpointError, MiaError
from engine.runtime.averaging import OFF, AveragingConfig, averaging_for

Roi = tuple[int, int, int, int]  # x, y, width, height in pixels of one camera image
FRONT_VIEW = np.array([0.0, 0.0, 1.0], np.float32)
BACKENDS = ("torch", "onnx")


@dataclass(frozen=True, eq=False)
class DrivenSubject:
    """Someone the engine drives: a neutral mesh (mm), whether F_j exists, and an avatar D_j."""

    name: str
    neutral: np.ndarray
    has_adapter: bool
    avatar: Any = None


class TargetResult(NamedTuple):
    mesh: np.ndarray  # (V, 3) mm
    texture: np.ndarray | None  # (S, S) in [0, 1], when the target has F_j and an avatar


@dataclass
class FrameResult:
    """One frame's output for the subject and each retargeting target."""

    mesh: np.ndarray  # (V, 3) mm
    code: np.ndarray | None  # (latent_dim,) when the subject has an adaptation layer
    texture: np.ndarray | None  # (S, S) when it also has an avatar
    targets: dict[str, TargetResult]
    embedding: np.ndarray  # (E,) the identity-free expression embedding e
    latency_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Prediction:
    """A batch of frames for one subject (what evaluation needs)."""

    embedding: np.ndarray  # (N, E)
    mesh: np.ndarray  # (N, V, 3) mm
    code: np.ndarray | None  # (N, latent_dim)


def camera_images(frames: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """The three views as 2D uint8 arrays; colour cameras (H, W, 3) are converted to gray."""
    if len(frames) != 3:
        raise ValueError(f"expected three HMC views (left eye, right eye, mouth), got {len(frames)}")
    views = []
    for c, img in enumerate(frames):
        img = np.asarray(img)
        if img.ndim == 3 and img.shape[2] in (3, 4):
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if img.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
        elif img.ndim == 3 and img.shape[2] == 1:
            img = img[..., 0]
        if img.ndim != 2 or img.size == 0:
            raise ValueError(f"camera {c}: expected a 2D gray image, got shape {img.shape}")
        views.append(img)
    return views


def crop_roi(image: np.ndarray, roi: Roi | None, camera: int = 0) -> np.ndarray:
    """The ROI (clipped to the image) of one view; None keeps the whole image."""
    if roi is None:
        return image
    x, y, w, h = (int(round(v)) for v in roi)
    height, width = image.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"camera {camera}: ROI (x={x}, y={y}, w={w}, h={h}) does not overlap its "
                         f"{width}x{height} image")
    return image[y0:y1, x0:x1]


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size: area averaging when shrinking (no aliasing), bilinear when growing."""
    if image.shape == (size, size):
        return image.astype(np.float32)
    shrink = image.shape[0] > size or image.shape[1] > size
    out = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out.astype(np.float32)


def decode_texture(avatar: Any, codes: np.ndarray, view: np.ndarray) -> np.ndarray:
    """D_j(z, view) as (N, S, S) float32 numpy, whatever tensor type the decoder returns."""
    with torch.inference_mode():
        out = avatar.decode(torch.from_numpy(np.ascontiguousarray(codes, np.float32)), torch.from_numpy(view))
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    return np.asarray(out, np.float32)


def load_avatar_any(avatar: Any) -> Any:
    """An avatar decoder from a folder/file (engine.avatar.load_avatar) or an object with decode()."""
    if avatar is None or hasattr(avatar, "decode"):
        return avatar
    try:
        from engine.avatar import load_avatar
    except ImportError as err:
        raise MiaError(f"{avatar}: avatar decoders need engine.avatar, which is not available ({err})") from err
    return load_avatar(avatar)


class _TorchRunner:
    def __init__(self, ckpt: Checkpoint, device: str, averaging: AveragingConfig = OFF) -> None:
        from engine.runtime.export import shape_graph
        self.device = torch.device(device)
        self.model = ckpt.build_model().to(self.device)
        self.graph = shape_graph(self.model, averaging, ckpt.topology).to(self.device)  # type: ignore[arg-type]
        self._stacks: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def shape(self, images: np.ndarray, neutral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            e, mesh = self.graph(torch.from_numpy(images).to(self.device), torch.from_numpy(neutral).to(self.device))
        return e.cpu().numpy(), mesh.cpu().numpy()

    def code(self, name: str, e: np.ndarray) -> np.ndarray:
        texture = self.model.texture
        with torch.inference_mode():
            x = torch.from_numpy(e).to(self.device)
            return texture.code_spaces[name].project(texture.adapters[name](x)).cpu().numpy()

    def codes(self, names: Sequence[str], e: np.ndarray) -> np.ndarray:
        """Eq. 4 for several subjects at once: (K, N, latent) = P_j F_j(e) + z̄_j for each name j,
        as two batched products over the stacked F_j and P_j instead of K module calls."""
        weights, bases, means = self._stacked(tuple(names))
        with torch.inference_mode():
            x = torch.relu(torch.from_numpy(e).to(self.device))  # F_j = Linear(ReLU(e)), no bias
            y = torch.einsum("ne,kpe->knp", x, weights)
            return (torch.einsum("knp,klp->knl", y, bases) + means[:, None]).cpu().numpy()

    def _stacked(self, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """F_j weights (K, pca, E), bases P_j (K, latent, pca) and means z̄_j (K, latent), cached per name list."""
        cache = self._stacks
        if names not in cache:
            texture = self.model.texture
            with torch.inference_mode():
                cache.clear()  # the driven rows change rarely: keep only the current stack
                cache[names] = (torch.stack([texture.adapters[n].linear.weight for n in names]),
                                torch.stack([texture.code_spaces[n].basis for n in names]),
                                torch.stack([texture.code_spaces[n].mean for n in names]))
        return cache[names]

    def mean_code(self, name: str) -> np.ndarray:
        return self.model.texture.code_spaces[name].mean.cpu().numpy()


class _PSRunner:
    """The person-specific baseline (Wei et al.) behind the same runner interface, for evaluation:
    its "embedding" is the PS hidden feature and its code head plays the role of F_i + P_i."""

    def __init__(self, ckpt: Checkpoint, device: str) -> None:
        self.device = torch.device(device)
        self.model = ckpt.build_model().to(self.device)
        mean = ckpt.extra.get("mean_code")
        self.mean = None if mean is None else np.asarray(mean, np.float32)

    def shape(self, images: np.ndarray, neutral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, n = torch.from_numpy(images).to(self.device), torch.from_numpy(neutral).to(self.device)
        if n.shape[0] == 1 and x.shape[0] > 1:
            n = n.expand(x.shape[0], -1, -1)
        elif x.shape[0] == 1 and n.shape[0] > 1:
            x = x.expand(n.shape[0], -1, -1, -1)
        with torch.inference_mode():
            out = self.model(x, n)
        return out.embedding.cpu().numpy(), out.mesh.cpu().numpy()

    def code(self, name: str, e: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model.code_head(torch.from_numpy(e).to(self.device)).cpu().numpy()

    def codes(self, names: Sequence[str], e: np.ndarray) -> np.ndarray:
        return np.stack([self.code(n, e) for n in names])

    def mean_code(self, name: str) -> np.ndarray:
        if self.mean is None:
            raise KeyError(f"this PS checkpoint stores no mean code for {name!r}")
        return self.mean


class _OnnxRunner:
    def __init__(self, ckpt: Checkpoint, folder: str | os.PathLike | None, threads: int,
                 averaging: AveragingConfig = OFF) -> None:
        from engine.errors import ExportError
        from engine.runtime.export import OnnxModel, default_export_dir, export_onnx, file_sha256
        sha = file_sha256(ckpt.path)
        explicit = folder is not None
        folder = Path(folder) if explicit else default_export_dir(ckpt.path, averaging)
        if not (folder / "manifest.json").exists():
            export_onnx(ckpt, folder, averaging=averaging)
        self.onnx = OnnxModel(folder, threads)
        stale = None
        if self.onnx.checkpoint_sha256 != sha:
            stale = f"made from another checkpoint than {ckpt.path} (hash differs)"
        elif self.onnx.averaging != averaging:
            stale = f"made for another averaging: its graph reads {self.onnx.averaging.describe()}, " \
                    f"{averaging.describe()} was asked for"
        if stale:
            if explicit:
                raise ExportError(f"{folder}: this ONNX export was {stale}; re-export with `mia export`")
            export_onnx(ckpt, folder, averaging=averaging)
            self.onnx = OnnxModel(folder, threads)

    def shape(self, images: np.ndarray, neutral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.onnx.shape(images, neutral)

    def code(self, name: str, e: np.ndarray) -> np.ndarray:
        return self.onnx.code(name, e)

    def codes(self, names: Sequence[str], e: np.ndarray) -> np.ndarray:
        return np.stack([self.code(n, e) for n in names])

    def mean_code(self, name: str) -> np.ndarray:
        """z̄_i: F_i = Linear(ReLU(e)) has no bias, so any e <= 0 gives F_i(e) = 0 and z = z̄_i."""
        return self.onnx.code(name, -np.ones((1, int(self.onnx.manifest["embedding_dim"])), np.float32))[0]


class InferenceEngine:
    """Load a MIA checkpoint once; drive a subject (and retargeting targets) frame by frame.

    ``threads`` sets torch's (process-wide) intra-op threads or onnxruntime's per session.
    ``onnx_dir``: an export folder for the onnx backend (default: a cache keyed by the checkpoint).
    ``averaging`` (warped copies per frame, 1 = none) and ``mirror`` (also read each frame's mirror
    image): test-time averaging (engine/runtime/averaging.py); None takes the checkpoint's
    recommendation for each.
    """

    def __init__(self, checkpoint_path: str | os.PathLike, backend: str = "torch", threads: int = 2,
                 device: str = "cpu", onnx_dir: str | os.PathLike | None = None,
                 averaging: int | None = None, mirror: bool | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.checkpoint = load_checkpoint(checkpoint_path)
        if self.checkpoint.kind not in ("mia", "ps") or (self.checkpoint.kind == "ps" and backend != "torch"):
            raise CheckpointError(f"{self.checkpoint.path}: is a {self.checkpoint.kind!r} checkpoint; the inference "
                                  "engine drives MIA checkpoints (and the PS baseline with the torch backend)")
        self.backend, self.threads = backend, threads
        self.device = device if backend == "torch" else "cpu"
        self.averaging = OFF if self.checkpoint.kind == "ps" else averaging_for(self.checkpoint.extra, averaging, mirror)
        torch.set_num_threads(threads)  # avatar decoders D_j that could not go to onnxruntime run in torch
        if self.checkpoint.kind == "ps":
            self._runner: _TorchRunner | _PSRunner | _OnnxRunner = _PSRunner(self.checkpoint, device)
        elif backend == "torch":
            self._runner = _TorchRunner(self.checkpoint, device, self.averaging)
        else:
            self._runner = _OnnxRunner(self.checkpoint, onnx_dir, threads, self.averaging)
        self.image_size = self.checkpoint.model_config.image_size
        self.view = FRONT_VIEW.copy()
        self._rois: list[Roi | None] = [None, None, None]
        self._subject: DrivenSubject | None = None
        self._targets: dict[str, DrivenSubject] = {}
        self._neutrals = np.zeros((0, 0, 3), np.float32)
        self._lock = threading.RLock()

    # ----- who is driven
    @property
    def identities(self) -> list[str]:
        """Subjects with an adaptation layer F_i (their codes and textures can be driven)."""
        return list(self.checkpoint.identities)

    @property
    def subjects(self) -> list[str]:
        """Every subject whose neutral mesh the checkpoint holds (drivable by name)."""
        return list(dict.fromkeys([*self.checkpoint.subjects, *self.checkpoint.identities]))

    @property
    def subject(self) -> DrivenSubject | None:
        return self._subject

    @property
    def targets(self) -> dict[str, DrivenSubject]:
        return dict(self._targets)

    def make_subject(self, name: str, neutral: np.ndarray | str | os.PathLike | None = None,
                     avatar: Any = None) -> DrivenSubject:
        """A checked DrivenSubject; the neutral defaults to the checkpoint's for a known subject.

        ``neutral`` is a (V, 3) mm array or a mesh file; ``avatar`` an avatar folder/file or an
        object with ``decode(z, view)``. A mesh of another topology raises CheckpointError.
        """
        if neutral is None:
            known = self.checkpoint.subjects.get(name) or self.checkpoint.identities.get(name)
            if known is None:
                raise CheckpointError(f"subject {name!r} is not in {self.checkpoint.path.name} (known: "
                                      f"{self.subjects}); give its neutral mesh")
            neutral = known["neutral"]
        elif isinstance(neutral, (str, os.PathLike)):
            from engine.io.mesh import guess_units, load_mesh
            verts, _ = load_mesh(neutral)
            neutral = verts * guess_units(verts)[1]
        neutral = np.asarray(neutral, np.float32)
        self.checkpoint.check_neutral(neutral, what=f"neutral mesh of {name!r}")
        if not np.isfinite(neutral).all():
            raise CheckpointError(f"neutral mesh of {name!r} contains NaN or infinite vertices")
        decoder = load_avatar_any(avatar)
        if self.backend == "onnx":
            from engine.runtime.avatar_onnx import onnx_avatar
            decoder = onnx_avatar(decoder, self.threads)
        return DrivenSubject(name, neutral, name in self.checkpoint.identities, decoder)

    def set_subject(self, name: str, neutral: np.ndarray | str | os.PathLike | None = None,
                    avatar_dir: Any = None) -> DrivenSubject:
        """The subject whose HMC images come in (its mesh, code and texture are the main output)."""
        subject = self.make_subject(name, neutral, avatar_dir)
        with self._lock:
            self._subject = subject
            self._restack()
        return subject

    def add_target(self, name: str, neutral: np.ndarray | str | os.PathLike | None = None,
                   avatar_dir: Any = None) -> DrivenSubject:
        """Also drive ``name`` from the same embedding (cross-identity retargeting); replaces a namesake."""
        target = self.make_subject(name, neutral, avatar_dir)
        with self._lock:
            self._targets[name] = target
            self._restack()
        return target

    def remove_target(self, name: str) -> None:
        with self._lock:
            if self._targets.pop(name, None) is not None:
                self._restack()

    def set_rois(self, rois: Sequence[Roi | None] | None) -> None:
        """Default crop per camera (x, y, w, h) in pixels, used when a call gives none."""
        with self._lock:
            self._rois = [None] * 3 if rois is None else self._check_rois(rois)

    def set_view(self, view: Sequence[float]) -> None:
        """Viewing direction the avatar decoders render textures for."""
        with self._lock:
            self.view = np.asarray(view, np.float32).reshape(3)

    def _restack(self) -> None:
        rows = ([self._subject] if self._subject else []) + list(self._targets.values())
        self._neutrals = np.stack([r.neutral for r in rows]) if rows else np.zeros((0, 0, 3), np.float32)

    @staticmethod
    def _check_rois(rois: Sequence[Roi | None]) -> list[Roi | None]:
        if len(rois) != 3:
            raise ValueError(f"expected one ROI (or None) per camera, 3 in all, got {len(rois)}")
        return list(rois)

    # ----- per frame
    def preprocess(self, frames: np.ndarray | Sequence[np.ndarray],
                   rois: Sequence[Roi | None] | None = None) -> np.ndarray:
        """Three views of any size -> model input (1, 3, S, S) float32 (0-255; B normalises itself)."""
        rois = self._rois if rois is None else self._check_rois(rois)
        views = camera_images(frames)
        s = self.image_size
        out = np.empty((1, 3, s, s), np.float32)
        for c, (image, roi) in enumerate(zip(views, rois)):
            out[0, c] = resize_square(crop_roi(image, roi, c), s)
        return out

    def __call__(self, frames: np.ndarray | Sequence[np.ndarray], rois: Sequence[Roi | None] | None = None,
                 target_textures: bool = True) -> FrameResult:
        """One frame for the subject and every target. ``target_textures=False`` skips the targets'
        codes and textures (their meshes are still made): a studio whose retarget grid is off screen
        still streams and exports the targets' faces, but nobody sees their textures."""
        with self._lock:
            if self._subject is None:
                raise RuntimeError("InferenceEngine: no subject set; call set_subject(name, neutral) first")
            rows = [self._subject, *self._targets.values()]
            t0 = time.perf_counter()
            x = self.preprocess(frames, rois)
            t1 = time.perf_counter()
            e, meshes = self._runner.shape(x, self._neutrals)
            t2 = time.perf_counter()
            looked = rows if target_textures else rows[:1]
            adapted = [r.name for r in looked if r.has_adapter]
            codes: dict[str, np.ndarray] = dict(zip(adapted, self._runner.codes(adapted, e))) if adapted else {}
            textures = [decode_texture(r.avatar, codes[r.name], self.view)[0]
                        if r.name in codes and r.avatar is not None else None for r in looked]
            textures += [None] * (len(rows) - len(looked))
            t3 = time.perf_counter()
        subject = rows[0]
        return FrameResult(
            mesh=meshes[0], code=codes[subject.name][0] if subject.has_adapter else None, texture=textures[0],
            targets={r.name: TargetResult(meshes[k], textures[k]) for k, r in enumerate(rows[1:], 1)},
            embedding=e[0],
            latency_ms={"preprocess": (t1 - t0) * 1e3, "backbone+shape": (t2 - t1) * 1e3,
                        "texture": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3})

    def predict(self, frames: np.ndarray | Sequence[np.ndarray], subject: DrivenSubject | None = None,
                rois: Sequence[Roi | None] | None = None) -> Prediction:
        """A batch of frames (N, 3, H, W) for one subject (default: the current one), no targets."""
        with self._lock:
            subject = subject or self._subject
            if subject is None:
                raise RuntimeError("InferenceEngine.predict: no subject given and none set")
            if len(frames) == 0:
                raise ValueError("InferenceEngine.predict: no frames")
            x = np.concatenate([self.preprocess(f, rois) for f in frames])
            e, mesh = self._runner.shape(x, subject.neutral[None])
            code = self._runner.code(subject.name, e) if subject.has_adapter else None
        return Prediction(e, mesh, code)

    def decode(self, subject: DrivenSubject, codes: np.ndarray) -> np.ndarray:
        """Textures (N, S, S) of ``subject``'s avatar for codes (N, latent_dim), at the current view."""
        if subject.avatar is None:
            raise ValueError(f"subject {subject.name!r} has no avatar decoder")
        return decode_texture(subject.avatar, codes, self.view)

    def mean_code(self, name: str) -> np.ndarray:
        """Subject ``name``'s mean avatar code z̄_i (what the texture baseline always answers)."""
        if name not in self.checkpoint.identities:
            raise KeyError(f"{name!r} has no adaptation layer; known: {self.identities}")
        return self._runner.mean_code(name)

    def info(self) -> dict:
        """What the status bar and `mia info` show about the loaded model."""
        ckpt = self.checkpoint
        model = self._runner.model if isinstance(self._runner, _TorchRunner) else ckpt.build_model()
        return {"model": ckpt.path.name, "path": str(ckpt.path), "kind": ckpt.kind, "backend": self.backend,
                "device": str(self.device), "threads": self.threads, "image_size": self.image_size,
                "parameters": (model.parameter_count() if hasattr(model, "parameter_count")
                               else {"total": sum(p.numel() for p in model.parameters())}), "config": ckpt.model_config.to_dict(),
                "identities": self.identities, "subjects": self.subjects, "topology": dict(ckpt.topology),
                "averaging": self.averaging.copies, "mirror": self.averaging.mirror}
