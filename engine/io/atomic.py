"""Writing a file so that it is either the old file or the whole new one, never a torn half.

Every writer in the project (checkpoints, meshes, arrays, images, JSON, CSV, reports) writes to a
hidden temp file beside the target and renames it into place when the write has finished: a kill,
a full disk or an exception mid-write leaves the target untouched. The temp name keeps the
target's suffix, so writers that choose the format from it (trimesh, OpenCV, matplotlib, numpy's
.npz) write the right one, and carries the writer's process id, so `remove_orphans` can tell a
dead writer's leftover from a live one's.
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import IO, Any, Iterator


def temp_path(path: Path) -> Path:
    """The hidden temp file this process writes `path` through: ``.<name>.tmp<pid><suffix>``."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")


def remove_orphans(path: str | os.PathLike) -> None:
    """Delete temp files of earlier writes of `path` whose writing process is gone (killed mid-write)."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.tmp*"):
        match = re.match(r"(\d+)", tmp.name[len(path.name) + 5:])
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, clean_orphans: bool = False) -> Iterator[Path]:
    """Yields the temp path to write; on a clean exit it replaces `path`, on an error it is removed.

    `clean_orphans` first deletes dead writers' temp files of `path` (for files rewritten many
    times in a long run, such as checkpoints, where a kill mid-write is expected).
    """
    path = Path(path)
    if clean_orphans:
        remove_orphans(path)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """`open` for writing through `atomic_path`: the file appears at `path` only once closed."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Atomically replace `path` with `text`."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically replace `path` with `data`."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)
