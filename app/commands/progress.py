"""A tqdm bar behind the engine's ``progress(done, total, text)`` callback, for CLI commands."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from tqdm import tqdm


@contextmanager
def tqdm_progress(desc: str, unit: str) -> Iterator[Callable[[int, int, str], None]]:
    bar = tqdm(total=1, unit=unit, desc=desc)

    def progress(done: int, total: int, text: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(text)
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()
