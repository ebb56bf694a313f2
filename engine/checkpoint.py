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

Writes are atomic (temp file + rename) so a kill mid-save never corrupts the last good checkpoint.
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


def atomic_torch_save(payload: Any, path: Path) -> Path:
    """torch.save to a temp file beside ``path``, then rename: a kill never leaves a torn file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint; every problem is a CheckpointError naming the file and field."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        d: Any = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
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
        cfg = ModelConfig.from_dict(d["model_config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid field 'model_config' ({err})") from err
    state = {k: v.float() if torch.is_floating_point(v) else v for k, v in d["state_dict"].items()}
    template = np.asarray(d["template"], np.float32)
    if template.shape != (int(d["topology"]["vertex_count"]), 3):
        raise CheckpointError(f"{path}: field 'template' has shape {template.shape}, expected "
                              f"({d['topology']['vertex_count']}, 3) from 'topology.vertex_count'")
    return Checkpoint(path, d.get("kind", "mia"), cfg, d.get("train_config", {}), state, template,
                      d["identities"], d.get("subjects", d["identities"]), d["topology"], d.get("provenance", {}),
                      d.get("training"), d.get("extra", {}))
