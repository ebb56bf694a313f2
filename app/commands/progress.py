"""A tqdm bar behind the engine's ``progress(done, total, text)`` callback, for CLI commands."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from tqdm import tqdm


def log_interval() -> float:
    """Seconds between bar redraws: live on a terminal, every 30 s in a log file (a redraw there
    is a whole new line, and one per frame floods the log)."""
    return 0.1 if sys.stderr.isatty() else 30.0


@contextmanager
def tqdm_progress(desc: str, unit: str) -> Iterator[Callable[[int, int, str], None]]:
    interval = log_interval()
    bar = tqdm(total=1, unit=unit, desc=desc, mininterval=interval)
    last = [0.0]

    def progress(done: int, total: int, text: str) -> None:
        bar.total = total
        bar.n = done
        now = time.monotonic()
        if now - last[0] >= interval or done >= total:
            last[0] = now
            bar.set_postfix_str(text, refresh=False)
            bar.refresh()

    try:
        yield progress
    finally:
        bar.close()
