"""ONNX export of a MIA checkpoint and the onnxruntime path that runs it without torch.

What is exported is what a deployed headset needs per frame:
- ``shape.onnx``: B + G, images (N, 3, H, W) float32 and neutral meshes (K, V, 3) mm -> the
  embedding e (N, E) and meshes (max(N, K), V, 3). N and K broadcast (either may be 1), so one
  frame drives K subjects with one backbone call: the retargeting grid of the GUI.
- ``code_XXX.onnx``, one per subject with an adaptation layer: e (N, E) -> z = P_i F_i(e) + z̄_i.
  Avatar decoders D_i are the user's own models, exported apart (engine/runtime/avatar_onnx.py).

Every file is checked against torch on random inputs (several batch sizes, both broadcasts) and
the export fails with ExportError when any output differs by more than the tolerance, so a shipped
folder is known to compute what the checkpoint does. The folder is written under a temporary name
and renamed into place, with a manifest.json recording the checkpoint hash, topology, identities,
files and the errors measured.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from engine.io.checkpoint import Checkpoint, load_checkpoint
from engine.errors import CheckpointError, ExportError
from engine.mia.model import MIA
from engine.mia.texture import AdaptationLayer, IdentityCodeSpace
from engine.facemodel import MIRROR_X, mirror_index_for
from engine.io.capture_schema import MIRRORED_CAMERAS
from engine.runtime.averaging import EXTRA_KEY, AveragingConfig, averaging_for, sampling_grids
from engine.runtime.onnx_io import OPSET, export_module, max_error, ort_session

FORMAT = "mia-onnx"
VERSION = 1
MANIFEST = "manifest.json"
SHAPE_FILE = "shape.onnx"
NEUTRALS_FILE = "neutrals.npz"
TOLERANCE = 1e-4


def file_sha256(path: str | os.PathLike) -> str:
    """Content hash of a checkpoint, so an export (or cache) is tied to the exact weights."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_root() -> Path:
    """Where exports made on the fly are cached: MIA_CACHE_DIR, else ~/.cache/mia-studio."""
    return Path(os.environ.get("MIA_CACHE_DIR", Path.home() / ".cache" / "mia-studio"))


def default_export_dir(checkpoint_path: str | os.PathLike, averaging: AveragingConfig | None = None) -> Path:
    """Where InferenceEngine(backend="onnx") caches an export: keyed by the checkpoint's hash and
    the test-time averaging baked into its graph."""
    root = cache_root()
    name = file_sha256(checkpoint_path)[:16]
    if averaging is not None and averaging.enabled:
        key = hashlib.sha256(json.dumps(averaging.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        name += f"-avg{averaging.copies}{'m' if averaging.mirror else ''}-{key}"
    return root / "onnx" / name


class ShapeGraph(nn.Module):
    """B + G with broadcasting between the image batch N and the neutral batch K.

    Adding zeros of the other batch's shape broadcasts (N, E) against (K, 1) without a
    data-dependent branch, so the traced graph keeps both batch sizes dynamic. With test-time
    averaging (engine/runtime/averaging.py) B also reads `copies - 1` fixed warps of each frame
    (grid_sample, part of the graph) and e is their mean, so G, F_i and every caller see one e.
    With mirroring B also reads the mirror image of each frame, G drives the mirrored neutrals
    with it and the mirrored-back meshes are averaged with the direct ones; e stays the direct one.
    `mirror_index` (the topology's, `engine.facemodel.mirror_index_for`) is needed only for mirroring.
    """

    def __init__(self, model: MIA, averaging: AveragingConfig | None = None,
                 mirror_index: np.ndarray | None = None) -> None:
        super().__init__()
        self.backbone, self.shape_network = model.backbone, model.shape_network
        self.averaging = averaging if averaging is not None and averaging.enabled else None
        self.copies = 1 if self.averaging is None else self.averaging.copies
        self.mirror = self.averaging is not None and self.averaging.mirror
        size = model.cfg.image_size
        if self.copies > 1:
            grids = sampling_grids(self.averaging, size)
            self.register_buffer("grids", torch.from_numpy(grids), persistent=False)
        if self.mirror:
            if mirror_index is None:
                raise ValueError("ShapeGraph: mirroring needs the topology's mirror_index")
            self.register_buffer("mirror_index", torch.as_tensor(mirror_index, dtype=torch.long), persistent=False)
            self.register_buffer("camera_swap", torch.tensor(MIRRORED_CAMERAS), persistent=False)
            self.register_buffer("columns_reversed", torch.arange(size - 1, -1, -1), persistent=False)
            self.register_buffer("flip_x", torch.tensor(MIRROR_X), persistent=False)

    def embed(self, images: Tensor) -> Tensor:
        e = self.backbone(images)
        if self.copies == 1:
            return e
        k, (n, c, h, w) = self.copies - 1, images.shape
        frames = images.unsqueeze(0).expand(k, n, c, h, w).reshape(-1, 1, h, w)
        grids = self.grids.unsqueeze(1).expand(k, n, c, h, w, 2).reshape(-1, h, w, 2)
        moved = F.grid_sample(frames, grids, mode="bilinear", padding_mode="border", align_corners=True)
        moved_e = self.backbone(moved.reshape(-1, c, h, w)).reshape(k, n, -1)
        return (e + moved_e.sum(0)) / self.copies

    def mirror_images(self, images: Tensor) -> Tensor:
        """The frames the same headset would see of the mirrored face: eye cameras swapped, flipped."""
        return images.index_select(1, self.camera_swap).index_select(3, self.columns_reversed)

    def mirror_meshes(self, meshes: Tensor) -> Tensor:
        """(K, V, 3) mirrored across the face's midplane, vertices renumbered to stay in the topology."""
        return (meshes * self.flip_x).index_select(1, self.mirror_index)

    def drive(self, e: Tensor, neutral: Tensor) -> Tensor:
        e_rows = e + torch.zeros_like(neutral[:, :1, 0])
        neutral_rows = neutral + torch.zeros_like(e[:, :1, None])
        return self.shape_network(e_rows, neutral_rows)

    def forward(self, images: Tensor, neutral: Tensor) -> tuple[Tensor, Tensor]:
        if not self.mirror:
            e = self.embed(images)
            return e, self.drive(e, neutral)
        both = self.embed(torch.cat([images, self.mirror_images(images)]))
        both = both.reshape(2, -1, both.shape[-1])
        e, e_mirrored = both[0], both[1]
        mirrored = self.mirror_meshes(self.drive(e_mirrored, self.mirror_meshes(neutral)))
        return e, 0.5 * (self.drive(e, neutral) + mirrored)


def shape_graph(model: MIA, averaging: AveragingConfig | None, topology: dict) -> ShapeGraph:
    """The ShapeGraph of a model trained on `topology`, with the mirror map when `averaging` mirrors."""
    mirror = averaging is not None and averaging.mirror
    return ShapeGraph(model, averaging, mirror_index_for(topology) if mirror else None)


class CodeGraph(nn.Module):
    """Eq. 4 for one subject: z = P_i F_i(e) + z̄_i."""

    def __init__(self, adapter: AdaptationLayer, space: IdentityCodeSpace) -> None:
        super().__init__()
        self.adapter, self.space = adapter, space

    def forward(self, embedding: Tensor) -> Tensor:
        return self.space.project(self.adapter(embedding))


def _check_shape(model: MIA, graph: ShapeGraph, path: Path, template: np.ndarray) -> dict[str, float]:
    """Max abs errors of embedding and mesh over batch sizes (1, 1), (3, 3), (1, 3) and (2, 1)."""
    rng = np.random.default_rng(0)
    session = ort_session(path, threads=1)
    s = model.cfg.image_size
    errors = {"embedding": 0.0, "mesh": 0.0}
    for n, k in ((1, 1), (3, 3), (1, 3), (2, 1)):
        images = rng.uniform(0, 255, (n, 3, s, s)).astype(np.float32)
        neutral = (template + rng.normal(0, 2.0, (k, *template.shape))).astype(np.float32)
        with torch.inference_mode():
            e, mesh = graph(torch.from_numpy(images), torch.from_numpy(neutral))
        got_e, got_mesh = session.run(["embedding", "mesh"], {"images": images, "neutral": neutral})
        errors["embedding"] = max(errors["embedding"], max_error(e, got_e))
        errors["mesh"] = max(errors["mesh"], max_error(mesh, got_mesh))
    return errors


def _check_code(graph: CodeGraph, path: Path, dim: int) -> float:
    rng = np.random.default_rng(1)
    session = ort_session(path, threads=1)
    error = 0.0
    for n in (1, 4):
        e = rng.normal(0, 1, (n, dim)).astype(np.float32)
        with torch.inference_mode():
            z = graph(torch.from_numpy(e))
        error = max(error, max_error(z, session.run(["code"], {"embedding": e})[0]))
    return error


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move a finished export into place; an older export there is replaced, anything else kept."""
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).exists()):
            raise ExportError(f"{out}: exists and is not an ONNX export folder (no {MANIFEST}); "
                              "choose an empty or new folder")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def export_onnx(checkpoint: str | os.PathLike | Checkpoint, out_dir: str | os.PathLike,
                tolerance: float = TOLERANCE, averaging: AveragingConfig | None = None) -> dict:
    """Export B+G and every F_i (with P_i, z̄_i) of a checkpoint; returns the manifest written.
    `averaging`: the test-time averaging baked into shape.onnx (default: the checkpoint's own).

    Raises ExportError naming the file and output when onnxruntime disagrees with torch by more
    than ``tolerance`` (max abs error; mm for meshes).
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    if ckpt.kind != "mia":
        raise CheckpointError(f"{ckpt.path}: is a {ckpt.kind!r} checkpoint; only MIA checkpoints export to ONNX")
    model = ckpt.build_model()
    assert isinstance(model, MIA)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        if averaging is None:
            averaging = averaging_for(ckpt.extra)
        manifest = _write_export(ckpt, model, tmp, tolerance, averaging)
        _replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _write_export(ckpt: Checkpoint, model: MIA, folder: Path, tolerance: float,
                  averaging: AveragingConfig) -> dict:
    cfg = model.cfg
    template = ckpt.template
    graph = shape_graph(model, averaging, ckpt.topology).eval()
    example = (torch.zeros(1, 3, cfg.image_size, cfg.image_size), torch.from_numpy(template)[None])
    exporter = export_module(graph, example, folder / SHAPE_FILE, ["images", "neutral"], ["embedding", "mesh"],
                       {"images": {0: "frames"}, "neutral": {0: "subjects"}, "embedding": {0: "frames"},
                        "mesh": {0: "rows"}})
    errors: dict = _check_shape(model, graph, folder / SHAPE_FILE, template)
    files = {"shape": SHAPE_FILE}
    identities = {}
    errors["code"] = {}
    for k, name in enumerate(model.identities):
        file = f"code_{k:03d}.onnx"
        space = model.texture.code_spaces[name]
        assert isinstance(space, IdentityCodeSpace)
        code_graph = CodeGraph(model.texture.adapters[name], space).eval()  # type: ignore[arg-type]
        export_module(code_graph, (torch.zeros(1, cfg.embedding_dim),), folder / file, ["embedding"], ["code"],
                {"embedding": {0: "frames"}, "code": {0: "frames"}})
        errors["code"][name] = _check_code(code_graph, folder / file, cfg.embedding_dim)
        identities[name] = {"file": file}
    _check_errors(errors, tolerance)
    neutrals = {name: np.asarray(d["neutral"], np.float32) for name, d in ckpt.subjects.items()}
    np.savez(folder / NEUTRALS_FILE, template=template, **{f"subject_{k}": v for k, v in enumerate(neutrals.values())})
    manifest = {
        "format": FORMAT, "version": VERSION,
        "checkpoint": {"path": str(ckpt.path.resolve()), "sha256": file_sha256(ckpt.path)},
        "model_config": cfg.to_dict(), "topology": dict(ckpt.topology), "image_size": cfg.image_size,
        "embedding_dim": cfg.embedding_dim, "latent_dim": cfg.latent_dim,
        "identities": identities, "subjects": list(neutrals),
        "files": {**files, "neutrals": NEUTRALS_FILE, **{n: d["file"] for n, d in identities.items()}},
        "max_abs_error": errors, "tolerance": tolerance, "opset": OPSET, "exporter": exporter,
        "torch": torch.__version__, "averaging": averaging.to_dict(),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def _check_errors(errors: dict, tolerance: float) -> None:
    bad = [f"{k} {v:.2e}" for k, v in errors.items() if k != "code" and v > tolerance]
    bad += [f"code of {n} {v:.2e}" for n, v in errors["code"].items() if v > tolerance]
    if bad:
        raise ExportError(f"ONNX export does not reproduce the checkpoint: max abs error {', '.join(bad)} "
                          f"exceeds the tolerance {tolerance:.0e} (onnxruntime vs torch on random inputs)")


class OnnxModel:
    """An export folder run with onnxruntime: the torch-free per-frame path of InferenceEngine."""

    def __init__(self, folder: str | os.PathLike, threads: int = 2) -> None:
        self.folder = Path(folder)
        file = self.folder / MANIFEST
        try:
            self.manifest: dict = json.loads(file.read_text())
        except (OSError, ValueError) as err:
            raise ExportError(f"{file}: not a readable ONNX export manifest ({err}); run `mia export` first") from err
        if self.manifest.get("format") != FORMAT or self.manifest.get("version") != VERSION:
            raise ExportError(f"{file}: not a {FORMAT} v{VERSION} manifest")
        self.threads = threads
        self._shape = ort_session(self.folder / self.manifest["files"]["shape"], threads)
        self._codes = {name: ort_session(self.folder / d["file"], threads)
                       for name, d in self.manifest["identities"].items()}

    @property
    def identities(self) -> list[str]:
        return list(self.manifest["identities"])

    @property
    def image_size(self) -> int:
        return int(self.manifest["image_size"])

    @property
    def checkpoint_sha256(self) -> str:
        return str(self.manifest["checkpoint"]["sha256"])

    @property
    def averaging(self) -> AveragingConfig:
        """The test-time averaging baked into shape.onnx (exports before it had none)."""
        stored = self.manifest.get("averaging")
        return averaging_for({EXTRA_KEY: stored} if stored else None)

    def shape(self, images: np.ndarray, neutral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images (N, 3, S, S), neutral (K, V, 3) mm -> embedding (N, E), meshes (max(N, K), V, 3)."""
        e, mesh = self._shape.run(["embedding", "mesh"], {
            "images": np.ascontiguousarray(images, np.float32),
            "neutral": np.ascontiguousarray(neutral, np.float32)})
        return e, mesh

    def code(self, name: str, embedding: np.ndarray) -> np.ndarray:
        """Subject ``name``'s avatar codes z (N, latent_dim) for embeddings (N, E)."""
        if name not in self._codes:
            raise KeyError(f"{name!r} has no adaptation layer in {self.folder}; known: {self.identities}")
        return self._codes[name].run(["code"], {"embedding": np.ascontiguousarray(embedding, np.float32)})[0]

    def neutrals(self) -> dict[str, np.ndarray]:
        """The checkpoint's subjects' neutral meshes, so an export drives them without the checkpoint."""
        with np.load(self.folder / self.manifest["files"]["neutrals"]) as d:
            return {name: d[f"subject_{k}"] for k, name in enumerate(self.manifest["subjects"])}
