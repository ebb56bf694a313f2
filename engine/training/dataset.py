"""HMC training data: capture folders -> in-memory samples for MIA training and adaptation.

Frames are decoded once and kept as uint8 (N, 3, S, S) at the model's image size (decoding FFV1 per
sample would cost more than the tiny networks' forward pass); meshes and visibility stay
memory-mapped, since at ~100 KB a frame they are what would otherwise fill the memory. Each
sample carries what the losses of eqs. 2 and 5 need: the ground-truth mesh, the shape weights W_S,
the subject's neutral mesh S_N, and the avatar code z when the capture has one.

W_S: a vertex seen by any of the three cameras in that frame weighs 1, an unseen one
UNSEEN_WEIGHT = 0.1. The paper masks to "visible areas"; a small weight instead of 0 keeps the
unseen parts of the face (forehead, cheeks behind the headset) anchored to plausible shapes,
which matters when the shape is driven for untrained subjects.

Samples are addressed by *keys*, ``epoch * len(dataset) + index``: the key picks the frame and
seeds that sample's random draws (3D augmentation, texture view), so a sample is a pure function
of (seed, key) whichever process or DataLoader worker builds it. That is what makes resumed and
distributed runs reproduce an uninterrupted single-process run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from engine.io.capture_schema import CODE_DIM, MIRRORED_CAMERAS, CaptureMeta, read_meta
from engine.io.capture_reader import decode_in_threads, list_captures, open_capture
from engine.errors import CaptureError, ConfigError, MeshError
from engine.io.layout import neutral_path
from engine.io.mesh import load_neutral
from engine.facemodel import mirror_meshes
from engine.training.jitter import jitter_images
from engine.camera import PinholeCamera, camera_from_calib

SEEN_WEIGHT = 1.0
UNSEEN_WEIGHT = 0.1
FRONTAL_VIEW = (0.0, 0.0, 1.0)  # head space: the face looks down +z
VIEW_CONE_DEG = 30.0  # texture views for the D_i loss are drawn within this cone around frontal
SPLITS = ("all", "train", "val")
MIRROR_STREAM = 7  # the third seed word of the mirror draw: its own stream, so it moves no other draw


def split_frames(frame_count: int, val_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) frame indices of one capture: the last `val_fraction` of it is held out.

    A contiguous tail rather than random frames, because neighbouring frames are near duplicates
    and a random split would put the validation frames' twins in the training set.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(frame_count * val_fraction))
    cut = frame_count - n_val
    return np.arange(cut), np.arange(cut, frame_count)


def select_frames(frame_count: int, split: str, val_fraction: float) -> np.ndarray:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "all":
        return np.arange(frame_count)
    train, val = split_frames(frame_count, val_fraction)
    return train if split == "train" else val


def find_captures(source: str | os.PathLike | Sequence[str | os.PathLike],
                  subjects: Sequence[str] | None = None,
                  captures: Sequence[str] | None = None) -> list[Path]:
    """Capture folders from a dataset root (searched recursively) or an explicit list, filtered.

    `subjects` keeps captures whose capture.json subject_id is listed, `captures` those whose
    folder name is listed; an empty result is an error that says what was looked for.
    """
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if not root.is_dir():
            raise CaptureError(f"{root}: no such dataset folder")
        paths = [root] if (root / "capture.json").is_file() else list_captures(root)
        where = str(root)
    else:
        paths = [Path(p) for p in source]
        where = f"the {len(paths)} given capture folders"
    if not paths:
        raise CaptureError(f"{where}: no capture folders found (expected folders with capture.json)")
    if captures is not None:
        wanted = set(captures)
        missing = sorted(wanted - {p.name for p in paths})
        if missing:
            raise CaptureError(f"{where}: no captures named {missing}; found "
                               f"{sorted(p.name for p in paths)}")
        paths = [p for p in paths if p.name in wanted]
    if subjects is not None:
        wanted = set(subjects)
        by_subject = {p: read_meta(p).subject_id for p in paths}
        missing = sorted(wanted - set(by_subject.values()))
        if missing:
            raise CaptureError(f"{where}: no captures of subjects {missing}; found subjects "
                               f"{sorted(set(by_subject.values()))}")
        paths = [p for p in paths if by_subject[p] in wanted]
    return paths


def probe_topology(captures: Sequence[str | os.PathLike]) -> dict:
    """{"name", "vertex_count", "hash"} of the first capture, cheaply (capture.json or the header
    of meshes.npy), so the face topology can be picked before any frame is decoded."""
    path = Path(captures[0])
    ref = read_meta(path).topology
    if ref is not None:
        return ref.to_dict()
    meshes = path / "meshes.npy"
    if not meshes.is_file():
        raise CaptureError(f"{meshes}: missing; training needs the ground-truth meshes")
    return {"name": "unknown", "vertex_count": int(np.load(meshes, mmap_mode="r").shape[1]),
            "hash": ""}


def face_topology(vertex_count: int, topology: dict) -> np.ndarray | None:
    """Triangles of the face model's topology when the data uses it (for W_S checks, re-rendering)."""
    from engine.facemodel import load_face_model
    fm = load_face_model()
    return fm.topology.faces if fm.uses_topology({**topology, "vertex_count": vertex_count}) else None


def frame_cameras(meta: CaptureMeta, head_pose: np.ndarray | None, size: int) -> list[PinholeCamera]:
    """The three cameras that saw one frame, for `size` x `size` images: calibration o head pose."""
    return [camera_from_calib(c, head_pose, (size, size)) for c in meta.cameras]


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, 3, H, W) uint8 -> (T, 3, size, size); area averaging when shrinking (no aliasing)."""
    if frames.shape[2:] == (size, size):
        return frames
    shrink = size < max(frames.shape[2:])
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    out = np.empty((*frames.shape[:2], size, size), np.uint8)
    for t in range(frames.shape[0]):
        for c in range(3):
            out[t, c] = cv2.resize(frames[t, c], (size, size), interpolation=interp)
    return out


def unit_view(rng: np.random.Generator, cone_deg: float = VIEW_CONE_DEG) -> np.ndarray:
    """A random unit view vector within `cone_deg` of frontal (for the texture loss of eq. 5)."""
    theta = np.deg2rad(cone_deg) * np.sqrt(rng.random())
    phi = 2 * np.pi * rng.random()
    return np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)],
                    np.float32)


@dataclass
class CaptureData:
    """One capture's selected frames in memory (frames) or memory-mapped (meshes, visibility)."""

    path: Path
    subject: str
    meta: CaptureMeta
    frame_index: np.ndarray  # (N,) indices into the capture of the selected frames
    frames: np.ndarray  # (N, 3, S, S) uint8
    meshes: np.ndarray  # (T, V, 3) float32 mm, memory-mapped, whole capture
    visibility: np.ndarray | None  # (T, 3, V) uint8
    codes: np.ndarray | None  # (T, 256) float32
    head_pose: np.ndarray | None  # (T, 4, 4)


def load_capture(path: Path, size: int, split: str, val_fraction: float) -> CaptureData:
    with open_capture(path) as cap:
        if cap.meshes is None:
            raise CaptureError(f"{path}: has no meshes.npy; training needs the ground-truth meshes")
        index = select_frames(len(cap), split, val_fraction)
        if index.size == 0:
            raise CaptureError(f"{path}: the '{split}' split (val_fraction {val_fraction}) of its "
                               f"{len(cap)} frames is empty")
        frames = np.stack([cap.frame(int(i)) for i in index])
        codes = None if cap.codes is None else np.asarray(cap.codes, np.float32)
        head_pose = None if cap.head_pose is None else np.asarray(cap.head_pose, np.float32)
        return CaptureData(path, cap.meta.subject_id, cap.meta, index, resize_frames(frames, size),
                           cap.meshes, cap.visibility, codes, head_pose)


def load_captures(paths: Sequence[Path], size: int, split: str, val_fraction: float,
                  jobs: int | None = None) -> list[CaptureData]:
    """`load_capture` of each path, in order, decoded on threads (`decode_in_threads`)."""
    return list(decode_in_threads(lambda p: load_capture(p, size, split, val_fraction), paths, jobs))


class HMCDataset(Dataset):
    """Samples of HMC captures for training: one dict of tensors per (capture, frame).

    Item keys: images (3, S, S) uint8, mesh (V, 3) and neutral (V, 3) float32 mm, shape_weights
    (V,) float32 (W_S), code (256,) float32 (NaN when has_code is False), has_code bool, view (3,)
    float32, frame and key int64, subject str.

    `neutrals` maps subject -> (V, 3) mm neutral mesh; subjects not in it are read from the dataset
    layout's subjects/<id>/neutral.obj. `topology` ({"name", "vertex_count", "hash"}, e.g. a
    checkpoint's) and `faces` are checked against every capture and neutral. `augment` (an
    engine.training.augment.AugmentConfig) re-renders each sample under a perturbed headset pose;
    it needs `faces` and belongs on the training split only. `jitter` (an
    engine.training.jitter.JitterConfig) then draws per-camera image shift, zoom and exposure.
    `mirror` is the probability that a sample is replaced by its mirror image: the eye cameras
    swapped and every image flipped left to right, the mesh, the neutral and W_S mirrored across
    the face's midplane with `mirror_index` (FaceModel.mirror_index). The headset rig is
    left-right symmetric, so that is the mirrored person making the mirrored expression in a
    mirrored headset: another plausible sample (engine/runtime/averaging.py reads it at test
    time). A mirrored sample has no avatar-code target (its code would describe the unmirrored
    expression), so it trains B and G only. The draw is its own stream of (seed, key): turning
    mirroring on changes no other draw.
    """

    def __init__(self, captures: Sequence[str | os.PathLike], image_size: int, *,
                 split: str = "all", val_fraction: float = 0.2,
                 neutrals: dict[str, np.ndarray] | None = None, topology: dict | None = None,
                 faces: np.ndarray | None = None, augment: Any = None, jitter: Any = None,
                 mirror: float = 0.0, mirror_index: np.ndarray | None = None, seed: int = 0) -> None:
        if not captures:
            raise CaptureError("HMCDataset: no capture folders given")
        self.image_size, self.seed, self.faces = image_size, seed, faces
        given = neutrals or {}
        for p in captures:  # fail before the slow decoding when a neutral mesh is missing
            subject = read_meta(p).subject_id
            if subject not in given and not neutral_path(Path(p), subject).is_file():
                raise MeshError(f"{neutral_path(Path(p), subject)}: missing; subject {subject!r} of "
                                f"capture {p} needs a neutral mesh (dataset layout "
                                "subjects/<id>/neutral.obj, or pass it in)")
        self.captures = load_captures([Path(p) for p in captures], image_size, split, val_fraction)
        self.topology = self._check_topology(topology)
        self.vertex_count = int(self.topology["vertex_count"])
        self.neutrals = self._load_neutrals(given)
        self._index = np.concatenate([np.stack([np.full(len(c.frame_index), k), np.arange(len(
            c.frame_index))], 1) for k, c in enumerate(self.captures)])
        self.augment = augment if augment is not None and getattr(augment, "enabled", True) else None
        self.jitter = jitter if jitter is not None and getattr(jitter, "enabled", True) else None
        if self.augment is not None and faces is None:
            raise ConfigError("HMCDataset: 3D augmentation needs the topology's faces to re-render")
        self.mirror = float(mirror)
        self.mirror_index = None if mirror_index is None else np.asarray(mirror_index, np.int64)
        if self.mirror > 0 and (self.mirror_index is None or self.mirror_index.shape != (self.vertex_count,)):
            raise ConfigError(f"HMCDataset: mirroring needs a mirror map of the {self.vertex_count} vertices of "
                              f"the topology, got {None if mirror_index is None else np.shape(mirror_index)}")
        self._augmenter: Any = None

    # ----- construction checks
    def _check_topology(self, topology: dict | None) -> dict:
        """The topology all captures share: `topology` if given, else the first capture's."""
        first = self.captures[0]
        if topology is None:
            ref0 = first.meta.topology
            topology = ref0.to_dict() if ref0 is not None else {
                "name": "unknown", "vertex_count": int(first.meshes.shape[1]), "hash": ""}
            source = f"topology {topology['name']!r} of {first.path}"
        else:
            source = f"topology {topology['name']!r}"
        expected = int(topology["vertex_count"])
        for c in self.captures:
            if c.meshes.shape[1] != expected:
                raise CaptureError(f"{c.path / 'meshes.npy'}: meshes have {c.meshes.shape[1]} "
                                   f"vertices but {source} has {expected}; all captures must share "
                                   "one topology")
            ref = c.meta.topology
            if ref is not None and topology.get("hash") and ref.hash != topology["hash"]:
                raise CaptureError(f"{c.path / 'capture.json'}: topology {ref.name!r} (hash "
                                   f"{ref.hash}) differs from {source} (hash {topology['hash']})")
        return dict(topology)

    def _load_neutrals(self, given: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        name = str(self.topology.get("name", "model"))
        for c in self.captures:
            if c.subject in out:
                continue
            if c.subject in given:
                mesh = np.asarray(given[c.subject], np.float32)
                if mesh.shape != (self.vertex_count, 3):
                    raise MeshError(f"neutral mesh given for subject {c.subject!r} has shape "
                                    f"{mesh.shape}, expected ({self.vertex_count}, 3) (topology {name})")
            else:
                mesh, _ = load_neutral(neutral_path(c.path, c.subject), self.vertex_count, self.faces,
                                       name)
            out[c.subject] = mesh
        return out

    # ----- what the trainer asks about
    def __len__(self) -> int:
        return len(self._index)

    @property
    def subjects(self) -> list[str]:
        return sorted(self.neutrals)

    def subject_codes(self, subject: str) -> np.ndarray | None:
        """All codes of `subject` in this dataset's frames (T, 256), or None if it has none."""
        parts = [c.codes[c.frame_index] for c in self.captures
                 if c.subject == subject and c.codes is not None]
        return np.concatenate(parts) if parts else None

    def cameras(self, i: int) -> list[PinholeCamera]:
        """The three cameras of sample i at the model image size (calibration o head pose)."""
        c, j = self._locate(i)
        pose = None if c.head_pose is None else c.head_pose[c.frame_index[j]]
        return frame_cameras(c.meta, pose, self.image_size)

    def _locate(self, i: int) -> tuple[CaptureData, int]:
        k, j = self._index[i]
        return self.captures[k], int(j)

    # ----- samples
    def __getitem__(self, key: int) -> dict[str, Any]:
        key = int(key)
        i = key % len(self)
        c, j = self._locate(i)
        t = int(c.frame_index[j])
        mesh = np.array(c.meshes[t], np.float32)  # a copy: the memory map is read-only
        weights = np.full(self.vertex_count, SEEN_WEIGHT, np.float32)
        if c.visibility is not None:
            weights[~np.asarray(c.visibility[t]).any(axis=0)] = UNSEEN_WEIGHT
        has_code = c.codes is not None
        code = c.codes[t] if has_code else np.full(CODE_DIM, np.nan, np.float32)
        rng = np.random.default_rng([self.seed, key])
        images = c.frames[j]
        if self.augment is not None:
            vis = None if c.visibility is None else np.asarray(c.visibility[t], bool)
            images = self._augment(images, mesh, self.cameras(i), rng, vis)
        if self.jitter is not None:
            images = jitter_images(images, rng, self.jitter)
        neutral = self.neutrals[c.subject]
        if self.mirror > 0 and np.random.default_rng([self.seed, key, MIRROR_STREAM]).random() < self.mirror:
            images, mesh, neutral, weights = self._mirrored(images, mesh, neutral, weights)
            has_code, code = False, np.full(CODE_DIM, np.nan, np.float32)
        return {
            "images": torch.from_numpy(np.ascontiguousarray(images)),
            "mesh": torch.from_numpy(mesh),
            "neutral": torch.from_numpy(neutral),
            "shape_weights": torch.from_numpy(weights),
            "code": torch.from_numpy(np.asarray(code, np.float32)),
            "has_code": torch.tensor(has_code),
            "view": torch.from_numpy(unit_view(rng)),
            "frame": torch.tensor(t),
            "key": torch.tensor(key),
            "subject": c.subject,
        }

    def _mirrored(self, images: np.ndarray, mesh: np.ndarray, neutral: np.ndarray,
                  weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The sample's mirror image (class docstring)."""
        index = self.mirror_index
        return (np.ascontiguousarray(images[list(MIRRORED_CAMERAS), :, ::-1]), mirror_meshes(mesh, index),
                mirror_meshes(neutral, index), weights[index])

    def _augment(self, images: np.ndarray, mesh: np.ndarray, cameras: list[PinholeCamera],
                 rng: np.random.Generator, visibility: np.ndarray | None = None) -> np.ndarray:
        """Built on first use, so each DataLoader worker owns its renderer (GL is not fork-safe).
        The capture's stored per-camera visibility saves the augmenter one depth render per camera."""
        if self._augmenter is None:
            from engine.training.augment import Augmenter
            self._augmenter = Augmenter(self.augment, self.faces, self.image_size)
        return self._augmenter(images, mesh, cameras, rng, visibility)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_augmenter"] = None
        return state
