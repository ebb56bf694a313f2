"""What `mia stream` and `mia blendshapes` share: the model to load, who is driven, and where to send.

The default model is the shipped ``resources/default_model.pt``. A subject's neutral mesh comes, in
order, from a mesh file given as ``--subject``, the dataset beside a capture
(``<dataset>/subjects/<id>/neutral.obj``: names are only unique within one dataset), the checkpoint,
and the shipped ``resources/subjects``. Everything here raises MiaError with one line for the user.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.errors import MiaError
from engine.io.mesh import MESH_SUFFIXES

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_MODEL = ROOT / "resources" / "default_model.pt"
SHIPPED_SUBJECTS = ROOT / "resources" / "subjects"


def model_path(given: Path | None) -> Path:
    """The checkpoint to load: ``--model`` or the shipped default; a missing file is a MiaError."""
    path = Path(given) if given is not None else DEFAULT_MODEL
    if not path.is_file():
        where = "--model" if given is not None else "the shipped default model"
        raise MiaError(f"{path}: no such model file ({where}); pass --model PATH to a checkpoint")
    return path


def parse_host_port(text: str, option: str) -> tuple[str, int]:
    """'HOST:PORT', '[IPv6]:PORT' or ':PORT' (127.0.0.1) -> (host, port), checked; MiaError if malformed."""
    from engine.output.endpoint import OutputError, check_endpoint
    raw = str(text).strip()
    expected = "expected HOST:PORT such as 127.0.0.1:9000"
    if raw.startswith("["):
        host, sep, port_text = raw[1:].partition("]:")
    else:
        host, sep, port_text = raw.rpartition(":")
        if ":" in host:  # a bare IPv6 address would be ambiguous
            raise MiaError(f"{option} {text!r}: write IPv6 addresses in brackets, e.g. [::1]:9000")
    if not sep:
        raise MiaError(f"{option} {text!r}: no port; {expected}")
    host = host or "127.0.0.1"
    if not port_text.isdigit():
        raise MiaError(f"{option} {text!r}: port {port_text!r} is not a number; {expected}")
    try:
        check_endpoint(host, int(port_text), option)
    except OutputError as err:
        raise MiaError(f"{err} (in {text!r})") from None
    return host, int(port_text)


def _beside(capture_path: Path | None, name: str) -> Path | None:
    if capture_path is None:
        return None
    from engine.io.layout import subject_files
    return subject_files(capture_path, name)[0]


def _shipped(name: str) -> Path | None:
    folder = SHIPPED_SUBJECTS / name
    return next((folder / f"neutral{s}" for s in MESH_SUFFIXES if (folder / f"neutral{s}").is_file()), None)


def resolve_subject(engine: Any, name: str, capture_path: Path | None = None) -> Any:
    """A DrivenSubject (no avatar: outputs need meshes only) for a subject id or a neutral mesh file."""
    given = Path(name)
    if given.suffix.lower() in MESH_SUFFIXES:
        if not given.is_file():
            raise MiaError(f"--subject {name}: no such mesh file")
        label = given.parent.name if given.stem == "neutral" else given.stem
        return engine.make_subject(label or "subject", given)
    neutral = _beside(capture_path, name)
    if neutral is None and name not in engine.subjects:
        neutral = _shipped(name)
    if neutral is None and name not in engine.subjects:
        beside = f", no subjects/{name}/neutral.obj beside {capture_path}" if capture_path else ""
        raise MiaError(f"unknown subject {name!r}: not in {engine.checkpoint.path.name} (known: "
                       f"{', '.join(engine.subjects) or 'none'}){beside}, none in {SHIPPED_SUBJECTS}; "
                       "pass --subject ID or --subject PATH/neutral.obj")
    return engine.make_subject(name, neutral)


def default_threads() -> int:
    """The studio's rule (app.paths.default_threads, without importing Qt): MIA_STUDIO_THREADS, else
    all cores but one, at most four. On a 2-core machine that is one: two intra-op threads fighting
    a busy second core made per-frame inference ~50x slower (8 ms -> 400-800 ms) in a measurement."""
    env = os.environ.get("MIA_STUDIO_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(4, (os.cpu_count() or 2) - 1))
