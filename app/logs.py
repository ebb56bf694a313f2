"""Tracebacks go to a log file, users get a sentence.

Every unexpected exception in the studio (a slot, a worker, a task) is written with its traceback
to ``mia-studio.log`` in the user cache folder; what the user sees is ``user_message``: the
error's own text for the engine's MiaError family (they are written for users), otherwise the
exception type and text plus where the details are.
"""
from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
from types import TracebackType
from typing import Callable

from engine.errors import MiaError

LOG = logging.getLogger("mia_studio")
_handler: logging.FileHandler | None = None


def setup_logging(level: int = logging.INFO) -> str:
    """Log to the rotating file in the cache folder (once); returns its path."""
    global _handler
    from app.paths import log_file
    path = log_file()
    if _handler is not None and _handler.baseFilename != str(path):  # the user folder moved (tests)
        LOG.removeHandler(_handler)
        _handler.close()
        _handler = None
    if _handler is None:
        _handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=2,
                                                        encoding="utf-8")
        _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
        LOG.addHandler(_handler)
        LOG.setLevel(level)
    return str(path)


def user_message(err: BaseException, doing: str = "") -> str:
    """One or two sentences for the status bar or a dialog; never a traceback."""
    prefix = f"{doing}: " if doing else ""
    if isinstance(err, MiaError):
        return prefix + str(err)
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    detail = f"{type(err).__name__}: {text}" if text else type(err).__name__
    where = f" (details in {_handler.baseFilename})" if isinstance(_handler, logging.FileHandler) else ""
    return f"{prefix}{detail}{where}"


def report(err: BaseException, doing: str = "") -> str:
    """Log ``err`` with its traceback (user errors without) and return the user's message."""
    if isinstance(err, MiaError):
        LOG.warning("%s%s", f"{doing}: " if doing else "", err)
    else:
        LOG.error("%s", doing or "unexpected error", exc_info=(type(err), err, err.__traceback__))
    return user_message(err, doing)


def install_excepthook(show: Callable[[str], None]) -> None:
    """Route uncaught exceptions (GUI slots included) to the log and ``show`` instead of stderr."""
    def hook(kind: type[BaseException], err: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, err, tb)
            return
        err.__traceback__ = tb
        try:
            show(report(err))
        except Exception:  # the window may be gone while shutting down
            LOG.exception("while showing an error")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            hook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = hook
    threading.excepthook = thread_hook
