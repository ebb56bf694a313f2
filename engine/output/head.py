"""ARKit-52 weights straight from B's identity-free expression code e: a small head fitted in closed form.

The bounded fit (engine.output.solver) reads weights off the driven mesh, so its error is G's mesh
error; on untrained identities the predicted eyelids barely follow blinks (docs/arkit.md). The
code e already knows the blink: the head is a ridge regression from e (and its element-wise square)
to the person's own blendshape weights of the synthetic ground truth, mapped to ARKit-52 through the
one table (engine.output.arkit). Its weights are identity-free like e, so the same weights serve the
driven subject and every retarget target.

The head lives in a checkpoint as the optional entry ``extra["arkit_head"]`` (plain arrays and
numbers, so a weights-only load reads it). It only fits the backbone it was fitted on: it records a
fingerprint of B's weights (rounded to fp16, so a half-precision copy of the same model matches),
and ``head_status`` refuses a head whose fingerprint differs, with the reason, so callers fall back
to the fit. ``fit_arkit_head`` refits it for a checkpoint in minutes (B over every frame of the
datasets, then one linear solve) and writes the checkpoint with the head atomically.
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np

from engine.errors import MiaError
from engine.output.arkit import ARKIT_COUNT, ARKIT_NAMES, GROUPS, TABLE
from engine.io.atomic import atomic_path

HEAD_KEY = "arkit_head"
FORMAT = "mia-arkit-head"
VERSION = 1
FEATURES = ("linear", "quadratic")
OUTPUTS = ("clip", "sigmoid")
METHODS = ("mlp", "ridge")
DEFAULT_RIDGES = (0.1, 1.0, 10.0, 100.0, 1000.0)
# The shapes the combined mode takes from the bounded fit, the head answering all others (measured on
# untrained identities, docs/arkit.md "Head, fit, combination"): jawOpen, which the fit follows best.
DEFAULT_FROM_FIT = frozenset(("jawOpen",))
Progress = Callable[[int, int, str], None]


class HeadError(MiaError, ValueError):
    """An ARKit head cannot be fitted, stored or used (bad data, checkpoint or entry)."""


def backbone_fingerprint(state_dict: dict) -> str:
    """A hash of B's weights (``backbone.*``), rounded to fp16 so a half-precision copy matches."""
    import torch
    h = hashlib.sha256()
    for name in sorted(k for k in state_dict if k.startswith("backbone.")):
        t = state_dict[name]
        if torch.is_floating_point(t):
            t = t.detach().cpu().half()
        h.update(name.encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def features(e: np.ndarray, kind: str) -> np.ndarray:
    """(N, E) codes -> (N, F) regression features: e, or [e, e²]."""
    e = np.asarray(e, np.float32)
    if kind == "linear":
        return e
    if kind == "quadratic":
        return np.concatenate([e, e * e], axis=1)
    raise HeadError(f"unknown ARKit head features {kind!r}; expected one of {FEATURES}")


@dataclass(frozen=True)
class ArkitHead:
    """ARKit-52 weights from codes e: standardised features x = (f(e) - mean) / scale through ``layers``
    (ReLU between them), then clipped to [0, 1] (``output="clip"``, the ridge head: one layer) or a
    sigmoid (``output="sigmoid"``, the MLP head)."""

    features: str
    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # (weight (in, out), bias (out,)); last out = 52
    output: str  # "clip" or "sigmoid"
    backbone: str  # fingerprint of the B it was fitted on
    info: dict = field(default_factory=dict)  # provenance: datasets, frames, ridge, validation MAE

    @property
    def embedding_dim(self) -> int:
        return len(self.mean) // (2 if self.features == "quadratic" else 1)

    def __call__(self, e: np.ndarray) -> np.ndarray:
        e = np.asarray(e, np.float32)
        single = e.ndim == 1
        x = (features(e[None] if single else e, self.features) - self.mean) / self.scale
        for k, (w, b) in enumerate(self.layers):
            x = x @ w + b
            if k < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        if self.output == "sigmoid":
            x = 0.5 * (1.0 + np.tanh(0.5 * x))  # the logistic function, without overflow warnings
        w = np.clip(x, 0.0, 1.0).astype(np.float32)
        return w[0] if single else w

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "features": self.features, "names": list(ARKIT_NAMES),
                "mean": self.mean.astype(np.float32), "scale": self.scale.astype(np.float32),
                "layers": [{"weight": w.astype(np.float32), "bias": b.astype(np.float32)} for w, b in self.layers],
                "output": self.output, "backbone": self.backbone, "info": dict(self.info)}

    @classmethod
    def from_dict(cls, d: object, where: str = "arkit_head") -> ArkitHead:
        """Checks every field; a HeadError names the field and what was expected."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise HeadError(f"{where}: not an ARKit head (field 'format' should be {FORMAT!r})")
        if d.get("version") != VERSION:
            raise HeadError(f"{where}: ARKit head version {d.get('version')!r} is not supported (expected {VERSION})")
        if list(d.get("names", [])) != list(ARKIT_NAMES):
            raise HeadError(f"{where}: field 'names' is not the 52 ARKit names in Live Link order")
        kind, output = d.get("features"), d.get("output")
        if kind not in FEATURES:
            raise HeadError(f"{where}: field 'features' is {kind!r}, expected one of {FEATURES}")
        if output not in OUTPUTS:
            raise HeadError(f"{where}: field 'output' is {output!r}, expected one of {OUTPUTS}")
        mean, scale = (np.asarray(d.get(k, np.zeros(0)), np.float32) for k in ("mean", "scale"))
        raw = d.get("layers")
        if not isinstance(raw, (list, tuple)) or not raw or not all(isinstance(x, dict) for x in raw):
            raise HeadError(f"{where}: field 'layers' must be a list of {{'weight', 'bias'}}")
        layers = tuple((np.asarray(x.get("weight", np.zeros(0)), np.float32),
                        np.asarray(x.get("bias", np.zeros(0)), np.float32)) for x in raw)
        width = len(mean)
        ok = width > 0 and scale.shape == (width,) and not (kind == "quadratic" and width % 2)
        for w, b in layers:
            ok = ok and w.ndim == 2 and w.shape[0] == width and b.shape == (w.shape[1],)
            width = w.shape[1] if w.ndim == 2 else -1
        if not ok or width != ARKIT_COUNT:
            raise HeadError(f"{where}: fields 'mean' {mean.shape}, 'scale' {scale.shape} and 'layers' "
                            f"{[(w.shape, b.shape) for w, b in layers]} do not chain from F features to "
                            f"{ARKIT_COUNT} weights")
        arrays = [mean, scale, *(a for layer in layers for a in layer)]
        if not all(np.isfinite(a).all() for a in arrays) or not (scale > 0).all():
            raise HeadError(f"{where}: fields 'mean', 'scale', 'layers' must be finite (scale > 0)")
        return cls(kind, mean, scale, layers, output, str(d.get("backbone", "")), dict(d.get("info", {})))


class HeadStatus(NamedTuple):
    """The checkpoint's usable head, or None and why not (shown by `mia info`, `mia stream`)."""

    head: ArkitHead | None
    reason: str


def head_status(checkpoint: object) -> HeadStatus:
    """The ARKit head of a loaded Checkpoint, checked against its backbone; never raises."""
    entry = getattr(checkpoint, "extra", {}).get(HEAD_KEY)
    if entry is None:
        return HeadStatus(None, "no ARKit head in this checkpoint (fit one with `mia arkit-head`); "
                                "weights come from the bounded fit of the mesh")
    try:
        head = ArkitHead.from_dict(entry)
    except HeadError as err:
        return HeadStatus(None, f"{err}; weights come from the bounded fit of the mesh")
    model_dim = getattr(getattr(checkpoint, "model_config", None), "embedding_dim", head.embedding_dim)
    if head.embedding_dim != model_dim:
        return HeadStatus(None, f"ARKit head expects e of size {head.embedding_dim}, the model's is {model_dim}; "
                                "weights come from the bounded fit of the mesh")
    if head.backbone != backbone_fingerprint(getattr(checkpoint, "state_dict", {})):
        return HeadStatus(None, "the ARKit head was fitted on another backbone than this checkpoint's (refit it "
                                "with `mia arkit-head`); weights come from the bounded fit of the mesh")
    method = "MLP" if head.output == "sigmoid" else f"ridge on {head.features} features"
    n = head.info.get("frames")
    return HeadStatus(head, f"ARKit head ({method}, fitted on {n} frames)" if n else f"ARKit head ({method})")


# --------------------------------------------------------------------------- fitting

def ridge_fit(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form ridge on standardised features: (mean, scale, weights (F + 1, K)); bias not penalised."""
    x = np.asarray(x, np.float64)
    mean = x.mean(0)
    scale = x.std(0)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale
    ym = y.mean(0)
    gram = z.T @ z + ridge * np.eye(z.shape[1])
    w = np.linalg.solve(gram, z.T @ (y - ym))
    return mean.astype(np.float32), scale.astype(np.float32), np.vstack([w, ym[None]]).astype(np.float32)


def fit_head(e: np.ndarray, y: np.ndarray, groups: np.ndarray, kind: str = "quadratic",
             ridges: Sequence[float] = DEFAULT_RIDGES, backbone: str = "", info: dict | None = None,
             folds: int = 4) -> ArkitHead:
    """A head from codes e (N, E) to ARKit weights y (N, 52); the ridge is chosen by cross-validation
    over ``groups`` (one label per frame: the identity), so it is picked for people it never saw."""
    e, y, groups = np.asarray(e, np.float32), np.asarray(y, np.float64), np.asarray(groups)
    if len(e) != len(y) or len(e) != len(groups) or y.ndim != 2 or y.shape[1] != ARKIT_COUNT:
        raise HeadError(f"fit_head: {len(e)} codes, {y.shape} weights and {len(groups)} labels do not match "
                        f"(expected N codes, (N, {ARKIT_COUNT}) weights, N labels)")
    if len(e) < 2:
        raise HeadError("fit_head: needs at least two frames with ground-truth weights")
    x = features(e, kind)
    unique = np.unique(groups)
    scores = {}
    if len(ridges) > 1 and len(unique) >= 2:
        fold_of = {g: k % min(folds, len(unique)) for k, g in enumerate(unique)}
        fold = np.array([fold_of[g] for g in groups])
        for lam in ridges:
            err = []
            for k in np.unique(fold):
                tr, te = fold != k, fold == k
                mean, scale, w = ridge_fit(x[tr], y[tr], lam)
                pred = np.clip(((x[te] - mean) / scale) @ w[:-1] + w[-1], 0, 1)
                err.append(np.abs(pred - y[te]).sum())
            scores[float(lam)] = float(np.sum(err) / y.size)
        best = min(scores, key=scores.get)
    else:
        best = float(ridges[0])
    mean, scale, w = ridge_fit(x, y, best)
    meta = {**(info or {}), "method": "ridge", "ridge": best, "cv_mae": scores, "frames": int(len(e)),
            "identities": int(len(unique))}
    return ArkitHead(kind, mean, scale, ((w[:-1], w[-1]),), "clip", backbone, meta)


def fit_mlp(e: np.ndarray, y: np.ndarray, *, hidden: int = 256, epochs: int = 20, loss: str = "bce",
            weight_decay: float = 1e-2, batch: int = 256, lr: float = 1e-3, seed: int = 0, backbone: str = "",
            info: dict | None = None, progress: Progress | None = None) -> ArkitHead:
    """A two-hidden-layer ReLU MLP with sigmoid outputs from standardised e (N, E) to ARKit weights
    y (N, 52), trained with AdamW (cosine schedule) on binary cross-entropy (``loss="bce"``) or squared
    error; deterministic for a seed. The ridge head is linear in e and shrinks rare full blinks to a
    few percent (docs/arkit.md); the MLP lets a blink be a region of e."""
    import torch
    e, y = np.asarray(e, np.float32), np.clip(np.asarray(y, np.float32), 0.0, 1.0)
    if len(e) != len(y) or y.ndim != 2 or y.shape[1] != ARKIT_COUNT or len(e) < 2:
        raise HeadError(f"fit_mlp: {len(e)} codes and {y.shape} weights do not match (expected N >= 2 codes "
                        f"and (N, {ARKIT_COUNT}) weights)")
    if loss not in ("bce", "l2"):
        raise HeadError(f"fit_mlp: loss must be 'bce' or 'l2', got {loss!r}")
    mean = e.mean(0)
    scale = e.std(0)
    scale[scale < 1e-6] = 1.0
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy((e - mean) / scale)
    t = torch.from_numpy(y)
    dims = (e.shape[1], hidden, hidden, ARKIT_COUNT)
    linears = [torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])]
    for lin in linears:  # seeded initialisation, independent of the global torch RNG
        bound = 1.0 / np.sqrt(lin.in_features)
        with torch.no_grad():
            lin.weight.uniform_(-bound, bound, generator=gen)
            lin.bias.uniform_(-bound, bound, generator=gen)
    net = torch.nn.Sequential(linears[0], torch.nn.ReLU(), linears[1], torch.nn.ReLU(), linears[2])
    opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    bce = torch.nn.BCEWithLogitsLoss()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            logits = net(x[idx])
            value = bce(logits, t[idx]) if loss == "bce" else ((torch.sigmoid(logits) - t[idx]) ** 2).mean()
            opt.zero_grad()
            value.backward()
            opt.step()
            total += value.item() * len(idx)
        sched.step()
        if progress:
            progress(epoch + 1, epochs, f"{loss} {total / len(x):.4f}")
    layers = tuple((lin.weight.detach().numpy().T.copy(), lin.bias.detach().numpy().copy()) for lin in linears)
    meta = {**(info or {}), "method": "mlp", "hidden": hidden, "epochs": epochs, "loss": loss,
            "weight_decay": weight_decay, "seed": seed, "frames": int(len(e))}
    return ArkitHead("linear", mean.astype(np.float32), scale.astype(np.float32), layers, "sigmoid", backbone, meta)


class Samples(NamedTuple):
    """Per-frame codes, targets and labels gathered from captures."""

    e: np.ndarray  # (N, E)
    y: np.ndarray  # (N, 52) ARKit weights
    groups: np.ndarray  # (N,) subject id of each frame (dataset-qualified)
    skipped: list[str]  # captures without usable ground truth, with why


def person_weights(capture: object, to_arkit: Callable[[np.ndarray], np.ndarray],
                   solver_fit: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray | None, str]:
    """ARKit weights of what the face did in a synthetic capture, and where they came from:
    blendshapes.npy (the person's own weights), else the bounded fit of meshes.npy when a fit is
    given (exact up to gaze on the face model), else None."""
    bs = getattr(capture, "blendshapes", None)
    if bs is not None:
        return to_arkit(np.asarray(bs, np.float32)), "blendshapes.npy"
    meshes = getattr(capture, "meshes", None)
    if meshes is not None and solver_fit is not None:
        return solver_fit(np.asarray(meshes, np.float32)), "fit of meshes.npy"
    return None, "no blendshapes.npy (nor meshes.npy to fit)"


def embed_frames(backbone: Callable, frames: np.ndarray, size: int, batch: int = 256) -> np.ndarray:
    """B over (T, 3, H, W) uint8 frames, resized to the model's size, in batches -> (T, E)."""
    import torch

    from engine.runtime.inference import resize_square
    out = []
    for start in range(0, len(frames), batch):
        chunk = frames[start:start + batch]
        if chunk.shape[-2:] != (size, size):
            chunk = np.stack([[resize_square(v, size) for v in f] for f in chunk])
        with torch.inference_mode():
            out.append(backbone(torch.from_numpy(np.ascontiguousarray(chunk, np.float32))).numpy())
    return np.concatenate(out).astype(np.float32)


def gather(checkpoint: object, captures: Sequence[Path], neutral_of: Callable[[Path, str], np.ndarray] | None = None,
           progress: Progress | None = None, cache: str | os.PathLike | None = None) -> Samples:
    """Codes e of every frame of ``captures`` under ``checkpoint``'s B, with the person's ARKit weights.

    ``cache``: an .npz that keeps the result per capture, keyed by the backbone fingerprint (a rerun
    on the same model skips B)."""
    from engine.io.capture_reader import decode_in_threads, open_capture
    from engine.io.capture_schema import read_meta
    from engine.output.solver import BlendshapeSolver
    model = checkpoint.build_model()  # type: ignore[attr-defined]
    size = checkpoint.model_config.image_size  # type: ignore[attr-defined]
    key = backbone_fingerprint(checkpoint.state_dict)  # type: ignore[attr-defined]
    store: dict[str, np.ndarray] = {}
    if cache is not None and Path(cache).exists():
        with np.load(cache) as z:
            if "backbone" in z.files and str(z["backbone"]) == key:
                store = {k: z[k] for k in z.files if k != "backbone"}
    solver: list[BlendshapeSolver] = []
    to_arkit = _to_arkit()

    def tag_of(path: Path) -> str:
        return f"{path.parent.parent.name}/{path.name}"

    def load(path: Path) -> tuple[np.ndarray | None, str, np.ndarray | None]:
        """(weights, why, frames) of one capture: the slow part (video decoding), run on threads."""
        with open_capture(path) as cap:
            def fit(meshes: np.ndarray) -> np.ndarray:
                if not solver:
                    solver.append(BlendshapeSolver())
                neutral = neutral_of(path, cap.meta.subject_id) if neutral_of else _dataset_neutral(path, cap)
                return solver[0].arkit(meshes, neutral)
            y, why = person_weights(cap, to_arkit, fit)
            return y, why, None if y is None else cap.load_all()

    paths = [Path(p) for p in captures]
    todo = [p for p in paths if f"e:{tag_of(p)}" not in store]  # cached: no need to open the videos
    e_all, y_all, g_all, skipped = [], [], [], []
    loaded = decode_in_threads(load, todo)
    for k, path in enumerate(paths):
        tag = tag_of(path)
        subject = f"{path.parent.parent.resolve()}:{read_meta(path).subject_id}"
        if f"e:{tag}" in store:
            e, y = store[f"e:{tag}"], store[f"y:{tag}"]
        else:
            y, why, frames = next(loaded)
            if y is None:
                skipped.append(f"{path}: {why}")
                e = None
            else:
                e = embed_frames(model.backbone, frames, size)
                store[f"e:{tag}"], store[f"y:{tag}"] = e, y
        if e is not None:
            e_all.append(e)
            y_all.append(np.asarray(y, np.float32))
            g_all.append(np.full(len(e), subject))
        if progress:
            progress(k + 1, len(paths), path.name)
    loaded.close()  # every capture is consumed: let its thread pool go now, not at garbage collection
    if cache is not None:
        with atomic_path(cache) as tmp:
            np.savez(tmp, backbone=np.array(key), **store)
    if not e_all:
        raise HeadError(f"none of the {len(captures)} captures has ground-truth weights (blendshapes.npy or "
                        f"meshes.npy): " + "; ".join(skipped[:3]))
    return Samples(np.concatenate(e_all), np.concatenate(y_all), np.concatenate(g_all), skipped)


def _to_arkit() -> Callable[[np.ndarray], np.ndarray]:
    from engine.facemodel import load_face_model
    from engine.output.arkit import IctToArkit
    return IctToArkit(load_face_model().expression_names)


def _dataset_neutral(path: Path, capture: object) -> np.ndarray:
    from engine.io.layout import neutral_path
    from engine.io.mesh import guess_units, load_mesh
    file = neutral_path(path, capture.meta.subject_id)  # type: ignore[attr-defined]
    if not file.exists():
        raise HeadError(f"{path}: has meshes.npy but no blendshapes.npy, and its subject's neutral {file} is missing")
    verts, _ = load_mesh(file)
    return (verts * guess_units(verts)[1]).astype(np.float32)


# --------------------------------------------------------------------------- the stage

def _print_progress(done: int, total: int, name: str) -> None:
    if done == total or done % 50 == 0:
        print(f"  B over captures: {done}/{total} ({name})", file=sys.stderr, flush=True)


def fit_arkit_head(checkpoint: str | os.PathLike, datasets: Iterable[str | os.PathLike], out: str | os.PathLike,
                   *, method: str = "mlp", epochs: int = 20, hidden: int = 256, seed: int = 0,
                   features_kind: str = "quadratic", ridges: Sequence[float] = DEFAULT_RIDGES,
                   progress: Progress | None = _print_progress, cache: str | os.PathLike | None = None,
                   keep_current: bool = False) -> ArkitHead:
    """Fit an ARKit head on ``checkpoint``'s B over every capture of ``datasets`` (synthetic, with
    blendshapes.npy or meshes.npy) and write the checkpoint with it to ``out`` (atomically; ``out`` may
    be ``checkpoint`` itself). ``method``: "mlp" (the shipped head, ``fit_mlp``) or "ridge"
    (``fit_head`` with ``features_kind`` and ``ridges``). Everything else in the file is kept as it
    was. Returns the head. ``keep_current``: when ``out`` already holds a head fitted on this
    checkpoint's backbone, return it and do nothing (a resumed recipe does not refit)."""
    from engine.io.checkpoint import load_checkpoint
    from engine.training.dataset import find_captures
    if method not in METHODS:
        raise HeadError(f"ARKit head method must be one of {METHODS}, got {method!r}")
    ckpt = load_checkpoint(checkpoint)
    if ckpt.kind != "mia":
        raise HeadError(f"{ckpt.path}: is a {ckpt.kind!r} checkpoint; an ARKit head needs a MIA backbone")
    if keep_current and Path(out).is_file():
        same_file = Path(out).resolve() == ckpt.path.resolve()
        current = ckpt if same_file else load_checkpoint(out)  # the recipe refits in place
        head = head_status(current).head
        if head is not None and head.backbone == backbone_fingerprint(ckpt.state_dict):
            return head
    datasets = [Path(d) for d in datasets]
    if not datasets:
        raise HeadError("fit_arkit_head: no datasets given (synthetic dataset folders with ground truth)")
    captures = [c for d in datasets for c in find_captures(d)]
    samples = gather(ckpt, captures, progress=progress, cache=cache)
    info = {"datasets": [str(d) for d in datasets], "captures": len(captures) - len(samples.skipped),
            "skipped": len(samples.skipped), "identities": int(len(np.unique(samples.groups)))}
    fingerprint = backbone_fingerprint(ckpt.state_dict)
    if method == "mlp":
        epoch_progress = None if progress is None else (lambda d, n, t: progress(d, n, f"MLP epoch, {t}"))
        head = fit_mlp(samples.e, samples.y, hidden=hidden, epochs=epochs, seed=seed, backbone=fingerprint,
                       info=info, progress=epoch_progress)
    else:
        head = fit_head(samples.e, samples.y, samples.groups, features_kind, ridges, backbone=fingerprint, info=info)
    store_arkit_head(ckpt.path, head, out)
    return head


def store_arkit_head(checkpoint: str | os.PathLike, head: ArkitHead | None, out: str | os.PathLike) -> Path:
    """Write ``checkpoint`` with ``head`` as its ``extra["arkit_head"]`` (None removes it) to ``out``,
    atomically; every other field is kept as it is in the file (fp16 weights stay fp16)."""
    from engine.io.checkpoint import store_extra
    try:
        return store_extra(checkpoint, HEAD_KEY, None if head is None else head.to_dict(), out)
    except OSError as err:
        raise HeadError(f"--out {out}: cannot write the checkpoint there ({err.strerror or err})") from None


# --------------------------------------------------------------------------- the weights a frame sends

MODES = ("auto", "head", "fit", "combined")


def combine(head_w: np.ndarray, fit_w: np.ndarray, from_fit: Iterable[str] = DEFAULT_FROM_FIT) -> np.ndarray:
    """ARKit weights from the head, but the shapes (ARKit names) or whole groups in ``from_fit`` from the fit."""
    names = set(from_fit)
    unknown = names - set(ARKIT_NAMES) - set(GROUPS)
    if unknown:
        raise HeadError(f"combine: {sorted(unknown)} are neither ARKit shapes nor groups {GROUPS}")
    mask = np.array([row.name in names or row.group in names for row in TABLE])
    return np.where(mask, np.asarray(fit_w, np.float32), np.asarray(head_w, np.float32))
