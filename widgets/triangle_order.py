"""Triangles reordered so that a software rasteriser shades each vertex fewer times.

Why: with Mesa's llvmpipe the vertex shader runs on the thread that calls ``glDrawElements`` (the
GUI thread), and Mesa's draw module reuses a shaded vertex only from a small cache (as modelled
here: segments of about a thousand indices, a vertex reused while no other of the same index
modulo 256 came in between). In that model the face model's triangles, in file order, shade about
1.0 vertices per triangle; in the order below about 0.63. Measured, it took 0.3-0.6 ms of GUI CPU off
each drawn frame of the 3D viewer (two faces; `docs/studio_speed.md`). The order is Tipsify
(Sander, Nehab and Barczak, "Fast Triangle Reordering for Vertex Locality and Reduced Overdraw",
SIGGRAPH 2007): walk the mesh fan by fan, always continuing from a recently used vertex that
still has triangles left. Only the order changes: the same triangles, each with its own winding,
so the picture is the same.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

CACHE_SIZE = 32  # Tipsify's modelled cache: 32 measured best of 16/32/64 for llvmpipe's cache
_MEMO: OrderedDict[bytes, np.ndarray] = OrderedDict()
_MEMO_ENTRIES = 4  # one per topology in use (the viewer's and the retarget grid's coarse set)


def cache_friendly_order(faces: np.ndarray) -> np.ndarray:
    """The triangles (F, 3) in Tipsify order, same dtype; memoised per triangle list (every face
    of one topology, in every view, shares one reordering)."""
    faces = np.ascontiguousarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be (F, 3), got {faces.shape}")
    if len(faces) < 2:
        return faces.copy()
    key = faces.dtype.str.encode() + faces.tobytes()
    found = _MEMO.get(key)
    if found is None:
        found = faces[tipsify(faces)]
        found.setflags(write=False)
        _MEMO[key] = found
        while len(_MEMO) > _MEMO_ENTRIES:
            _MEMO.popitem(last=False)
    else:
        _MEMO.move_to_end(key)
    return found.copy()


def tipsify(faces: np.ndarray, cache_size: int = CACHE_SIZE) -> np.ndarray:
    """A permutation of the triangles (indices into ``faces``) in Tipsify order."""
    faces = np.asarray(faces, np.int64)
    n_verts = int(faces.max()) + 1
    corners = faces.ravel()
    # vertex -> its triangles (CSR), in triangle order
    order = np.argsort(corners, kind="stable")
    starts = np.searchsorted(corners[order], np.arange(n_verts + 1))
    tri_of = (order // 3).tolist()
    starts_l = starts.tolist()
    tris = faces.tolist()
    live = np.diff(starts).tolist()  # triangles not yet emitted, per vertex
    stamp_of = [-(cache_size + 1)] * n_verts
    emitted = [False] * len(tris)
    out: list[int] = []
    dead_end: list[int] = []
    stamp, cursor = cache_size + 1, 0
    fan = 0
    while fan >= 0:
        candidates: list[int] = []
        for t in tri_of[starts_l[fan]:starts_l[fan + 1]]:
            if emitted[t]:
                continue
            emitted[t] = True
            out.append(t)
            for v in tris[t]:
                dead_end.append(v)
                candidates.append(v)
                live[v] -= 1
                if stamp - stamp_of[v] > cache_size:  # not in the modelled cache: it enters
                    stamp_of[v] = stamp
                    stamp += 1
        fan = _next_fan(candidates, live, stamp_of, stamp, cache_size)
        if fan < 0:
            fan = _dead_end(dead_end, live)
        if fan < 0:
            while cursor < n_verts and live[cursor] == 0:
                cursor += 1
            fan = cursor if cursor < n_verts else -1
    return np.asarray(out, np.int64)


def _next_fan(candidates: list[int], live: list[int], stamp_of: list[int], stamp: int, cache_size: int) -> int:
    """The candidate that will still be in the cache after its fan is emitted, oldest first."""
    best, best_priority = -1, -1
    for v in candidates:
        if live[v] <= 0:
            continue
        age = stamp - stamp_of[v]
        priority = age if age + 2 * live[v] <= cache_size else 0
        if priority > best_priority:
            best, best_priority = v, priority
    return best


def _dead_end(stack: list[int], live: list[int]) -> int:
    while stack:
        v = stack.pop()
        if live[v] > 0:
            return v
    return -1
