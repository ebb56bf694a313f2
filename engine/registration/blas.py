"""Keep numpy's BLAS on one thread while registering.

The fits solve many small dense least-squares problems (a few thousand rows by ~100 columns).
OpenBLAS splits each product over all cores; on a 2-core machine that is already busy (a training
job, the app's own inference thread) its threads wait on each other and one product takes ~70 ms
instead of ~2.5 ms on one thread (measured here). ``single_threaded_blas`` sets numpy's OpenBLAS
to one thread for the duration (through its ``*_set_num_threads`` entry point, found with ctypes;
threadpoolctl is not a dependency) and restores it after; when no OpenBLAS is found it does nothing.
"""
from __future__ import annotations

import ctypes
import glob
import os
import threading
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

import numpy as np

_LOCK = threading.Lock()
_DEPTH = [0]


@lru_cache(maxsize=1)
def _openblas() -> tuple[object, object] | None:
    """(set_num_threads, get_num_threads) of the OpenBLAS numpy uses, or None."""
    folder = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(folder, "*openblas*.so*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", "_64_", ""):
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    setter.argtypes, getter.restype = [ctypes.c_int], ctypes.c_int
                    return setter, getter
    return None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    funcs = _openblas()
    if funcs is None:
        yield
        return
    setter, getter = funcs
    with _LOCK:
        if _DEPTH[0] == 0:
            _DEPTH.append(getter())
            setter(1)
        _DEPTH[0] += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH[0] -= 1
            if _DEPTH[0] == 0:
                setter(_DEPTH.pop())
