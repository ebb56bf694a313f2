"""Registration of a neutral face scan onto the model topology: the stages in order.

``register_scan`` (arrays) and ``register_file`` (a mesh file in, ``neutral.obj`` + report out) run:
check the scan -> units (given, or each plausible unit tried and the one whose rigid alignment
of the average face is closer kept) -> dense
samples -> rigid alignment (landmarks or automatic) -> identity fit -> non-rigid refinement ->
report and warnings. The result is in the model's frame and millimetres, vertex for vertex in the
model topology, so G can drive it like any neutral the project wrote.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engine.errors import MeshError
from engine.registration.blas import single_threaded_blas
from engine.registration.config import RegistrationConfig
from engine.registration.correspond import match, surface_distance
from engine.registration.identity_fit import IdentityFit, fit_identity
from engine.registration import landmarks as landmark_files
from engine.registration.landmarks import landmark_index, load_landmarks, parse_landmarks
from engine.registration.nonrigid import refine
from engine.registration.report import (RegistrationCancelled, RegistrationError, RegistrationReport, assess,
                                        report_path, residual_stats, save_report)
from engine.registration.rigid import Pose, align, kabsch
from engine.registration.scan import ScanSurface, check_scan, sample_surface
from engine.registration.template import Template, load_template
from engine.registration.units import unit_candidates

Progress = Callable[[int, int, str], None]
STAGES = 5
NOSE_TIP = 30  # iBUG-68 index of the nose tip


@dataclass
class RegistrationResult:
    """The registered neutral (model topology, model frame, mm) and its report."""

    verts: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    report: RegistrationReport


def _fit_quality(fit: IdentityFit, template: Template) -> tuple[float, float]:
    """(coverage of the visible skin, mean distance of the covered vertices) of an identity fit."""
    m = fit.strong.matches if fit.strong is not None else fit.matches
    coverage = float(m.valid[template.fit].mean())
    mean = float(np.abs(m.plane[m.valid]).mean()) if m.valid.any() else np.inf
    return coverage, mean


def _best_start(template: Template, scan: ScanSurface, poses: list[tuple[float, Pose]], cfg: RegistrationConfig,
                check_cancel: Callable[[], None]) -> Pose:
    """The rigid pose whose strong-prior identity fit explains the scan best (residual over coverage):
    the rigid score of the average face alone can prefer a pose a few millimetres off."""
    if len(poses) == 1:
        return poses[0][1]
    best = None
    for _, pose in poses:
        check_cancel()
        fit = fit_identity(template, scan, pose, cfg.identity, strong_only=True)
        coverage, mean = _fit_quality(fit, template)
        quality = mean / max(coverage, 1e-3) ** 2
        if best is None or quality < best[0]:
            best = (quality, pose)
    return best[1]


def _landmark_start(landmarks: dict[str, np.ndarray], factor: float, template: Template):
    names = list(landmarks)
    model_pts = template.mean[template.landmarks68[[landmark_index(n) for n in names]]]
    return kabsch(model_pts, np.array([landmarks[n] for n in names]) * factor)


def _landmark_unit(landmarks: dict[str, np.ndarray], candidates: list[tuple[str, float]], template: Template):
    """The candidate unit whose scale best matches the landmarks' spread against the mean face's."""
    names = list(landmarks)
    model_pts = template.mean[template.landmarks68[[landmark_index(n) for n in names]]]
    scan_pts = np.array([landmarks[n] for n in names])
    spread = np.linalg.norm(scan_pts - scan_pts.mean(0), axis=1).mean()
    model_spread = np.linalg.norm(model_pts - model_pts.mean(0), axis=1).mean()
    return min(candidates, key=lambda c: abs(np.log(spread * c[1] / model_spread)))


def register_scan(verts: np.ndarray, faces: np.ndarray | None, units: str | None = None,
                  landmarks: dict[str, np.ndarray] | None = None, config: RegistrationConfig | None = None,
                  progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
                  where: str = "scan") -> RegistrationResult:
    """Register a scan (its own vertices, triangles, units and pose) to the model topology."""
    with single_threaded_blas():
        return _register(verts, faces, units, landmarks, config or RegistrationConfig(), progress, cancel, where)


def _register(verts: np.ndarray, faces: np.ndarray | None, units: str | None,
              landmarks: dict[str, np.ndarray] | None, cfg: RegistrationConfig, progress: Progress | None,
              cancel: Callable[[], bool] | None, where: str) -> RegistrationResult:
    started = time.perf_counter()

    def step(stage: int, text: str) -> None:
        if cancel is not None and cancel():
            raise RegistrationCancelled(f"{where}: registration cancelled")
        if progress is not None:
            progress(stage, STAGES, text)

    def check_cancel() -> None:
        if cancel is not None and cancel():
            raise RegistrationCancelled(f"{where}: registration cancelled")

    step(0, "checking the scan…")
    verts, faces = check_scan(verts, faces, where)
    template = load_template()
    candidates = unit_candidates(verts, units)
    units_note = "given" if units else "detected from the scan's size"
    if landmarks and len(candidates) > 1:
        candidates = [_landmark_unit(landmarks, candidates, template)]
        units_note = "detected from the landmarks"
    aligned: list[tuple[float, str, ScanSurface, list[tuple[float, Pose]]]] = []
    for name, factor in candidates:
        step(1, f"aligning the face model to the scan ({name})…")
        scan = sample_surface(verts * factor, faces, cfg.scan)
        start = _landmark_start(landmarks, factor, template) if landmarks else None
        head = (template.head, template.head_normals) if cfg.rigid.head_search else None
        poses = align(template.skin, scan, cfg.rigid, start, check_cancel, head,
                      template.mean[template.landmarks68[NOSE_TIP]])
        aligned.append((poses[0][0], name, scan, poses))
    score, unit, scan, poses = min(aligned, key=lambda a: a[0])
    if len(aligned) > 1:
        units_note = (f"detected: {' or '.join(a[1] for a in aligned)} fit the scan's size; {unit} aligned the "
                      f"average face closer ({score:.1f} mm against "
                      f"{min(a[0] for a in aligned if a[1] != unit):.1f} mm); pass --units to be sure")
    step(2, "fitting the face model's identity…")
    pose = _best_start(template, scan, poses[: cfg.identity.starts], cfg, check_cancel)
    fit = fit_identity(template, scan, pose, cfg.identity)
    coverage, identity_mean = _fit_quality(fit, template)
    step(3, "refining the surface…")
    verts_out = refine(template, scan, fit.pose, fit.verts, cfg.refine)
    step(4, "measuring the fit…")
    m = match(verts_out, template.normals(verts_out), scan, fit.pose, cfg.report.covered_mm,
              cfg.refine.min_normal_dot, template.fit)
    residual = np.where(m.valid, surface_distance(m, scan.spacing), np.nan)
    mean, p95, worst, coverage = residual_stats(residual, template.fit)
    strong = fit.strong.coefficients if fit.strong is not None else fit.coefficients
    warnings = assess(mean, p95, coverage, strong, identity_mean, cfg.report, where)
    report = RegistrationReport(
        scan=where, scan_vertices=int(len(verts)), scan_faces=int(len(faces)), units=unit, units_note=units_note,
        residual_mm=residual, mean_mm=mean, p95_mm=p95, max_mm=worst, coverage=coverage,
        identity_fit_mean_mm=identity_mean, identity=[round(float(b), 5) for b in fit.coefficients],
        pose={"model_to_scan_mm": fit.pose.to_dict()}, landmarks=sorted(landmarks or {}), warnings=warnings,
        seconds=round(time.perf_counter() - started, 3), scan_noise_mm=round(float(scan.noise_mm), 3),
        topology={"name": template.topology_name, "vertex_count": template.vertex_count,
                  "hash": template.topology_hash},
        config=cfg.to_dict())
    step(5, "done")
    return RegistrationResult(verts_out.astype(np.float32), template.faces, template.uvs, report)


def load_scan(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """A scan file's vertices and triangles, with coincident vertices merged (STL stores each
    triangle's corners separately, which would make every edge an open border)."""
    import trimesh

    from engine.io.mesh import read_trimesh
    path = Path(path)
    loaded = read_trimesh(path, what="scan")
    try:
        if isinstance(loaded, trimesh.Scene):
            geoms = [g for g in loaded.dump() if hasattr(g, "vertices")] if loaded.geometry else []
            loaded = trimesh.util.concatenate(geoms) if geoms else None
    except Exception as err:  # trimesh raises many types for a broken file
        raise MeshError(f"{path}: could not be read as a mesh ({type(err).__name__}: {err})") from err
    if loaded is None or not hasattr(loaded, "vertices") or len(loaded.vertices) == 0:
        raise MeshError(f"{path}: the file holds no vertices; expected a triangle mesh of a face")
    verts = np.asarray(loaded.vertices, np.float64)
    faces = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))), np.int64).reshape(-1, 3)
    if len(faces) and len(verts):
        scale = max(float(np.ptp(verts, axis=0).max()), 1e-12)
        keys = np.round(verts / (scale * 1e-7)).astype(np.int64)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        if len(first) < len(verts):
            verts, faces = verts[first], inverse.ravel()[faces]
    return verts, faces


def register_file(scan_path: str | os.PathLike, out_path: str | os.PathLike, units: str | None = None,
                  landmarks_path: str | os.PathLike | None = None, config: RegistrationConfig | None = None,
                  progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
                  landmarks: dict | list | None = None) -> RegistrationResult:
    """Register a scan file and write the neutral (OBJ/PLY by suffix) and its report beside it.

    Landmarks come from a file (``landmarks_path``) or as data (``landmarks``: the same forms as the
    file, e.g. points picked in the neutral panel); the ones used are saved beside the result as
    ``<stem>.landmarks.json``."""
    from engine.io.mesh import save_mesh
    out_path = Path(out_path)
    if out_path.suffix.lower() not in (".obj", ".ply"):
        raise MeshError(f"{out_path}: the registered neutral must be written as .obj or .ply")
    verts, faces = load_scan(scan_path)
    if landmarks is not None:
        landmarks = parse_landmarks(landmarks, f"landmarks picked on {scan_path}")
    elif landmarks_path:
        landmarks = load_landmarks(landmarks_path)
    result = register_scan(verts, faces, units, landmarks, config, progress, cancel, where=str(scan_path))
    if cancel is not None and cancel():
        raise RegistrationCancelled(f"{scan_path}: registration cancelled; nothing was written")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_mesh(out_path, result.verts, result.faces)  # like the dataset neutrals: no UVs, no material files
    save_report(result.report, report_path(out_path))
    if landmarks:
        landmark_files.save_landmarks(landmarks, landmark_files.landmarks_path(out_path))
    return result


__all__ = ["RegistrationError", "RegistrationResult", "register_file", "register_scan", "load_scan"]
