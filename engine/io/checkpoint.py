"""Model checkpoints: one file that is enough to rebuild, resume, and check a trained MIA.

Contents (a dict saved with torch.save):
    format, version         "mia-checkpoint", 1
    kind                    "mia" or "ps" (the person-specific baseline)
    model_config            ModelConfig.to_dict()
    train_config            the training config dict (may be empty)
    state_dict              model weights (fp16 when saved with ``half=True``, restored to fp32)
    template                (V, 3) float32 mm: the topology's template mesh G was built with
    identities              {name: {"neutral": (V, 3) float32 mm}} subjects with an adaptation layer
    subjects                {name: {"neutral": ...}} every subject seen in training (shape-only ones too)
    topology                {"name", "vertex_count", "hash"} of the mesh topology it was trained on
    provenance              who/what/when (command line, dataset, git commit, seconds trained)
    training                optional resume state: step, optimizer, scheduler, rng states

Writes are atomic (temp file + rename) so a kill mid-save never corrupts the last good checkpoint;
a temp file orphaned by a kill (``.NAME.tmpPID``) is removed by the next save beside it.

Loading never runs code from the file: model files are what people download and pass around, so
they are read with ``torch.load(weights_only=True)``, which unpickles only tensors and plain
containers and numbers. Everything is saved in that vocabulary (numpy arrays become tensors on the
way in and come back as arrays), and a file that needs anything else is refused with a message.
Weights and meshes are checked to be finite where they are loaded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.errors import CheckpointError
from engine.mia.config import ModelConfig
from engine.mia.model import MIA
from engine.io.atomic import atomic_path

FORMAT = "mia-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: the parts a caller needs, already validated."""

    path: Path
    kind: str
    model_config: ModelConfig
    train_config: dict
    state_dict: dict
    template: np.ndarray
    identities: dict[str, dict]
    subjects: dict[str, dict]
    topology: dict
    provenance: dict
    training: dict | None = None
    extra: dict = field(default_factory=dict)

    def build_model(self) -> torch.nn.Module:
        """The model with its weights loaded (eval mode, CPU, float32)."""
        if self.kind == "ps":
            from engine.mia.baseline_ps import PersonSpecificEncoder
            model = PersonSpecificEncoder(self.model_config, **self.extra.get("ps_args", {}))
        else:
            model = MIA(self.model_config, torch.from_numpy(self.template))
            for name in self.identities:
                model.add_identity(name)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as err:
            raise CheckpointError(f"{self.path}: weights do not fit the model described by its config ({err})") from err
        return model.float().eval()

    def check_neutral(self, neutral: np.ndarray, what: str = "neutral mesh") -> None:
        """Raise a clear CheckpointError when a neutral mesh is of another topology than the model's."""
        v = int(self.topology["vertex_count"])
        if neutral.ndim != 2 or neutral.shape != (v, 3):
            raise CheckpointError(
                f"{what} has {neutral.shape[0] if neutral.ndim == 2 else neutral.shape} vertices but the model "
                f"{self.path.name} was trained on topology {self.topology['name']!r} with {v} vertices "
                f"(hash {self.topology['hash']}); register the mesh to that topology first")


def _to_half(state: dict) -> dict:
    return {k: v.half() if torch.is_floating_point(v) else v for k, v in state.items()}


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, *, topology: dict, template: np.ndarray,
                    identities: dict[str, dict], subjects: dict[str, dict] | None = None, kind: str = "mia",
                    train_config: dict | None = None, provenance: dict | None = None,
                    training: dict | None = None, half: bool = False, extra: dict | None = None) -> Path:
    """Write a checkpoint atomically; ``half`` stores weights as fp16 (a shipped model, not for resume)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = model.module if hasattr(model, "module") else model
    module = getattr(module, "_orig_mod", module)  # torch.compile wrapper
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    payload = {
        "format": FORMAT, "version": VERSION, "kind": kind,
        "model_config": module.cfg.to_dict(),
        "train_config": train_config or {},
        "state_dict": _to_half(state) if half else state,
        "template": np.asarray(template, np.float32),
        "identities": identities, "subjects": subjects or identities,
        "topology": dict(topology), "provenance": provenance or {},
        "training": training, "extra": extra or {},
    }
    return atomic_torch_save(payload, path)


def to_plain(obj: Any) -> Any:
    """`obj` with numpy arrays and scalars turned into tensors and numbers (containers kept), so a
    weights-only load can read it back; other non-plain objects are an error at save time."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "u" and obj.dtype != np.uint8:
            obj = obj.astype(np.int64)
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.Tensor, torch.Size)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a model file (only tensors, arrays, numbers, "
                    "strings and containers of them load without running code)")


def safe_torch_load(path: Path, error: type[Exception], what: str) -> Any:
    """torch.load that unpickles only tensors and plain data; anything else is `error`, naming why."""
    import pickle
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line), None)
        if reason is None:  # garbage, not a crafted object: an ordinary unreadable file
            raise error(f"{path}: not a readable {what} (not a PyTorch file, or damaged)") from None
        raise error(f"{path}: refused to load this {what}: it holds Python objects other than tensors "
                    f"and plain data, and loading them could run code from the file ({reason})") from None
    except Exception as err:  # torch.load raises many types for a damaged file
        raise error(f"{path}: not a readable {what} ({type(err).__name__}: {err})") from err


def check_finite(path: Path, error: type[Exception], fields: dict[str, Any]) -> None:
    """`error` naming the first field whose tensor/array holds NaN or Inf."""
    for name, value in fields.items():
        t = torch.as_tensor(value) if not isinstance(value, torch.Tensor) else value
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            raise error(f"{path}: field {name!r} contains NaN or infinite values")


def atomic_torch_save(payload: Any, path: Path) -> Path:
    """torch.save to a temp file beside ``path``, then rename: a kill never leaves a torn file."""
    payload = to_plain(payload)
    with atomic_path(path, clean_orphans=True) as tmp:
        torch.save(payload, tmp)
    return path


def store_extra(checkpoint: str | os.PathLike, key: str, value: Any, out: str | os.PathLike) -> Path:
    """Write ``checkpoint`` with ``extra[key] = value`` (None removes the key) to ``out``, atomically;
    every other field is kept as it is in the file (fp16 weights stay fp16). How fitted add-ons
    (the ARKit head, the recommended test-time averaging) are stamped onto a trained model.
    Raises CheckpointError for a file that is not a MIA checkpoint, OSError when ``out`` cannot be written."""
    raw = safe_torch_load(Path(checkpoint), CheckpointError, "checkpoint")
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{checkpoint}: not a MIA checkpoint (field 'format' should be {FORMAT!r})")
    extra = dict(raw.get("extra") or {})
    extra.pop(key, None)
    if value is not None:
        extra[key] = value
    raw["extra"] = extra
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return atomic_torch_save(raw, Path(out))


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint; every problem is a CheckpointError naming the file and field."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    d: Any = safe_torch_load(path, CheckpointError, "checkpoint")
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a MIA checkpoint (field 'format' should be {FORMAT!r})")
    if d.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {d.get('version')!r} is not supported (expected {VERSION})")
    for key in ("model_config", "state_dict", "template", "topology", "identities"):
        if key not in d:
            raise CheckpointError(f"{path}: missing field {key!r}")
    for key in ("name", "vertex_count", "hash"):
        if key not in d["topology"]:
            raise CheckpointError(f"{path}: missing field 'topology.{key}'")
    try:
        cfg = ModelConfig.from_dict(dict(d["model_config"]))
        template_v = int(d["topology"]["vertex_count"])
        if cfg.vertex_count and cfg.vertex_count != template_v:
            raise ValueError(f"vertex_count {cfg.vertex_count} differs from 'topology.vertex_count' "
                             f"{template_v}")
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid field 'model_config' ({err})") from err
    if not isinstance(d["state_dict"], dict) or not all(
            isinstance(v, torch.Tensor) for v in d["state_dict"].values()):
        raise CheckpointError(f"{path}: field 'state_dict' must map parameter names to tensors")
    state = {k: v.float() if torch.is_floating_point(v) else v for k, v in d["state_dict"].items()}
    check_finite(path, CheckpointError, {f"state_dict.{k}": v for k, v in state.items()})
    template = np.asarray(d["template"], np.float32)
    if template.shape != (int(d["topology"]["vertex_count"]), 3):
        raise CheckpointError(f"{path}: field 'template' has shape {template.shape}, expected "
                              f"({d['topology']['vertex_count']}, 3) from 'topology.vertex_count'")
    identities = _meshes(path, d["identities"], "identities", template.shape)
    subjects = _meshes(path, d.get("subjects", d["identities"]), "subjects", template.shape)
    check_finite(path, CheckpointError, {"template": template})
    return Checkpoint(path, d.get("kind", "mia"), cfg, d.get("train_config", {}), state, template,
                      identities, subjects, d["topology"], d.get("provenance", {}),
                      d.get("training"), d.get("extra", {}))


def _meshes(path: Path, table: Any, field: str, shape: tuple) -> dict[str, dict]:
    """An identity/subject table with its neutral meshes as checked float32 arrays."""
    if not isinstance(table, dict):
        raise CheckpointError(f"{path}: field {field!r} must map subject names to {{'neutral': mesh}}")
    out = {}
    for name, entry in table.items():
        if not isinstance(entry, dict) or "neutral" not in entry:
            raise CheckpointError(f"{path}: field '{field}.{name}' must hold a 'neutral' mesh")
        neutral = np.asarray(entry["neutral"], np.float32)
        if neutral.shape != shape:
            raise CheckpointError(f"{path}: field '{field}.{name}.neutral' has shape {neutral.shape}, "
                                  f"expected {shape}")
        check_finite(path, CheckpointError, {f"{field}.{name}.neutral": neutral})
        out[name] = {**entry, "neutral": neutral}
    return out
