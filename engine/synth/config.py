"""Every knob of the synthetic HMC world, as dataclasses (so a dataset folder records how it was made).

A nuisance factor is *held fixed* by giving it a spread of 0 (e.g. ``HeadsetConfig.placement_mm=0``,
``SessionConfig.slop_rot_deg=0``) and *drawn* otherwise; draws come from seeded generators so a
dataset is reproducible from its seed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


def _from_dict(cls, d: dict):
    known = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}; expected some of {sorted(known)}")
    kw = {}
    for k, v in d.items():
        sub = _NESTED.get((cls.__name__, k))
        kw[k] = _from_dict(sub, v) if sub is not None and isinstance(v, dict) else v
    return cls(**kw)


@dataclass
class IdentityConfig:
    """How identities differ: shape, skin, hair, and how they perform the same expression weights."""

    identity_modes: int = 40          # identity modes used (of the kit's 100)
    identity_scale: float = 1.0       # std of identity weights
    texture_size: int = 256           # albedo texture resolution (UV face tile)
    skin_albedo: tuple[float, float] = (0.45, 0.75)   # IR skin albedo range
    brow_darkness: tuple[float, float] = (0.25, 0.6)  # albedo drop on the brows
    beard_probability: float = 0.3    # chance an identity has a beard/stubble in its base look
    style_gain_std: float = 0.25      # log-normal per-blendshape gain (expression style)
    style_crosstalk: float = 0.15     # strength of cross-talk between related blendshapes
    style_asymmetry: float = 0.15     # L/R gain asymmetry


@dataclass
class AppearanceConfig:
    """Appearance changes of one identity across captures (the paper's beard/make-up)."""

    beard: float = -1.0               # -1: identity default; 0 clean-shaven .. 1 full beard
    makeup: float = 0.0               # 0 none .. 1 heavy eye make-up and lipstick
    skin_gain: float = 1.0            # overall albedo scale (e.g. lotion, tan)


@dataclass
class HeadsetConfig:
    """A headset's three near-field cameras: nominal rig plus per-unit assembly variation."""

    eye_fov_deg: float = 72.0
    mouth_fov_deg: float = 80.0
    distortion_k1: float = -0.18      # barrel distortion of the wide lenses
    distortion_k2: float = 0.03
    placement_mm: float = 2.0         # std of per-headset camera position error
    placement_deg: float = 2.5        # std of per-headset camera orientation error
    focal_variation: float = 0.05     # relative std of per-headset focal length
    led_power: tuple[float, float] = (0.85, 1.15)  # range of per-camera LED power


@dataclass
class SessionConfig:
    """How the headset sits on the head in one session (slop) and while it is worn."""

    slop_rot_deg: float = 2.5         # std of the rigid head-in-headset rotation per session
    slop_trans_mm: float = 2.5        # std of the rigid head-in-headset translation per session
    jitter_rot_deg: float = 0.3       # slow drift within the session
    jitter_trans_mm: float = 0.3


@dataclass
class EnvironmentConfig:
    """What is behind the face in each camera and how much ambient IR leaks into the headset."""

    ambient: tuple[float, float] = (0.02, 0.12)
    background_level: tuple[float, float] = (0.05, 0.35)
    background_texture: float = 0.5   # amount of structure in the background (0 = flat)


@dataclass
class SensorConfig:
    """Camera sensor response."""

    gain: tuple[float, float] = (0.9, 1.2)
    gamma: float = 0.6
    read_noise: float = 0.012
    shot_noise: float = 0.02
    vignetting: float = 0.45          # relative fall-off at the image corner


@dataclass
class PerformanceConfig:
    """What the subject does during a capture: segment kinds and their share of the frames."""

    segments: tuple[str, ...] = ("peaks", "range_of_motion", "speech", "conversation")
    blink_interval_s: tuple[float, float] = (2.0, 6.0)
    saccade_interval_s: tuple[float, float] = (0.25, 1.2)
    gaze_range_deg: float = 20.0


@dataclass
class SynthConfig:
    """A whole synthetic dataset: sizes, counts and the nuisance-factor configs."""

    image_size: int = 96
    fps: float = 30.0
    frames_per_capture: int = 300
    identities: int = 8
    captures_per_identity: int = 2
    first_identity: int = 0          # identities are id<first>..; a block that extends a world
    storage: str = "ffv1"
    supersample: int = 1             # render at k x size and average (anti-aliasing)
    store_meshes: bool = True        # False: only compact ground truth (engine.synth.ground_truth)
    seed: int = 0
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    headset: HeadsetConfig = field(default_factory=HeadsetConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    environment: EnvironmentConfig = field(default_factory=EnvironmentConfig)
    sensor: SensorConfig = field(default_factory=SensorConfig)
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SynthConfig":
        return _from_dict(cls, d)


_NESTED = {("SynthConfig", "identity"): IdentityConfig, ("SynthConfig", "headset"): HeadsetConfig,
           ("SynthConfig", "session"): SessionConfig, ("SynthConfig", "environment"): EnvironmentConfig,
           ("SynthConfig", "sensor"): SensorConfig, ("SynthConfig", "performance"): PerformanceConfig}
