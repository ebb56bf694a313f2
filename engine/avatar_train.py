"""Training the person-specific avatars and writing each capture's ground-truth codes.

The paper starts from pre-trained codec avatars; the synthetic world has none, so each identity's
autoencoder is trained here on that identity's own frames only (geometry plus textures baked once
per frame from the frontal view and from random views within +-25 degrees), from its own random
initialisation. Its encoder then gives every frame of the identity's captures a code z, saved as
``codes.npy``: the target MIA's texture branch regresses (eq. 5).

CPU budget: training runs on one thread (see `torch_threads`); a step of batch 16 costs ~18 ms
at a 64 px texture and ~65 ms at 128 px, baking a few ms a texture. With ``DEFAULT_STEPS`` = 600,
three identities x 240 frames at 64 px took 84 s wall (54 s CPU) on the 2-core dev machine while
it was shared with other jobs (load ~5), ~25 s an identity; 300 steps already give a usable
avatar (texture error ~4x below the mean face's, geometry ~0.2 mm rms), 600 about 15x / 0.1 mm.
"""
from __future__ import annotations

import json
import os
import time
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from engine.avatar import (FRONTAL_VIEW, MM_PER_CM, AvatarAutoencoder, AvatarConfig, AvatarDecoder,
                           frame_texture, load_albedo, load_avatar, round_to_storage, save_avatar,
                           texture_renderer, uv_mask, view_vectors)
from engine.io.capture_schema import CODE_DIM, read_meta
from engine.io.capture_reader import list_captures, open_capture
from engine.errors import AvatarError, CaptureError
from engine.facemodel import load_face_model
from engine.io.mesh import load_mesh
from engine.io.atomic import atomic_open
from engine.io.layout import SUBJECTS_DIR, avatar_path, neutral_file

DEFAULT_STEPS = 600
Progress = Callable[[int, int, str], None]
Cancel = Callable[[], bool]


@dataclass
class AvatarTrainConfig:
    """How an avatar is trained (the network's sizes are in AvatarConfig)."""

    batch_size: int = 16
    lr: float = 2e-3
    final_lr_fraction: float = 0.05  # cosine decay to this fraction of lr
    views_per_frame: int = 3         # random views baked per frame, besides the frontal one
    max_view_deg: float = 25.0       # yaw and pitch of the random views
    texture_weight: float = 100.0    # on the masked texture MSE (intensities in [0, 1])
    geometry_weight: float = 1.0     # on the offsets MSE in cm^2
    eval_samples: int = 256          # (frame, view) pairs the before/after errors are measured on
    threads: int = 1                 # torch intra-op threads while training (see `torch_threads`)


@dataclass
class IdentityFrames:
    """One identity's training frames with their textures, baked once and kept in memory."""

    subject_id: str
    neutral: np.ndarray   # (V, 3) mm
    offsets_cm: torch.Tensor  # (N, V*3)
    frontal: torch.Tensor     # (N, S, S) encoder input
    views: torch.Tensor       # (N, 1 + K, 3): frontal, then K random views
    textures: torch.Tensor    # (N, 1 + K, S, S) decoder targets, float16 to halve the memory


def _check(cancel: Cancel | None) -> None:
    if cancel is not None and cancel():
        raise KeyboardInterrupt("cancelled")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with n torch intra-op threads, then restore the caller's setting.

    The avatar's ops are small: a second thread gains ~1.5x on an idle machine, but when the cores
    are shared (a GUI, another training run) OpenMP threads waiting on each other made steps
    ~15x slower in our measurements, so training defaults to one."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def read_subject(subject_dir: Path) -> tuple[str, np.ndarray]:
    """Subject id and neutral mesh, checked against the face model the textures are baked on."""
    info_file = subject_dir / "subject.json"
    try:
        subject_id = json.loads(info_file.read_text())["subject_id"] if info_file.exists() else subject_dir.name
    except (ValueError, KeyError) as err:
        raise AvatarError(f"{info_file}: not a valid subject file ({err})") from err
    neutral_mesh = neutral_file(subject_dir)
    if neutral_mesh is None:
        raise AvatarError(f"{subject_dir}: no neutral mesh (expected neutral.obj or another mesh format)")
    neutral, _ = load_mesh(neutral_mesh)
    v = load_face_model().topology.vertex_count
    if neutral.shape[0] != v:
        raise AvatarError(f"{subject_dir / 'neutral.obj'}: {neutral.shape[0]} vertices, but the face model's "
                          f"topology has {v}; regenerate the dataset with this version (`mia synth`)")
    return str(subject_id), neutral


def capture_meshes(path: Path, subject_id: str, vertex_count: int) -> np.ndarray:
    """A capture's ground-truth meshes (T, V, 3) mm, checked to be this subject's and topology's."""
    with open_capture(path) as cap:
        if cap.meta.subject_id != subject_id:
            raise AvatarError(f"{path}: capture of subject {cap.meta.subject_id!r}, not {subject_id!r}")
        if cap.meshes is None or cap.meshes.shape[1] != vertex_count:
            raise AvatarError(f"{path}: needs meshes.npy with {vertex_count} vertices per frame to build "
                              f"subject {subject_id!r}'s avatar")
        return np.array(cap.meshes, np.float32)


def bake_frames(subject_dir: Path, capture_paths: list[Path], size: int, train: AvatarTrainConfig,
                rng: np.random.Generator, cancel: Cancel | None = None) -> IdentityFrames:
    """Load an identity's meshes and bake its frontal and random-view textures once."""
    subject_id, neutral = read_subject(subject_dir)
    meshes = [capture_meshes(Path(p), subject_id, len(neutral)) for p in capture_paths]
    allm = np.concatenate(meshes)
    n, k = len(allm), 1 + train.views_per_frame
    angles = rng.uniform(-train.max_view_deg, train.max_view_deg, (n, k, 2))
    views = view_vectors(angles[..., 0], angles[..., 1])
    views[:, 0] = FRONTAL_VIEW
    textures = np.empty((n, k, size, size), np.float16)
    renderer = texture_renderer(load_albedo(subject_dir))
    try:
        for i, mesh in enumerate(allm):
            _check(cancel)
            for j in range(k):
                textures[i, j] = frame_texture(renderer, mesh, views[i, j], size)
    finally:
        renderer.release()
    offsets = torch.from_numpy((allm - neutral).reshape(n, -1) / MM_PER_CM)
    tex = torch.from_numpy(textures)
    return IdentityFrames(subject_id, neutral, offsets, tex[:, 0].float(), torch.from_numpy(views), tex)


def _losses(model: AvatarAutoencoder, data: IdentityFrames, idx: torch.Tensor, view_idx: torch.Tensor,
            mask: torch.Tensor, train: AvatarTrainConfig) -> tuple[torch.Tensor, dict[str, float]]:
    offsets = data.offsets_cm[idx]
    target = data.textures[idx, view_idx].float()
    tex, geo, _ = model(offsets, data.frontal[idx], data.views[idx, view_idx])
    l_tex = (((tex - target) * mask) ** 2).sum() / (mask.sum() * len(idx))
    loss = train.texture_weight * l_tex
    parts = {"texture_mse": l_tex.item()}
    if geo is not None:
        l_geo = ((geo / MM_PER_CM - offsets.view_as(geo)) ** 2).mean()
        loss = loss + train.geometry_weight * l_geo
        parts["geometry_mse_mm2"] = l_geo.item() * MM_PER_CM ** 2
    return loss, parts


def evaluate(model: AvatarAutoencoder, data: IdentityFrames, mask: torch.Tensor, train: AvatarTrainConfig,
             seed: int, chunk: int = 128) -> dict[str, float]:
    """Mean reconstruction errors on a fixed sample of (frame, view) pairs (no gradient, in chunks)."""
    n, k = data.textures.shape[:2]
    pairs = torch.randperm(n * k, generator=torch.Generator().manual_seed(seed))[:train.eval_samples]
    idx, view_idx = pairs // k, pairs % k
    sums: dict[str, float] = {}
    model.eval()
    with torch.no_grad():
        for s in range(0, len(pairs), chunk):
            _, parts = _losses(model, data, idx[s:s + chunk], view_idx[s:s + chunk], mask, train)
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value * len(idx[s:s + chunk])
    model.train()
    return {key: value / len(pairs) for key, value in sums.items()}


def fit(data: IdentityFrames, cfg: AvatarConfig, steps: int, train: AvatarTrainConfig, seed: int,
        progress: Progress | None = None, cancel: Cancel | None = None) -> tuple[AvatarAutoencoder, dict]:
    """Train one identity's autoencoder from a seed-specific random init; returns it and its errors."""
    with torch_threads(train.threads):
        return _fit(data, cfg, steps, train, seed, progress, cancel)


def _fit(data: IdentityFrames, cfg: AvatarConfig, steps: int, train: AvatarTrainConfig, seed: int,
         progress: Progress | None, cancel: Cancel | None) -> tuple[AvatarAutoencoder, dict]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = AvatarAutoencoder(cfg, len(data.neutral))
    model.fit_statistics(data.offsets_cm, data.frontal)
    mask = torch.from_numpy(uv_mask(cfg.texture_size)).float()
    before = evaluate(model, data, mask, train, seed)
    opt = torch.optim.Adam(model.parameters(), lr=train.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1), eta_min=train.lr * train.final_lr_fraction)
    n, k = data.textures.shape[:2]
    for step in range(steps):
        _check(cancel)
        idx = torch.randint(n, (train.batch_size,), generator=gen)
        view_idx = torch.randint(k, (train.batch_size,), generator=gen)
        loss, parts = _losses(model, data, idx, view_idx, mask, train)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None and (step % 10 == 9 or step == steps - 1):
            progress(step + 1, steps, f"{data.subject_id} texture mse {parts['texture_mse']:.2e}")
    model.eval()
    with torch.no_grad():
        model.normalise_codes(torch.cat([model.encode(data.offsets_cm[s:s + 256], data.frontal[s:s + 256])
                                         for s in range(0, n, 256)]))
    round_to_storage(model)  # the errors below are those of the saved (fp16) avatar
    return model.eval(), {"before": before, "after": evaluate(model, data, mask, train, seed)}


def identity_seed(seed: int, subject_id: str) -> int:
    """Each identity its own init (so latent axes differ), reproducible from the run's seed."""
    return int(np.random.SeedSequence([seed, zlib.crc32(subject_id.encode())]).generate_state(1)[0])


def train_avatar(subject_dir: str | os.PathLike, capture_paths: list[str | os.PathLike],
                 cfg: AvatarConfig | None = None, steps: int = DEFAULT_STEPS, progress: Progress | None = None,
                 cancel: Cancel | None = None, seed: int = 0, train: AvatarTrainConfig | None = None) -> Path:
    """Train identity i's avatar on its own captures and save ``<subject>/avatar/avatar.pt``."""
    cfg, train = cfg or AvatarConfig(), train or AvatarTrainConfig()
    subject_dir = Path(subject_dir)
    if not capture_paths:
        raise AvatarError(f"{subject_dir}: no captures to train the avatar on")
    t0 = time.time()
    data = bake_frames(subject_dir, [Path(p) for p in capture_paths], cfg.texture_size, train,
                       np.random.default_rng(seed), cancel)
    baked = time.time() - t0
    model, errors = fit(data, cfg, steps, train, seed, progress, cancel)
    provenance = {"generator": "mia-studio avatars v1", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "captures": [Path(p).name for p in capture_paths], "frames": len(data.offsets_cm),
                  "steps": steps, "seed": seed, "train_config": asdict(train), "errors": errors,
                  "seconds": {"bake": round(baked, 2), "total": round(time.time() - t0, 2)}}
    return save_avatar(avatar_path(subject_dir), model, subject_id=data.subject_id, neutral=data.neutral,
                       mask=uv_mask(cfg.texture_size), topology=load_face_model().topology.describe(),
                       provenance=provenance)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, array)


def write_codes(avatar: AvatarDecoder, capture_paths: list[str | os.PathLike], albedo: np.ndarray | None = None,
                batch: int = 64) -> list[Path]:
    """Encode every frame of each capture and write its ``codes.npy`` (T, 256) float32 atomically.

    The albedo defaults to the one beside the avatar (``<subject>/albedo.png``)."""
    if avatar.latent_dim != CODE_DIM:
        raise AvatarError(f"captures store {CODE_DIM}-d codes, but this avatar's latent is {avatar.latent_dim}-d")
    if albedo is None:
        if avatar.subject_dir is None:
            raise AvatarError("write_codes needs the subject's albedo: pass it, or load the avatar from its file")
        albedo = load_albedo(avatar.subject_dir)
    renderer = texture_renderer(albedo)
    written = []
    try:
        for path in map(Path, capture_paths):
            meshes = capture_meshes(path, avatar.subject_id, len(avatar.neutral))
            codes = np.empty((len(meshes), avatar.latent_dim), np.float32)
            for s in range(0, len(meshes), batch):
                chunk = meshes[s:s + batch]
                tex = np.stack([frame_texture(renderer, m, FRONTAL_VIEW, avatar.texture_size) for m in chunk])
                codes[s:s + batch] = avatar.encode(chunk, tex)
            _save_atomic(path / "codes.npy", codes)
            written.append(path / "codes.npy")
    finally:
        renderer.release()
    return written


def _has_codes(path: Path) -> bool:
    try:
        codes = np.load(path / "codes.npy", mmap_mode="r")
        return codes.shape == (read_meta(path).frame_count, CODE_DIM)
    except (OSError, ValueError, CaptureError):
        return False


def _existing(subject_dir: Path, cfg: AvatarConfig) -> AvatarDecoder | None:
    """The subject's saved avatar when it was made with this config, else None (retrain)."""
    try:
        avatar = load_avatar(avatar_path(subject_dir))
    except AvatarError:
        return None
    return avatar if avatar.config == cfg else None


def subject_captures(dataset_root: str | os.PathLike) -> dict[Path, list[Path]]:
    """Subject folders of a dataset and the captures of each (by the captures' subject id)."""
    root = Path(dataset_root)
    subjects = sorted(p for p in (root / SUBJECTS_DIR).glob("*") if neutral_file(p) is not None)
    if not subjects:
        raise AvatarError(f"{root}: no subjects/<id>/neutral.obj found; expected a dataset made by `mia synth`")
    by_id: dict[str, list[Path]] = {}
    for path in list_captures(root):
        by_id.setdefault(read_meta(path).subject_id, []).append(path)
    return {s: by_id.get(read_subject(s)[0], []) for s in subjects}


def _subject_job(args: tuple) -> tuple[str, str]:
    subject_dir, caps, cfg, steps, seed, train = args
    avatar = _existing(subject_dir, cfg)
    if avatar is None:
        avatar = load_avatar(train_avatar(subject_dir, caps, cfg, steps, None, None,
                                          identity_seed(seed, subject_dir.name), train))
        missing = caps
    else:
        missing = [c for c in caps if not _has_codes(c)]
    write_codes(avatar, missing)
    return avatar.subject_id, str(avatar.path)


def train_dataset_avatars(dataset_root: str | os.PathLike, cfg: AvatarConfig | None = None,
                          steps: int = DEFAULT_STEPS, progress: Progress | None = None, cancel: Cancel | None = None,
                          seed: int = 0, train: AvatarTrainConfig | None = None, jobs: int = 1,
                          subjects: list[str] | None = None) -> dict[str, Path]:
    """Train (or resume) every subject's avatar (or those of `subjects`) and write codes for all
    their captures.

    An identity is skipped when its avatar exists with the same config and all its captures have
    codes; an avatar that exists but lacks some codes only has them written. Subjects without
    captures are left out. Returns {subject id: avatar file}."""
    cfg = cfg or AvatarConfig()
    found = subject_captures(dataset_root)
    if subjects is not None:
        unknown = sorted(set(subjects) - {d.name for d in found})
        if unknown:
            raise AvatarError(f"{dataset_root}: no subjects named {unknown} (subjects/<id>/neutral.obj)")
        found = {d: caps for d, caps in found.items() if d.name in set(subjects)}
    plan = [(s, caps) for s, caps in found.items() if caps]
    total = steps * len(plan)
    out = {}
    if jobs > 1 and len(plan) > 1:  # identities are independent: one process each (own GL context)
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_subject_job, (d, caps, cfg, steps, seed, train)) for d, caps in plan]
            for n, fut in enumerate(as_completed(futures)):
                sid, path = fut.result()
                out[sid] = Path(path)
                if progress is not None:
                    progress((n + 1) * steps, total, f"{sid}: done")
                if cancel is not None and cancel():
                    raise KeyboardInterrupt("cancelled")
        return out
    for n, (subject_dir, caps) in enumerate(plan):
        name = subject_dir.name
        avatar = _existing(subject_dir, cfg)
        if avatar is None:
            if progress is not None:
                progress(n * steps, total, f"{name}: baking textures")
            sub = None if progress is None else (lambda k, _, msg, base=n * steps: progress(base + k, total, msg))
            avatar = load_avatar(train_avatar(subject_dir, caps, cfg, steps, sub, cancel,
                                              identity_seed(seed, name), train))
            missing = caps
        else:
            missing = [c for c in caps if not _has_codes(c)]
        if missing and progress is not None:
            progress(n * steps + steps, total, f"{name}: writing codes")
        write_codes(avatar, missing)
        out[avatar.subject_id] = avatar.path
        if progress is not None:
            progress((n + 1) * steps, total, f"{name}: done")
    return out
