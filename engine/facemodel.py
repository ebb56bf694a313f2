"""The morphable face model of the synthetic world and of every mesh the product handles.

ICT-FaceKit Light (MIT, notice in ``resources/LICENSE-ICT-FaceKit``), converted to millimetres, with
identity modes, ARKit-named expression modes, eyeballs that rotate with gaze, jaw/teeth (the kit's
jaw blendshapes carry the teeth and gums), and per-vertex region masks.

Two vertex sets matter:
- the *full* kit mesh (24,591 vertices) is what the synthetic headset renders (face, mouth socket,
  teeth, gums, eyeballs), so the mouth camera sees teeth and tongue when the jaw opens;
- the *model topology* ``ict-narrow-iris`` (the kit's narrow face plus the front cap of both eyes:
  iris, pupil and cornea, which gaze moves)
  is what the MIA shape network predicts, what captures store as ground truth, and what a user's
  neutral mesh must match. It plays the role of the paper's 7,306-vertex face mesh.

Region masks (the paper's W_S regions and the eyes/mouth/face error metrics) are chosen from the
model's own blendshapes, not drawn by hand: a vertex belongs to *eyes* when the eyelid/gaze/squint
blendshapes move it by more than 0.5 mm (plus the irises), to *mouth* when the mouth and jaw
blendshapes move it by more than 1 mm, it lies within 40 mm of the mouth centre and below the base
of the nose; a vertex both
would claim goes to the nearer centre (eye or mouth, in the frontal plane); *face* is every vertex
of the model topology.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
KIT_PATH = RESOURCES / "ict_facekit.npz"
CM_TO_MM = 10.0
TOPOLOGY_NAME = "ict-narrow-iris"
EYE_BLENDSHAPE_PREFIXES = ("eyeBlink", "eyeSquint", "eyeWide", "eyeLook")
MOUTH_BLENDSHAPE_PREFIXES = ("mouth", "jaw")
EYE_MOVE_MM = 0.5
MOUTH_MOVE_MM = 1.0
MOUTH_RADIUS_MM = 40.0
MAX_GAZE_RAD = np.deg2rad(30.0)
CORNEA_COS = np.cos(np.deg2rad(50.0))
MIRROR_TOLERANCE_MM = 0.1
MIRROR_X = (-1.0, 1.0, 1.0)  # the face's midplane is x = 0: a mirror negates x


@dataclass(frozen=True)
class Topology:
    """A vertex subset of the kit with its own triangles: what meshes of one topology share."""

    name: str
    kit_index: np.ndarray  # (V,) int indices into the full kit mesh
    faces: np.ndarray  # (F, 3) int32, indices into the subset
    uvs: np.ndarray  # (V, 2) float32 per-vertex texture coordinates

    @property
    def vertex_count(self) -> int:
        return int(len(self.kit_index))

    @cached_property
    def hash(self) -> str:
        """Fingerprint of the connectivity, stored in checkpoints and captures to catch mismatches."""
        h = hashlib.sha1()
        h.update(np.int64(self.vertex_count).tobytes())
        h.update(np.ascontiguousarray(self.faces, dtype=np.int32).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        return {"name": self.name, "vertex_count": self.vertex_count, "hash": self.hash}


def _subset_faces(faces: np.ndarray, keep: np.ndarray, n_total: int) -> np.ndarray:
    remap = np.full(n_total, -1, np.int64)
    remap[keep] = np.arange(len(keep))
    sub = remap[faces]
    return sub[(sub >= 0).all(1)].astype(np.int32)


class FaceModel:
    """The kit in millimetres with identity/expression modes, gaze-rotated eyeballs and regions."""

    def __init__(self, path: Path | str = KIT_PATH):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"face model not found: {path} (expected the ICT-FaceKit npz)")
        d = np.load(path)
        self.neutral = d["neutral"].astype(np.float32) * CM_TO_MM
        self.identity_modes = d["identity_modes"].astype(np.float32) * CM_TO_MM
        self.expression_names: list[str] = [str(n) for n in d["expression_names"]]
        self.expression_modes = d["expression_modes"].astype(np.float32) * CM_TO_MM
        self.faces = d["faces"].astype(np.int32)
        self.kit_uvs = d["uvs"].astype(np.float32)
        self.faces_uv = d["faces_uv"].astype(np.int32)
        self.ranges = {str(n): (int(a), int(b)) for n, (a, b) in zip(d["geometry_names"], d["geometry_ranges"])}
        self.landmarks68 = d["landmarks68"].astype(np.int64)
        self._expr_flat = self.expression_modes.reshape(len(self.expression_names), -1)
        self._eye_centres = {side: self._eyeball_centre(side) for side in ("left", "right")}

    # ----- sizes and names
    @property
    def vertex_count(self) -> int:
        return int(self.neutral.shape[0])

    @property
    def identity_dim(self) -> int:
        return int(self.identity_modes.shape[0])

    @property
    def expression_dim(self) -> int:
        return len(self.expression_names)

    def expression_index(self, name: str) -> int:
        try:
            return self.expression_names.index(name)
        except ValueError:
            raise KeyError(f"unknown expression {name!r}; the model has {self.expression_names}") from None

    def vertex_range(self, name: str) -> np.ndarray:
        a, b = self.ranges[name]
        return np.arange(a, b)

    # ----- geometry
    def identity_shape(self, identity: np.ndarray) -> np.ndarray:
        """Neutral face of an identity: the kit neutral plus weighted identity modes (mm)."""
        identity = np.asarray(identity, np.float32)
        k = identity.shape[0]
        return self.neutral + np.tensordot(identity, self.identity_modes[:k], axes=1)

    def expressed(self, identity_neutral: np.ndarray, expression: np.ndarray,
                  gaze: np.ndarray | None = None) -> np.ndarray:
        """Full-kit mesh for expression weights (E,) and gaze (2 eyes x [yaw, pitch] radians)."""
        expression = np.asarray(expression, np.float32)
        if expression.shape != (self.expression_dim,):
            raise ValueError(f"expression weights must have shape ({self.expression_dim},), got {expression.shape}")
        verts = identity_neutral + (expression @ self._expr_flat).reshape(-1, 3)
        if gaze is not None:
            self.rotate_eyes(verts, np.asarray(gaze, np.float32), identity_neutral)
        return verts

    def _eyeball_centre(self, side: str, verts: np.ndarray | None = None) -> np.ndarray:
        v = (self.neutral if verts is None else verts)[slice(*self.ranges[f"eyeball_{side}"])]
        return 0.5 * (v.min(0) + v.max(0))

    def rotate_eyes(self, verts: np.ndarray, gaze: np.ndarray, reference: np.ndarray) -> None:
        """Rotate each eyeball in place about its centre: yaw about y, pitch about x (clipped)."""
        gaze = np.clip(gaze, -MAX_GAZE_RAD, MAX_GAZE_RAD)
        for eye, side in enumerate(("left", "right")):
            yaw, pitch = float(gaze[eye, 0]), float(gaze[eye, 1])
            cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
            rot = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], np.float32) @ \
                np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]], np.float32)
            sl = slice(*self.ranges[f"eyeball_{side}"])
            c = self._eyeball_centre(side, reference)
            verts[sl] = (verts[sl] - c) @ rot.T + c

    # ----- topologies
    @cached_property
    def topology(self) -> Topology:
        """The model topology: narrow face + irises, what G predicts and captures store."""
        keep = np.concatenate([self.vertex_range("narrow_face"), self.cornea("left"), self.cornea("right")])
        faces = _subset_faces(self.faces, keep, self.vertex_count)
        return Topology(TOPOLOGY_NAME, keep, faces, self.vertex_uvs[keep])

    def cornea(self, side: str) -> np.ndarray:
        """Kit vertices of the front cap of an eye (iris and pupil under the cornea), what gaze moves."""
        idx = self.vertex_range(f"iris_{side}")
        d = self.neutral[idx] - self._eye_centres[side]
        return idx[d[:, 2] / np.linalg.norm(d, axis=1) > CORNEA_COS]

    @cached_property
    def vertex_uvs(self) -> np.ndarray:
        """One UV per kit vertex (its first triangle corner's); seams only matter for rendering."""
        uv = np.zeros((self.vertex_count, 2), np.float32)
        uv[self.faces[::-1].ravel()] = self.kit_uvs[self.faces_uv[::-1].ravel()]
        return uv

    @cached_property
    def render_index(self) -> np.ndarray:
        """Kit vertices the headset renders: all of them (the neck and head edge show in the mouth camera)."""
        return np.arange(self.vertex_count)

    def to_topology(self, verts: np.ndarray) -> np.ndarray:
        """Full-kit mesh(es) (..., 24591, 3) to the model topology (..., V, 3)."""
        return verts[..., self.topology.kit_index, :]

    # ----- regions
    def _max_move(self, prefixes: tuple[str, ...]) -> np.ndarray:
        idx = [i for i, n in enumerate(self.expression_names) if n.startswith(prefixes)]
        return np.linalg.norm(self.expression_modes[idx], axis=2).max(0)

    def uses_topology(self, topology: dict) -> bool:
        """Whether meshes of `topology` ({"vertex_count", "hash"}: a checkpoint's or a capture's) are in
        this model's topology, so its faces and region masks apply to them. An unknown (empty or
        absent) hash is matched by the vertex count alone."""
        return (int(topology.get("vertex_count", -1)) == self.topology.vertex_count
                and topology.get("hash", "") in (self.topology.hash, ""))

    @cached_property
    def region_masks(self) -> dict[str, np.ndarray]:
        """Boolean (V,) masks over the model topology for 'eyes', 'mouth' and 'face' (see module doc)."""
        kit = self.topology.kit_index
        d_mouth = np.linalg.norm(self.neutral[:, :2] - self.mouth_centre[:2], axis=1)
        d_eye = np.min([np.linalg.norm(self.neutral[:, :2] - self.eye_centre(s)[:2], axis=1)
                        for s in ("left", "right")], axis=0)
        eyes = (self._max_move(EYE_BLENDSHAPE_PREFIXES) > EYE_MOVE_MM) & (d_eye < d_mouth)
        for side in ("left", "right"):
            eyes[self.cornea(side)] = True
        below_nose = self.neutral[:, 1] < self.neutral[self.landmarks68[33], 1]  # under the subnasale
        mouth = ((self._max_move(MOUTH_BLENDSHAPE_PREFIXES) > MOUTH_MOVE_MM) & (d_mouth < MOUTH_RADIUS_MM)
                 & (d_mouth <= d_eye) & below_nose)
        return {"eyes": eyes[kit], "mouth": mouth[kit], "face": np.ones(len(kit), bool)}

    @cached_property
    def mirror_index(self) -> np.ndarray:
        """(V,) for each model-topology vertex, the vertex at its mirror image across the face's
        midplane (x -> -x): the kit is left-right symmetric to 0.05 mm, so this is a permutation
        that is its own inverse. Test-time mirroring (engine/runtime/averaging.py) uses it."""
        from scipy.spatial import cKDTree
        verts = self.neutral[self.topology.kit_index]
        dist, index = cKDTree(verts).query(verts * np.array(MIRROR_X, np.float32))
        if dist.max() > MIRROR_TOLERANCE_MM or not np.array_equal(index[index], np.arange(len(index))):
            raise ValueError(f"the face model is not left-right symmetric (a vertex's mirror image is "
                             f"{dist.max():.3f} mm from the nearest vertex): no mirror map")
        return index

    @cached_property
    def mouth_centre(self) -> np.ndarray:
        return self.neutral[slice(*self.ranges["mouth_socket"])].mean(0)

    def eye_centre(self, side: str) -> np.ndarray:
        return self._eye_centres[side]


_MODEL: FaceModel | None = None


def mirror_meshes(meshes: np.ndarray, mirror_index: np.ndarray) -> np.ndarray:
    """(..., V, 3) meshes mirrored across the face's midplane, renumbered by `mirror_index` so they
    stay in the topology (numpy; engine/runtime/export.py's ShapeGraph does the same in its graph)."""
    return (np.asarray(meshes, np.float32) * np.array(MIRROR_X, np.float32))[..., mirror_index, :]


def mirror_index_for(topology: dict) -> np.ndarray:
    """The face model's mirror map (FaceModel.mirror_index) for meshes of `topology` (a checkpoint's
    or a dataset's); NoMirrorError when that is another topology, for which no map is known."""
    from engine.errors import NoMirrorError
    fm = load_face_model()
    if not fm.uses_topology(topology):
        raise NoMirrorError(f"mirroring needs the face model's topology ({fm.topology.describe()}); "
                          f"these meshes are in {topology}")
    return fm.mirror_index


def load_face_model() -> FaceModel:
    """The shipped face model, loaded once per process (it takes ~0.5 s and 150 MB)."""
    global _MODEL
    if _MODEL is None:
        _MODEL = FaceModel()
    return _MODEL
