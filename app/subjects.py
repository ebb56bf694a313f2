"""Which subjects the studio can drive, and where each one's neutral mesh and avatar are.

A subject is drivable with only a neutral mesh S_N (shape through G); it also gets a texture when
the model has its adaptation layer F_i and an avatar decoder D_i is found. Neutral meshes and
avatars come from, in order: a mesh the user loaded, the model checkpoint itself, and subject
folders ``<root>/<name>/neutral.obj`` (+ ``avatar/avatar.pt``) under the shipped
``resources/subjects`` and the ``subjects/`` folder of the dataset a capture belongs to.
"""
from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from engine.io.layout import avatar_folder, neutral_file


class NeutralSource(Enum):
    """Where a subject's neutral mesh comes from (what code decides on; ``origin`` is for people)."""

    LOADED = "loaded"  # a mesh file the user loaded
    MODEL = "model"  # the model checkpoint's own neutral
    FOLDER = "folder"  # <root>/<name>/neutral.* under a subjects folder
    SYNTHETIC = "synthetic"  # the synthetic live source's identity
    TEMPLATE = "template"  # the model's template face (nobody else could be driven)


@dataclass(frozen=True)
class SubjectSpec:
    """What the engine needs to drive someone: name, neutral (None: the model's own), avatar folder."""

    name: str
    neutral: np.ndarray | str | None
    avatar: str | None
    origin: str  # where the neutral comes from, in the user's words
    source: NeutralSource = NeutralSource.FOLDER


class SubjectCatalog:
    """Subject names and their files; thread-safe (the frame worker resolves subjects too)."""

    def __init__(self, roots: list[Path] | None = None) -> None:
        self._roots: list[Path] = list(roots or [])
        self._model_subjects: list[str] = []
        self._identities: set[str] = set()
        self._loaded: dict[str, tuple[str, str | None]] = {}  # name -> (mesh file, avatar dir)
        self._lock = threading.Lock()

    def add_root(self, root: Path) -> None:
        """Also look for subject folders under ``root`` (first added wins on name clashes)."""
        with self._lock:
            root = Path(root)
            if root.is_dir() and root not in self._roots:
                self._roots.append(root)

    def set_model(self, subjects: list[str], identities: list[str]) -> None:
        """The subjects the loaded checkpoint knows (and those with an adaptation layer)."""
        with self._lock:
            self._model_subjects, self._identities = list(subjects), set(identities)

    def add_loaded(self, name: str, mesh_file: str, avatar_dir: str | None = None) -> None:
        """A neutral mesh the user loaded for ``name`` (it takes precedence over other sources)."""
        with self._lock:
            self._loaded[name] = (mesh_file, avatar_dir)

    def has_adapter(self, name: str) -> bool:
        return name in self._identities

    def names(self) -> list[str]:
        """Every drivable subject: the model's, the loaded ones, then folders, without repeats."""
        with self._lock:
            found = list(self._model_subjects) + list(self._loaded)
            for root in self._roots:
                found += sorted(p.name for p in root.iterdir() if p.is_dir() and neutral_file(p))
        return list(dict.fromkeys(found))

    def folder(self, name: str) -> Path | None:
        with self._lock:
            return next((r / name for r in self._roots if neutral_file(r / name)), None)

    def resolve(self, name: str, textured: bool = True) -> SubjectSpec | None:
        """Where to get ``name``'s neutral and avatar; None when no neutral is known anywhere."""
        folder = self.folder(name)
        avatar = avatar_folder(folder) if folder else None
        with self._lock:
            loaded = self._loaded.get(name)
            in_model = name in self._model_subjects
        if loaded is not None:
            mesh, loaded_avatar = loaded
            avatar = Path(loaded_avatar) if loaded_avatar else avatar
            spec = SubjectSpec(name, mesh, None, f"loaded {Path(mesh).name}", NeutralSource.LOADED)
        elif in_model:
            spec = SubjectSpec(name, None, None, "the model checkpoint", NeutralSource.MODEL)
        elif folder is not None:
            mesh_file = neutral_file(folder)
            spec = SubjectSpec(name, str(mesh_file), None, f"{folder}", NeutralSource.FOLDER)
        else:
            return None
        use_avatar = textured and avatar is not None and self.has_adapter(name)
        return dataclasses.replace(spec, avatar=str(avatar) if use_avatar else None)


def sibling_avatar(mesh_file: str | Path) -> str | None:
    """The avatar folder next to a neutral mesh (``<subject>/avatar``), if there is one."""
    folder = avatar_folder(Path(mesh_file).resolve().parent)
    return None if folder is None else str(folder)


def mesh_subject_name(mesh_file: str | Path) -> str:
    """Whose neutral mesh this is: subject.json's id beside it, else the folder of a ``neutral.*``
    file, else the file stem."""
    mesh_file = Path(mesh_file)
    info = mesh_file.parent / "subject.json"
    if info.is_file():
        try:
            return str(json.loads(info.read_text())["subject_id"])
        except (ValueError, KeyError, OSError):
            pass
    return mesh_file.parent.name if mesh_file.stem == "neutral" else mesh_file.stem
