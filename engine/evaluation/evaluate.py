"""Evaluation as in the paper's Sec. 4: region errors per frame, mean ± std over captures, reports.

Shape errors are the mean Euclidean vertex distance in mm over the eyes, mouth and face regions
(engine.facemodel region masks); texture errors the mean absolute intensity difference (0-255)
between D_i(ẑ) and D_i(z_gt) over the avatar's valid texels of each region rasterised to UV.
Every table carries the *neutral baseline* (always output the neutral mesh; for textures, always
output the mean code z̄_i): a model has learned something only where it beats it.

The cross-identity correspondence test (the paper's Sec. 4.3, measured here because the synthetic
world knows the expression intents) drives subject j from subject i's images and compares with the
mesh j makes for the same intents, next to driving j from j's own images of the same performance.

Evaluation never imports the training loop; it runs models through engine.runtime.inference.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from engine.io.capture_reader import Capture, list_captures, open_capture
from engine.io.capture_schema import read_meta
from engine.errors import CaptureError, CheckpointError
from engine.facemodel import load_face_model
from engine.runtime.inference import DrivenSubject, InferenceEngine
from engine.io.layout import subject_files
from engine.io.atomic import write_text
from engine.synth.identity import identity_index

REGIONS = ("eyes", "mouth", "face")
Progress = Callable[[int, int], None]
Errors = dict[str, np.ndarray]


# --------------------------------------------------------------------------- metrics

def region_errors(pred: np.ndarray, gt: np.ndarray, masks: dict[str, np.ndarray]) -> Errors:
    """Per-frame mean Euclidean vertex error (mm) inside each region: region -> (T,).

    ``pred`` may be one (V, 3) mesh for all frames (as the neutral baseline is).
    """
    gt = np.asarray(gt, np.float64)
    pred = np.broadcast_to(np.asarray(pred, np.float64), gt.shape)
    dist = np.linalg.norm(pred - gt, axis=-1).reshape(-1, gt.shape[-2])
    out = {}
    for region, mask in masks.items():
        if mask.shape != (gt.shape[-2],) or not mask.any():
            raise ValueError(f"region mask {region!r} must be a non-empty boolean ({gt.shape[-2]},) array, "
                             f"got shape {mask.shape} with {int(mask.sum())} vertices")
        out[region] = dist[:, mask].mean(axis=1)
    return out


def neutral_baseline(gt: np.ndarray, neutral: np.ndarray, masks: dict[str, np.ndarray]) -> Errors:
    """Errors of the trivial model that always answers the neutral mesh: the floor to beat."""
    return region_errors(neutral, gt, masks)


def iris_vertices() -> np.ndarray:
    """(V,) bool: the iris vertices of the model topology (they have their own texture, not the face's)."""
    fm = load_face_model()
    return np.isin(fm.topology.kit_index, np.concatenate([fm.vertex_range("iris_left"), fm.vertex_range("iris_right")]))


@lru_cache(maxsize=8)
def uv_region_masks(size: int) -> dict[str, np.ndarray]:
    """The model's region masks rasterised into an (S, S) UV face tile (row 0 = v 1, as the albedo).

    A triangle belongs to a region when all three of its vertices do, so region borders stay
    inside; iris triangles are left out because their UVs address the eye texture, not the face tile.
    """
    fm = load_face_model()
    topo = fm.topology
    px = np.stack([topo.uvs[:, 0] * size, (1.0 - topo.uvs[:, 1]) * size], 1)
    fixed = np.round(px * 16).astype(np.int32)  # 4 bits of sub-pixel precision
    skin = ~iris_vertices()[topo.faces].any(1)
    out = {}
    for region, mask in fm.region_masks.items():
        image = np.zeros((size, size), np.uint8)
        for tri in topo.faces[skin & mask[topo.faces].all(1)]:
            cv2.fillConvexPoly(image, fixed[tri], 1, cv2.LINE_8, shift=4)
        out[region] = image.astype(bool)
    return out


def texture_errors(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> Errors:
    """Per-frame mean absolute intensity error (0-255) of (T, S, S) [0, 1] textures per UV region."""
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"textures must both be (T, S, S), got {pred.shape} and {gt.shape}")
    diff = np.abs(pred.astype(np.float64) - gt.astype(np.float64)) * 255.0
    out = {}
    for region, mask in uv_region_masks(pred.shape[1]).items():
        texels = mask if valid is None else mask & np.asarray(valid, bool)
        if not texels.any():
            raise ValueError(f"UV region {region!r} has no valid texels at texture size {pred.shape[1]}")
        out[region] = diff[:, texels].mean(axis=1)
    return out


# --------------------------------------------------------------------------- one capture

@dataclass
class CaptureEvaluation:
    """Per-frame errors of one capture; ``texture``/``texture_baseline`` empty when not measurable."""

    capture: str
    subject: str
    frames: np.ndarray  # (T,) frame indices evaluated
    shape: Errors
    baseline: Errors
    texture: Errors = field(default_factory=dict)
    texture_baseline: Errors = field(default_factory=dict)
    path: str = ""
    notes: list[str] = field(default_factory=list)

    def mean(self, kind: str = "shape") -> dict[str, float]:
        return {r: float(np.mean(v)) for r, v in getattr(self, kind).items()}

    def to_dict(self) -> dict:
        arrays = ("shape", "baseline", "texture", "texture_baseline")
        d: dict[str, Any] = {"capture": self.capture, "subject": self.subject, "path": self.path,
                             "notes": self.notes, "frames": self.frames.tolist()}
        d["mean"] = {k: self.mean(k) for k in arrays if getattr(self, k)}
        d["per_frame"] = {k: {r: v.tolist() for r, v in getattr(self, k).items()} for k in arrays}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CaptureEvaluation:
        per = {k: {r: np.asarray(v) for r, v in regions.items()} for k, regions in d["per_frame"].items()}
        return cls(d["capture"], d["subject"], np.asarray(d["frames"]), per["shape"], per["baseline"],
                   per.get("texture", {}), per.get("texture_baseline", {}), d.get("path", ""), d.get("notes", []))


def region_masks_for(engine: InferenceEngine) -> dict[str, np.ndarray]:
    """The face model's region masks, after checking the model was trained on the same topology."""
    fm = load_face_model()
    if not fm.uses_topology(engine.checkpoint.topology):
        raise CheckpointError(f"{engine.checkpoint.path.name}: topology {engine.checkpoint.topology} is not the "
                              f"face model's {fm.topology.describe()}; region masks are defined on the latter")
    return fm.region_masks


def _engine(model: InferenceEngine | str | os.PathLike) -> InferenceEngine:
    return model if isinstance(model, InferenceEngine) else InferenceEngine(model)


def _resolve_subject(engine: InferenceEngine, capture: Capture, name: str, neutral: Any, avatar: Any) -> DrivenSubject:
    """Neutral: given, else the dataset's beside the capture, else the checkpoint's; avatar: given,
    else the dataset's.

    The dataset's file wins over the checkpoint's table because subject names are only unique
    within one dataset: a held-out world's "id000" is another person than the training world's.
    """
    found_neutral, found_avatar = subject_files(capture.path, name)
    if neutral is None:
        neutral = found_neutral
    if neutral is None and name not in engine.subjects:
        raise CheckpointError(f"{capture.path}: no neutral mesh for subject {name!r}: it is not in the "
                              f"checkpoint and there is no subjects/{name}/neutral.obj beside the capture; "
                              "pass one")
    return engine.make_subject(name, neutral, avatar if avatar is not None else found_avatar)


def _texture_note(capture: Capture, subject: DrivenSubject) -> str:
    if capture.codes is None:
        return "no texture errors: the capture has no codes.npy"
    if not subject.has_adapter:
        return f"no texture errors: {subject.name} has no adaptation layer in the checkpoint"
    if subject.avatar is None:
        return f"no texture errors: {subject.name} has no avatar decoder"
    return ""


def _append(store: Errors, errors: Errors) -> None:
    for region, values in errors.items():
        store[region] = np.concatenate([store.get(region, np.zeros(0)), values])


def evaluate_capture(model: InferenceEngine | str | os.PathLike, capture_path: str | os.PathLike, *,
                     neutral: np.ndarray | str | os.PathLike | None = None, avatar: Any = None,
                     subject: str | None = None, batch_size: int = 64, stride: int = 1,
                     progress: Progress | None = None) -> CaptureEvaluation:
    """Shape (and, where possible, texture) errors of every ``stride``-th frame of one capture.

    ``model``: an InferenceEngine or a checkpoint path. The subject defaults to the capture's; its
    neutral to the checkpoint's or the dataset's ``subjects/<id>/neutral.obj``; its avatar to
    ``subjects/<id>/avatar``. Texture errors need codes.npy, an adaptation layer and an avatar.
    """
    engine = _engine(model)
    masks = region_masks_for(engine)
    with open_capture(capture_path) as cap:
        if cap.meshes is None:
            raise CaptureError(f"{cap.path}: has no meshes.npy; evaluation needs ground-truth meshes")
        driven = _resolve_subject(engine, cap, subject or cap.meta.subject_id, neutral, avatar)
        note = _texture_note(cap, driven)
        valid = getattr(driven.avatar, "uv_mask", None)
        mean_code = engine.mean_code(driven.name)[None] if not note else None
        frames = np.arange(0, len(cap), max(1, stride))
        result = CaptureEvaluation(cap.path.name, driven.name, frames, {}, {}, path=str(cap.path),
                                   notes=[note] if note else [])
        for start in range(0, len(frames), batch_size):
            idx = frames[start:start + batch_size]
            pred = engine.predict(np.stack([cap.frame(int(i)) for i in idx]), driven)
            gt = np.asarray(cap.meshes[idx], np.float32)
            _append(result.shape, region_errors(pred.mesh, gt, masks))
            _append(result.baseline, neutral_baseline(gt, driven.neutral, masks))
            if mean_code is not None and pred.code is not None:
                truth = engine.decode(driven, np.asarray(cap.codes[idx], np.float32))
                _append(result.texture, texture_errors(engine.decode(driven, pred.code), truth, valid))
                mean = np.broadcast_to(engine.decode(driven, mean_code), truth.shape)
                _append(result.texture_baseline, texture_errors(mean, truth, valid))
            if progress is not None:
                progress(start + len(idx), len(frames))
    return result


def evaluate_dataset(model: InferenceEngine | str | os.PathLike, path: str | os.PathLike,
                     subjects: list[str] | None = None, *, stride: int = 1, batch_size: int = 64,
                     progress: Progress | None = None) -> list[CaptureEvaluation]:
    """Every capture under ``path`` (a capture or a dataset folder), optionally only some subjects'.

    ``progress(done, total)`` counts frames over all captures.
    """
    engine = _engine(model)
    metas = {p: read_meta(p) for p in list_captures(path)}
    if not metas:
        raise CaptureError(f"{path}: no captures here (folders with capture.json)")
    if subjects:
        metas = {p: m for p, m in metas.items() if m.subject_id in subjects}
        if not metas:
            raise CaptureError(f"{path}: no capture of subjects {subjects}")
    step = max(1, stride)
    total = sum(-(-m.frame_count // step) for m in metas.values())
    results: list[CaptureEvaluation] = []
    done = 0
    for p, meta in metas.items():
        report = None if progress is None else (lambda k, _n, base=done: progress(base + k, total))
        results.append(evaluate_capture(engine, p, stride=step, batch_size=batch_size, progress=report))
        done += -(-meta.frame_count // step)
    return results


# --------------------------------------------------------------------------- summaries and reports

def summarise(results: list[CaptureEvaluation]) -> dict[str, dict[str, tuple[float, float]]]:
    """kind -> region -> (mean over captures, std across captures), as the paper's overall rows.

    Each capture counts once (its mean over frames); texture kinds only over captures that have them.
    """
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for kind in ("shape", "baseline", "texture", "texture_baseline"):
        means = [r.mean(kind) for r in results if getattr(r, kind)]
        if means:
            out[kind] = {region: (float(np.mean([m[region] for m in means])), float(np.std([m[region] for m in means])))
                         for region in REGIONS if region in means[0]}
    return out


def _pm(value: tuple[float, float]) -> str:
    return f"{value[0]:.2f} ± {value[1]:.2f}"


def markdown_table(results: list[CaptureEvaluation]) -> str:
    """Rows per capture, an 'overall' mean ± std row and the neutral baseline row (paper Table 1)."""
    texture = any(r.texture for r in results)
    head = ["Capture", "Subject", *(f"{r.capitalize()} (mm)" for r in REGIONS)]
    head += [f"{r.capitalize()} tex (0-255)" for r in REGIONS] if texture else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for r in results:
        cells = [r.capture, r.subject, *(f"{r.mean('shape')[g]:.2f}" for g in REGIONS)]
        if texture:
            cells += [f"{r.mean('texture')[g]:.2f}" if r.texture else "—" for g in REGIONS]
        lines.append("| " + " | ".join(cells) + " |")
    summary = summarise(results)
    for label, shape_kind, tex_kind in (("**overall**", "shape", "texture"),
                                        ("neutral baseline", "baseline", "texture_baseline")):
        cells = [label, f"{len(results)} captures", *(_pm(summary[shape_kind][g]) for g in REGIONS)]
        if texture:
            cells += [_pm(summary[tex_kind][g]) if tex_kind in summary else "—" for g in REGIONS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_report(results: list[CaptureEvaluation], out_dir: str | os.PathLike, title: str = "MIA evaluation",
                 info: dict | None = None) -> dict[str, Path]:
    """results.json, report.md (the table) and PNG plots (per-frame curves, per-capture bars)."""
    from engine.evaluation import plots  # here, not at the top: matplotlib is only needed for reports
    if not results:
        raise ValueError("write_report: no results to report")
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    files = {"json": out / "results.json", "markdown": out / "report.md"}
    payload = {"title": title, "info": info or {}, "summary": summarise(results),
               "captures": [r.to_dict() for r in results]}
    write_text(files["json"], json.dumps(payload, indent=1))
    notes = sorted({n for r in results for n in r.notes})
    text = f"# {title}\n\n{markdown_table(results)}\n\nShape errors: mean Euclidean vertex error (mm); " \
           "texture errors: mean absolute intensity error (0-255); overall: mean over captures ± std " \
           "across captures. Neutral baseline: always the neutral mesh (texture: the mean code).\n"
    text += "".join(f"\n- {n}" for n in notes)
    write_text(files["markdown"], text + "\n")
    for r in results:
        files[f"frames:{r.capture}"] = plots.plot_frame_errors(r, out / "plots" / f"{_safe_name(r.capture)}_frames.png")
    files["bars:shape"] = plots.plot_capture_bars(results, out / "plots" / "captures_shape.png", "shape")
    if any(r.texture for r in results):
        files["bars:texture"] = plots.plot_capture_bars(results, out / "plots" / "captures_texture.png", "texture")
    return files


# --------------------------------------------------------------------------- correspondence (Sec. 4.3)

@dataclass
class CorrespondenceEvaluation:
    """Errors (region -> (T,) mm) of ways to drive subject j with subject i's performance.

    methods: ``cross`` MIA on i's images with j's neutral; ``self`` MIA on j's own images of the
    same performance (the control); ``transfer`` i's true displacement pasted on j's neutral (what
    ignoring correspondence gives); ``neutral`` j's neutral mesh.
    """

    source: str
    source_subject: str
    target_subject: str
    gaze: str
    errors: dict[str, Errors]

    def means(self) -> dict[str, dict[str, float]]:
        return {m: {r: float(np.mean(v)) for r, v in e.items()} for m, e in self.errors.items()}

    def markdown(self) -> str:
        lines = [f"Driving {self.target_subject} from {self.source} ({self.source_subject}); gaze {self.gaze}",
                 "", "| Method | " + " | ".join(f"{r.capitalize()} (mm)" for r in REGIONS) + " |",
                 "|---|" + "---:|" * len(REGIONS)]
        for method, regions in self.means().items():
            lines.append(f"| {method} | " + " | ".join(f"{regions[r]:.2f}" for r in REGIONS) + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"source": self.source, "source_subject": self.source_subject, "target_subject": self.target_subject,
                "gaze": self.gaze, "mean": self.means(),
                "per_frame": {m: {r: v.tolist() for r, v in e.items()} for m, e in self.errors.items()}}


def _synthetic_source(cap: Capture) -> tuple[Any, Any]:
    """The SynthConfig and CaptureSpec that made a synthetic capture (from its provenance)."""
    from engine.synth.config import AppearanceConfig, SynthConfig
    from engine.synth.generate import CaptureSpec
    prov = cap.meta.provenance
    if cap.expressions is None or not {"synth_config", "spec", "seed"} <= set(prov):
        raise CaptureError(f"{cap.path}: the correspondence test needs a synthetic capture (expressions.npy and "
                           "provenance fields 'synth_config', 'spec', 'seed')")
    if prov.get("expression_names", load_face_model().expression_names) != load_face_model().expression_names:
        raise CaptureError(f"{cap.path}: provenance 'expression_names' differ from the face model's")
    d = dict(prov["spec"])
    d["appearance"] = AppearanceConfig(**d.get("appearance", {}))
    d["segments"] = tuple(d["segments"]) if d.get("segments") else None
    return SynthConfig.from_dict(prov["synth_config"]), CaptureSpec(**d)


def _gaze(cap: Capture, cfg: Any, spec: Any) -> np.ndarray | None:
    """The capture's per-frame gaze, replayed from its performance seed; None if it does not replay.

    gaze is not stored in captures, but the performance is a pure function of its seed, so
    regenerating it and checking the intents against expressions.npy recovers it exactly.
    """
    from engine.synth.performance import make_performance
    fm = load_face_model()
    perf = make_performance(fm.expression_names, spec.frames, cfg.fps,
                            np.random.default_rng([spec.performance_seed, 17]), cfg.performance, spec.segments)
    if perf.intents.shape == cap.expressions.shape and np.allclose(perf.intents, cap.expressions, atol=1e-6):
        return perf.gaze
    return None


def _drive(engine: InferenceEngine, cap: Capture, subject: DrivenSubject, frames: np.ndarray,
           batch_size: int) -> np.ndarray:
    return np.concatenate([engine.predict(np.stack([cap.frame(int(i)) for i in frames[s:s + batch_size]]),
                                          subject).mesh for s in range(0, len(frames), batch_size)])


def correspondence_error(model: InferenceEngine | str | os.PathLike, source_capture: str | os.PathLike,
                         target: int | str, *, control: str | os.PathLike | None = "render",
                         stride: int = 1, batch_size: int = 64) -> CorrespondenceEvaluation:
    """Drive synthetic identity ``target`` (index or name like "id003") from ``source_capture``.

    The ground truth is the mesh the target makes for the source's expression intents (its own
    style applied to them, same gaze). ``control="render"`` renders the target performing the same
    performance in the same headset and session and drives it from those images (the "self" row);
    a capture path uses that capture of the target instead (other intents); None skips it.
    If the gaze cannot be replayed both sides use zero gaze and the irises are left out of the regions.
    """
    from engine.synth.identity import make_identity
    engine = _engine(model)
    masks = dict(region_masks_for(engine))
    fm = load_face_model()
    j = identity_index(target)
    with open_capture(source_capture) as cap:
        cfg, spec = _synthetic_source(cap)
        frames = np.arange(0, len(cap), max(1, stride))
        gaze = _gaze(cap, cfg, spec)
        mode = "replayed from the performance seed"
        if gaze is None:
            gaze, mode = np.zeros((len(cap), 2, 2), np.float32), "zero (irises excluded)"
            masks = {r: m & ~iris_vertices() for r, m in masks.items()}
        ident_j = make_identity(fm, j, cfg.seed, cfg.identity)
        ident_i = make_identity(fm, spec.identity, cfg.seed, cfg.identity)
        full_j, neutral_j, neutral_i = ident_j.neutral_full(fm), ident_j.neutral(fm), ident_i.neutral(fm)
        truth = np.stack([fm.to_topology(fm.expressed(full_j, ident_j.styled(cap.expressions[t]), gaze[t]))
                          for t in frames]).astype(np.float32)
        driven = engine.make_subject(ident_j.name, neutral_j)
        errors = {"cross": region_errors(_drive(engine, cap, driven, frames, batch_size), truth, masks)}
        source_meshes = np.asarray(cap.meshes[frames]) if cap.meshes is not None else None
        source = cap.path.name
    if control is not None:
        errors["self"] = _control_errors(engine, control, cfg, spec, j, driven, stride, masks, batch_size)
    if source_meshes is not None:
        errors["transfer"] = region_errors(neutral_j + (source_meshes - neutral_i), truth, masks)
    errors["neutral"] = neutral_baseline(truth, neutral_j, masks)
    return CorrespondenceEvaluation(source, ident_i.name, ident_j.name, mode, errors)


def _control_errors(engine: InferenceEngine, control: str | os.PathLike, cfg: Any, spec: Any, j: int,
                    driven: DrivenSubject, stride: int, masks: dict[str, np.ndarray], batch_size: int) -> Errors:
    """Errors of driving j from j's own images: rendered with i's performance, or a given capture.

    Either way the truth is that capture's own meshes; for the rendered one they equal the
    cross-identity ground truth (same seeds), which the tests check.
    """
    if control != "render":
        with open_capture(control) as own:
            if own.meshes is None:
                raise CaptureError(f"{own.path}: the control capture has no meshes.npy")
            idx = np.arange(0, len(own), max(1, stride))
            return region_errors(_drive(engine, own, driven, idx, batch_size), np.asarray(own.meshes[idx]), masks)
    from engine.synth.generate import render_capture
    with tempfile.TemporaryDirectory(prefix="mia-control-") as tmp:
        path = render_capture(Path(tmp) / "control", cfg, dataclasses.replace(spec, identity=j))
        with open_capture(path) as own:
            frames = np.arange(0, len(own), max(1, stride))
            return region_errors(_drive(engine, own, driven, frames, batch_size), np.asarray(own.meshes[frames]), masks)
