"""The dataset layout on disk: where a dataset keeps its captures, subjects, neutral meshes and avatars.

    <root>/captures/<capture>/             capture folders (engine.io.capture_schema)
    <root>/subjects/<id>/neutral.<suffix>  the subject's neutral mesh, in any format engine.io.mesh
                                           reads (.obj first when there are several)
    <root>/subjects/<id>/avatar/avatar.pt  its avatar decoder D_i, when it has one

The shipped `resources/subjects` folder uses the same subject-folder layout. Training, evaluation,
the CLI and the studio all find a subject's files through these functions, so they agree on which
files count.
"""
from __future__ import annotations

import os
from pathlib import Path

from engine.io.mesh import MESH_SUFFIXES

SUBJECTS_DIR = "subjects"
NEUTRAL_STEM = "neutral"
AVATAR_DIR = "avatar"
AVATAR_FILE = "avatar.pt"


def subjects_dir(capture_path: str | os.PathLike) -> Path:
    """``<root>/subjects`` of the dataset holding a capture stored as ``<root>/captures/<name>``."""
    return Path(capture_path).resolve().parent.parent / SUBJECTS_DIR


def neutral_file(subject_folder: str | os.PathLike) -> Path | None:
    """The neutral mesh in a subject folder (``neutral.obj``, ``.ply``, ...), or None."""
    folder = Path(subject_folder)
    return next((folder / f"{NEUTRAL_STEM}{s}" for s in MESH_SUFFIXES
                 if (folder / f"{NEUTRAL_STEM}{s}").is_file()), None)


def neutral_path(capture_path: str | os.PathLike, subject: str) -> Path:
    """Where the dataset keeps `subject`'s neutral: the file found, else ``neutral.obj`` (what a
    message about the missing file names, and where a new one is written)."""
    folder = subjects_dir(capture_path) / subject
    return neutral_file(folder) or folder / f"{NEUTRAL_STEM}.obj"


def avatar_path(subject_folder: str | os.PathLike) -> Path:
    """The avatar decoder file of a subject folder (present or not)."""
    return Path(subject_folder) / AVATAR_DIR / AVATAR_FILE


def avatar_folder(subject_folder: str | os.PathLike) -> Path | None:
    """``<subject>/avatar`` when it holds an avatar decoder, else None."""
    return avatar_path(subject_folder).parent if avatar_path(subject_folder).is_file() else None


def subject_files(capture_path: str | os.PathLike, subject: str) -> tuple[Path | None, Path | None]:
    """Neutral mesh and avatar folder of `subject` in the dataset holding a capture, if present."""
    folder = subjects_dir(capture_path) / subject
    return neutral_file(folder), avatar_folder(folder)
