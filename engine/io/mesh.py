"""Mesh files: reading any format (OBJ/PLY/GLB/...) through trimesh, checked against the model
topology with clear errors, and writing them (neutrals through trimesh, driven-frame sequences
directly as OBJ/PLY); every write is atomic (engine.io.atomic).

Vertex order is what makes a neutral mesh usable by the shape network, so loading never lets trimesh
merge or reorder vertices (``process=False``) and checks count and finiteness against the topology.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import MeshError
from engine.io.atomic import atomic_path, write_bytes, write_text

MESH_SUFFIXES = (".obj", ".ply", ".glb", ".gltf", ".off", ".stl")


@dataclass
class MeshInfo:
    """What the neutral-mesh panel shows about a loaded file."""

    path: str
    vertex_count: int
    face_count: int
    units: str
    bbox_mm: tuple[float, float, float]
    matches_topology: bool
    message: str


def read_trimesh(path: str | os.PathLike, what: str = "mesh", **options: Any) -> Any:
    """trimesh's object for a mesh file (vertices in file order, nothing merged): a missing file,
    an unknown suffix and anything trimesh raises on a broken file become one MeshError."""
    import trimesh
    path = Path(path)
    if not path.exists():
        raise MeshError(f"{path}: no such {what} file")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise MeshError(f"{path}: unsupported mesh format {path.suffix!r}; expected one of {MESH_SUFFIXES}")
    try:
        return trimesh.load(path, process=False, **options)
    except Exception as err:  # trimesh raises many types for a broken file
        raise MeshError(f"{path}: could not be read as a mesh ({type(err).__name__}: {err})") from err


def load_mesh(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float32 and faces (F, 3) int32 of a mesh file, in file order."""
    path = Path(path)
    mesh = read_trimesh(path, force="mesh")
    verts = np.asarray(mesh.vertices, np.float32)
    faces = np.asarray(mesh.faces, np.int32)
    if verts.ndim != 2 or verts.shape[0] == 0:
        raise MeshError(f"{path}: the file holds no vertices")
    if not np.isfinite(verts).all():
        bad = int(np.argmax(~np.isfinite(verts).all(1)))
        raise MeshError(f"{path}: vertex {bad} is NaN or infinite")
    return verts, faces


def save_mesh(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray | None = None) -> Path:
    """Write a mesh atomically (temp file + rename) in the format of the suffix."""
    import trimesh
    path = Path(path)
    visual = trimesh.visual.TextureVisuals(uv=uvs) if uvs is not None else None
    mesh = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces), visual=visual, process=False)
    with atomic_path(path) as tmp:
        mesh.export(tmp)
    return path


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray | None,
              texture_png: str | None = None) -> None:
    """A plain OBJ (v, vt, f v/vt) with an optional material pointing at a texture PNG, written
    directly (no trimesh object): the fast path for one file per driven frame of a sequence."""
    out = io.StringIO()
    out.write("# MIA Studio driven mesh (mm)\n")
    if texture_png:
        mtl = path.with_suffix(".mtl")
        write_text(mtl, f"newmtl face\nKd 1 1 1\nmap_Kd {texture_png}\n")
        out.write(f"mtllib {mtl.name}\nusemtl face\n")
    np.savetxt(out, vertices, fmt="v %.4f %.4f %.4f")
    f = np.asarray(faces) + 1
    if uvs is not None:
        np.savetxt(out, uvs, fmt="vt %.6f %.6f")
        np.savetxt(out, np.repeat(f, 2, axis=1), fmt="f %d/%d %d/%d %d/%d")
    else:
        np.savetxt(out, f, fmt="f %d %d %d")
    write_text(path, out.getvalue())


def write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """A binary little-endian PLY of one mesh."""
    v = np.asarray(vertices, "<f4")
    f = np.asarray(faces, "<i4")
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(v)}\nproperty float x\n"
              f"property float y\nproperty float z\nelement face {len(f)}\n"
              "property list uchar int vertex_indices\nend_header\n").encode()
    tri = np.empty(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    tri["n"], tri["i"] = 3, f
    write_bytes(path, header + v.tobytes() + tri.tobytes())


def guess_units(vertices: np.ndarray) -> tuple[str, float]:
    """('mm'|'cm'|'m', factor to mm) from the face's size: a head is ~150 mm across."""
    extent = float(np.ptp(vertices, axis=0).max())
    if extent < 1.0:
        return "m", 1000.0
    if extent < 40.0:
        return "cm", 10.0
    return "mm", 1.0


def check_topology(vertices: np.ndarray, faces: np.ndarray | None, vertex_count: int, topology_faces: np.ndarray | None,
                   topology_name: str, path: str = "mesh") -> str:
    """'' when the mesh fits the topology, else why not (what was expected, what was found)."""
    if len(vertices) != vertex_count:
        return (f"{path}: expected {vertex_count} vertices (topology {topology_name}), got {len(vertices)}; "
                "the neutral mesh must be registered to the model topology (same vertex order)")
    if faces is not None and topology_faces is not None and len(faces) and len(faces) == len(topology_faces) \
            and not np.array_equal(np.sort(faces, 1), np.sort(topology_faces, 1)):
        return f"{path}: vertex count matches but the triangles differ from topology {topology_name}"
    return ""


def load_neutral(path: str | os.PathLike, vertex_count: int, topology_faces: np.ndarray | None = None,
                 topology_name: str = "model") -> tuple[np.ndarray, MeshInfo]:
    """A neutral mesh converted to mm, with the info the GUI shows; raises MeshError on a mismatch."""
    verts, faces = load_mesh(path)
    units, scale = guess_units(verts)
    verts = verts * scale
    message = check_topology(verts, faces, vertex_count, topology_faces, topology_name, str(path))
    info = MeshInfo(str(path), len(verts), len(faces), units, tuple(float(x) for x in np.ptp(verts, 0)),
                    not message, message)
    if message:
        raise MeshError(message, info=info)
    return verts.astype(np.float32), info
