"""The quality report of one registration: per-vertex residuals, summary numbers, warnings, provenance.

The residual of a vertex is its distance to the scan surface (point-to-plane at the nearest sample);
vertices the scan does not cover (no valid match within ``covered_mm``, see ``correspond.py``) have
none (NaN here, ``null`` in JSON) and count against coverage, the share of the model's visible skin
the scan covers. The report is written beside the registered mesh as ``<stem>.registration.json`` and
is what the neutral-mesh panel's heat map shows. ``assess`` turns the numbers into warnings, or into a
``RegistrationError`` when the scan is clearly not a usable face.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import MeshError
from engine.registration.config import ReportConfig
from engine.io.atomic import write_text

REPORT_SUFFIX = ".registration.json"
SCHEMA_VERSION = 1


class RegistrationError(MeshError):
    """A scan that cannot be registered (not a face, a fragment, unreadable); the message says why."""


class RegistrationCancelled(RegistrationError):
    """The user stopped the registration; nothing was written."""


@dataclass
class RegistrationReport:
    """What a registration did and how well it fits; JSON beside the result."""

    scan: str
    scan_vertices: int
    scan_faces: int
    units: str
    units_note: str
    residual_mm: np.ndarray        # (V,) NaN where the scan does not cover the vertex
    mean_mm: float
    p95_mm: float
    max_mm: float
    coverage: float
    identity_fit_mean_mm: float
    identity: list[float]
    pose: dict
    landmarks: list[str]
    warnings: list[str]
    seconds: float = 0.0
    scan_noise_mm: float = 0.0     # estimated vertex noise of the scan (mm), see scan.estimate_noise
    topology: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["schema_version"] = SCHEMA_VERSION
        d["residual_mm"] = [None if not np.isfinite(r) else round(float(r), 4) for r in self.residual_mm]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RegistrationReport:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["residual_mm"] = np.array([np.nan if r is None else r for r in d["residual_mm"]], np.float64)
        return cls(**d)

    def summary(self) -> str:
        """One line for a status bar or a terminal."""
        return (f"residual mean {self.mean_mm:.2f} mm, 95th percentile {self.p95_mm:.2f} mm, "
                f"coverage {100 * self.coverage:.0f}% of the face ({self.units})")


def report_path(mesh_path: str | os.PathLike) -> Path:
    """Where the report of a registered mesh lives: ``neutral.obj`` -> ``neutral.registration.json``."""
    p = Path(mesh_path)
    return p.with_name(p.stem + REPORT_SUFFIX)


def save_report(report: RegistrationReport, path: str | os.PathLike) -> Path:
    return write_text(path, json.dumps(report.to_dict(), indent=1))


def load_report(path: str | os.PathLike) -> RegistrationReport:
    path = Path(path)
    try:
        return RegistrationReport.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise MeshError(f"{path}: not a registration report ({err})") from None


def residual_stats(residual: np.ndarray, visible: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, p95, max, coverage) of the covered residuals over the visible vertices."""
    r = residual[visible]
    covered = np.isfinite(r)
    if not covered.any():
        return float("nan"), float("nan"), float("nan"), 0.0
    c = r[covered]
    return float(c.mean()), float(np.percentile(c, 95)), float(c.max()), float(covered.mean())


def assess(mean: float, p95: float, coverage: float, identity: np.ndarray, identity_mean: float,
           cfg: ReportConfig, where: str) -> list[str]:
    """Warnings for a usable but doubtful result; raises RegistrationError for an unusable one."""
    if coverage < cfg.fail_coverage:
        raise RegistrationError(
            f"{where}: the scan covers only {100 * coverage:.0f}% of the face (at least "
            f"{100 * cfg.fail_coverage:.0f}% is needed): it is a fragment (e.g. only the nose) or not a face; "
            "scan the whole front of the face from ear to ear and brow to chin")
    sigma = float(np.abs(identity).max()) if len(identity) else 0.0
    if sigma > cfg.fail_identity_sigma:
        raise RegistrationError(
            f"{where}: the scan does not look like a face: the face model can only follow it with an identity "
            f"{sigma:.1f} standard deviations from the average face (faces stay within ~4), or its pose was not "
            "found automatically; check that this is a scan of a neutral face, or give a few landmarks "
            "(mia register --landmarks)")
    if identity_mean > cfg.fail_mean_mm:
        raise RegistrationError(
            f"{where}: the scan does not look like a face: the best face-model fit stays {identity_mean:.1f} mm "
            f"from it on average (a face scan fits within ~{cfg.fail_mean_mm:g} mm), or its pose was not found "
            "automatically; check that this is a scan of a neutral face, or give a few landmarks "
            "(mia register --landmarks)")
    warnings = []
    if coverage < cfg.warn_coverage:
        warnings.append(f"open fragment: the scan covers {100 * coverage:.0f}% of the face; the rest "
                        "comes from the face model's fit, not from the scan")
    if identity_mean > cfg.warn_identity_mm:
        warnings.append(f"uncertain pose: the face model fits the scan only within {identity_mean:.2f} mm on average "
                        f"(a face scan in the right pose fits within ~{cfg.warn_identity_mm:g} mm): the automatic "
                        "alignment may have put the face in the wrong place, or the scan is unusual; check the "
                        "heat map, or give a few landmarks (mia register --landmarks)")
    if mean > cfg.warn_mean_mm or p95 > cfg.warn_p95_mm:
        warnings.append(f"poor fit: the registered face is {mean:.2f} mm from the scan on average "
                        f"(95th percentile {p95:.2f} mm; expected under {cfg.warn_mean_mm} / {cfg.warn_p95_mm} mm): "
                        "the scan may be noisy, not neutral, or not a face; check the heat map")
    return warnings
