"""Settings of neutral-scan registration, one dataclass per stage, so a report can record them all.

The defaults are tuned on synthetic scans of the kit's identities (remeshed, cropped, noisy, in other
units and poses; see ``engine/registration/synthetic.py`` and ``docs/registration.md``). Distances are
in millimetres after the unit conversion.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class ScanConfig:
    """How the scan surface is sampled for closest-point queries."""

    sample_spacing_mm: float = 0.8   # dense samples on the triangles (closest points need no rtree)
    max_samples: int = 400_000       # cap for huge scans (the spacing grows instead)
    border_margin_mm: float = 0.0    # samples this close to the open border also count as border ...
    border_margin_noise: float = 6.0  # ... plus this many times the scan's estimated vertex noise (mm):
    # a noisy scan's ragged edges (eye openings, a crop) pulled the face ~1 mm along itself (10x before
    # the fit used the measured vertices; 6x is better since: docs/registration.md, "Measured vertices")


@dataclass
class RigidConfig:
    """Automatic rigid alignment: PCA frames x 168 start rotations and nose-tip starts, then trimmed ICP."""

    coarse_points: int = 800         # template points used for the multi-start search
    coarse_scan_points: int = 8000   # scan samples it matches against (denser: less biased point-to-point)
    screen_points: int = 200         # template points of that screening
    screen_iterations: int = 4       # ICP steps every start rotation gets
    screen_keep: int = 16            # starts continued for coarse_iterations
    coarse_iterations: int = 20
    refine_starts: int = 6           # best coarse starts (per template) refined further
    refine_iterations: int = 20
    trim: float = 0.7                # fraction of template points kept (the rest may lie off a cropped scan)
    nose_directions: int = 200       # directions searched for the nose tip (most protruding point)
    nose_tips: int = 4               # candidate nose tips kept
    nose_rolls: int = 12             # turns about the looking direction tried at each tip
    head_search: bool = False        # also search with the whole-head template (the nose search made it redundant)


@dataclass
class IdentityFitConfig:
    """Alternating fit of identity coefficients and rigid pose with point-to-plane residuals."""

    modes: int = 100                 # identity modes fitted (the kit has 100)
    iterations: int = 12             # per phase: strong prior, then relaxing to the weak one
    prior_start: float = 5e-3        # Tikhonov weight on the coefficients, per match (unit-variance prior)
    prior: float = 5e-5              # the weak prior the continuation ends at
    starts: int = 3                  # distinct rigid poses given a strong-prior fit; the best one continues
    plausible_sigma: float = 4.0     # coefficients beyond this are not trusted from the weak prior
    max_distance_mm: float = 10.0    # matches further than this are ignored
    min_normal_dot: float = 0.5      # model and scan normals must agree this well
    model_normals_noise_mm: float = 0.15  # on scans noisier than this, residuals along the model's normals
    measured_vertices: bool = True   # weak-prior steps: scan vertices -> model surface (not model -> scan triangles)
    measured_limit: int = 20_000     # at most this many scan vertices per step (a fixed seed picks them)
    prior_from_noise: bool = True    # with measured vertices: relax to noise^2 / rows (MAP), not to ``prior``
    prior_floor: float = 1e-6        # ... but not below this per-row weight (clean scans read ~0.07 mm)


@dataclass
class RefineConfig:
    """Non-rigid refinement: per-vertex displacement along the normal with Laplacian smoothness."""

    iterations: int = 3
    smoothness: float = 2.0          # weight of the membrane term sum_edges (d_i - d_j)^2 (grows with scan noise)
    anchor: float = 0.01             # pull towards the model fit where the scan says nothing
    max_distance_mm: float = 3.0
    max_displacement_mm: float = 6.0
    min_normal_dot: float = 0.7
    model_normals_noise_mm: float = 0.15  # as IdentityFitConfig: the scan's normals are too noisy beyond this


@dataclass
class ReportConfig:
    """When to warn and when to refuse (a warning still writes the result)."""

    covered_mm: float = 2.0          # a vertex is covered when the scan lies this close
    warn_mean_mm: float = 0.8
    warn_p95_mm: float = 2.5
    warn_coverage: float = 0.6
    fail_coverage: float = 0.3
    fail_mean_mm: float = 1.5
    warn_identity_mm: float = 0.5     # the strong-prior face-model fit this far off: the pose may be wrong
    fail_identity_sigma: float = 5.0  # |coefficient| beyond this many standard deviations: not a face


@dataclass
class RegistrationConfig:
    """Everything ``register_scan`` needs beyond the scan itself."""

    scan: ScanConfig = field(default_factory=ScanConfig)
    rigid: RigidConfig = field(default_factory=RigidConfig)
    identity: IdentityFitConfig = field(default_factory=IdentityFitConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def to_dict(self) -> dict:
        return asdict(self)
