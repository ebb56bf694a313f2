"""Synthetic datasets on disk: K identities x captures, deterministic from a seed and resumable.

Layout of a dataset folder:
    dataset.json                 the SynthConfig and the capture plan
    subjects/<id>/neutral.obj    the identity's neutral mesh on the model topology (mm)
    subjects/<id>/subject.json   identity parameters (seed, albedo, beard, ...)
    captures/<id>_c<k>/          one HMC capture per (identity, capture) in engine.io capture format

Each capture is written through ``CaptureWriter`` (temp folder, renamed when complete), so an
interrupted run leaves only whole captures and a rerun skips them.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from engine.camera import calib_from_camera
from engine.io.capture_schema import CAMERA_NAMES, CaptureMeta, TopologyRef, read_meta
from engine.io.capture_writer import CaptureWriter
from engine.errors import CaptureError, ConfigError
from engine.facemodel import FaceModel, load_face_model
from engine.io.mesh import save_mesh
from engine.synth.config import AppearanceConfig, SynthConfig
from engine.synth.ground_truth import IDENTITY_FIELD
from engine.synth.headset import Headset, make_headset, make_slop, session_poses
from engine.synth.identity import Identity, albedo_texture, make_identity
from engine.synth.performance import make_performance
from engine.synth.world import HMCWorld, make_environment, make_sensor
from engine.io.atomic import atomic_path, write_text
from engine.synth.identity import identity_name

GENERATOR = "mia-studio synth v1"
Progress = Callable[[int, int, str], None]


@dataclass
class CaptureSpec:
    """Everything that makes one synthetic capture distinct; seeds make it reproducible."""

    identity: int
    index: int
    headset: str
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    environment_seed: int = 0
    session_seed: int = 0
    performance_seed: int = 0
    frames: int = 300
    segments: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return f"id{self.identity:03d}_c{self.index:02d}"

    def to_dict(self) -> dict:
        return asdict(self)


def headset_for(name: str, seed: int, cfg: SynthConfig) -> Headset:
    """Headset units are named; the same name and seed always give the same unit."""
    digits = int("".join(c for c in name if c.isdigit()) or 0)
    return make_headset(name, np.random.default_rng([seed, 7, digits]), cfg.headset)


def capture_plan(cfg: SynthConfig) -> list[CaptureSpec]:
    """The dataset's captures: each identity in several headsets, appearances and environments.

    A block with `first_identity` > 0 extends a world made with the same seed: new people
    (id<first>..), their own headset units and their own draws, so two blocks never share a name."""
    first = cfg.first_identity
    rng = np.random.default_rng([cfg.seed, 3] if first == 0 else [cfg.seed, 3, first])
    n_headsets = max(2, cfg.identities // 2)
    headset_base = first // 2
    plan = []
    for i in range(first, first + cfg.identities):
        for k in range(cfg.captures_per_identity):
            appearance = AppearanceConfig(
                beard=-1.0 if k == 0 else float(rng.choice([-1.0, 0.0, rng.uniform(0.3, 1.0)])),
                makeup=0.0 if k == 0 or rng.random() < 0.6 else float(rng.uniform(0.4, 1.0)),
                skin_gain=1.0 if k == 0 else float(rng.uniform(0.9, 1.1)))
            plan.append(CaptureSpec(i, k, f"hs{headset_base + int(rng.integers(n_headsets)):02d}", appearance,
                                    *(int(s) for s in rng.integers(0, 2**31, 3)), frames=cfg.frames_per_capture))
    return plan


def make_world(model: FaceModel, cfg: SynthConfig, ident: Identity, spec: CaptureSpec) -> tuple[HMCWorld, Headset]:
    headset = headset_for(spec.headset, cfg.seed, cfg)
    env_rng = np.random.default_rng([spec.environment_seed, 11])
    env = make_environment(env_rng, cfg.environment, cfg.image_size)
    sensor = make_sensor(env_rng, cfg.sensor, cfg.image_size)
    return HMCWorld(model, ident, headset, env, sensor, cfg.sensor, cfg.image_size, spec.appearance,
                    supersample=cfg.supersample), headset


def render_capture(out: Path, cfg: SynthConfig, spec: CaptureSpec, model: FaceModel | None = None,
                   progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
                   overwrite: bool = False) -> Path:
    """Render one capture with full ground truth into ``out`` (atomically).

    capture.json holds the headset's calibration (head seated nominally); ``head_pose.npy`` holds
    the per-frame head pose inside the headset (session slop plus drift), so the camera that saw
    frame t is ``calibration o head_pose[t]``."""
    model = model or load_face_model()
    ident = make_identity(model, spec.identity, cfg.seed, cfg.identity)
    world, headset = make_world(model, cfg, ident, spec)
    srng = np.random.default_rng([spec.session_seed, 13])
    slop = make_slop(srng, cfg.session)
    poses = session_poses(slop, spec.frames, cfg.fps, srng, cfg.session)
    perf = make_performance(model.expression_names, spec.frames, cfg.fps,
                            np.random.default_rng([spec.performance_seed, 17]), cfg.performance, spec.segments)
    noise = np.random.default_rng([spec.session_seed, 19])
    meta = CaptureMeta(
        subject_id=ident.name, headset_id=headset.headset_id, session_id=spec.name, fps=cfg.fps,
        frame_count=spec.frames, image_size=[cfg.image_size, cfg.image_size],
        cameras=[calib_from_camera(c, n) for c, n in zip(headset.cameras_at(cfg.image_size), CAMERA_NAMES)],
        storage=cfg.storage,
        provenance={"generator": GENERATOR, "seed": cfg.seed, "spec": spec.to_dict(),
                    "synth_config": cfg.to_dict(), "expression_names": model.expression_names,
                    IDENTITY_FIELD: ident.shape_weights.tolist()},
        topology=TopologyRef(**model.topology.describe()))
    with CaptureWriter(out, meta, overwrite=overwrite) as writer:
        for t in range(spec.frames):
            if cancel is not None and cancel():
                raise KeyboardInterrupt("cancelled")
            r = world.render(perf.intents[t], perf.gaze[t], poses[t], noise)
            writer.append(tuple(r.images), mesh=r.mesh if cfg.store_meshes else None,
                          expression=perf.intents[t], timestamp=t / cfg.fps,
                          visibility=r.visibility.astype(np.uint8), head_pose=poses[t],
                          blendshapes=ident.styled(perf.intents[t]), gaze=perf.gaze[t])
            if progress is not None:
                progress(t + 1, spec.frames, spec.name)
    world.renderer.release()
    return out


def write_subject(folder: Path, model: FaceModel, ident: Identity) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    topo = model.topology
    save_mesh(folder / "neutral.obj", ident.neutral(model), topo.faces)
    albedo = np.round(albedo_texture(model, ident) * 65535).astype(np.uint16)
    with atomic_path(folder / "albedo.png") as tmp_png:
        cv2.imwrite(str(tmp_png), albedo)
    info = {"subject_id": ident.name, "seed": ident.seed, "skin_albedo": ident.skin_albedo,
            "beard": ident.beard, "brow_darkness": ident.brow_darkness, "topology": topo.describe()}
    write_text(folder / "subject.json", json.dumps(info, indent=2))


def capture_is_complete(path: Path, spec: CaptureSpec) -> bool:
    try:
        meta = read_meta(path)
    except (CaptureError, OSError):
        return False
    return meta.frame_count == spec.frames and meta.provenance.get("spec", {}).get("identity") == spec.identity


def _render_job(args: tuple) -> str:
    out, cfg_dict, spec = args
    return str(render_capture(Path(out), SynthConfig.from_dict(cfg_dict), spec, overwrite=Path(out).exists()))


def generate_dataset(root: str | os.PathLike, cfg: SynthConfig, progress: Progress | None = None,
                     cancel: Callable[[], bool] | None = None, plan: list[CaptureSpec] | None = None,
                     jobs: int = 1) -> list[Path]:
    """Generate (or resume) a dataset; returns the capture folders. Raises ConfigError on a seed clash.

    ``jobs`` > 1 renders captures in that many processes (each with its own GL context); progress
    then advances per finished capture."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    plan = plan if plan is not None else capture_plan(cfg)
    manifest = {"generator": GENERATOR, "config": cfg.to_dict(), "captures": [s.to_dict() for s in plan]}
    mpath = root / "dataset.json"
    if mpath.exists():
        old = json.loads(mpath.read_text())
        try:  # through from_dict, so fields added since (at their defaults) still match
            same = json.loads(json.dumps(SynthConfig.from_dict(old.get("config", {})).to_dict())) == \
                json.loads(json.dumps(manifest["config"]))
        except (TypeError, ValueError):
            same = False
        if not same:
            raise ConfigError(f"{mpath}: this folder holds a dataset made with another configuration; "
                              "use a new folder or the same options to resume")
    else:
        write_text(mpath, json.dumps(manifest, indent=2))
    model = load_face_model()
    for i in sorted({s.identity for s in plan}):
        folder = root / "subjects" / identity_name(i)
        if not (folder / "subject.json").is_file():  # written last, atomically: the folder is whole
            write_subject(folder, model, make_identity(model, i, cfg.seed, cfg.identity))
    out = [root / "captures" / spec.name for spec in plan]
    total = sum(spec.frames for spec in plan)
    todo = {spec.name for spec, path in zip(plan, out) if not capture_is_complete(path, spec)}
    if jobs > 1 and len(todo) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed
        done = sum(spec.frames for spec in plan if spec.name not in todo)
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_render_job, (path, cfg.to_dict(), spec)): spec
                       for spec, path in zip(plan, out) if spec.name in todo}
            for fut in as_completed(futures):
                fut.result()
                done += futures[fut].frames
                if progress is not None:
                    progress(done, total, futures[fut].name)
                if cancel is not None and cancel():
                    for f in futures:
                        f.cancel()
                    raise KeyboardInterrupt("cancelled")
        return out
    done = 0
    for spec, path in zip(plan, out):
        if spec.name in todo:
            render_capture(path, cfg, spec, model, overwrite=path.exists(), cancel=cancel,
                           progress=None if progress is None else
                           (lambda k, n, name, base=done: progress(base + k, total, name)))
        done += spec.frames
        if progress is not None:
            progress(done, total, spec.name)
    return out
