"""Long work off the GUI thread: a small ``thread_worker`` in the spirit of napari's.

``Task(fn)`` runs ``fn(ctx)`` in a QThread. The function reports with ``ctx.progress(done, total,
text)`` and checks ``ctx.cancelled`` (or calls ``ctx.check()``, which raises Cancelled) at its
own safe points; engine functions that take ``progress``/``cancel`` callbacks get them from the
context. Results and failures come back as Qt signals on the GUI thread, failures as a sentence
(tracebacks go to the log). ``run_in_dialog`` wires a task to a TaskProgressDialog.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtWidgets import QWidget

from app.logs import report
from widgets.progress_dialog import TaskProgressDialog


class Cancelled(Exception):
    """Raised inside a task when the user asked it to stop."""


class TaskContext:
    """What a running task sees: progress reporting and the cancel flag."""

    def __init__(self, task: Task) -> None:
        self._task = task
        self._cancel = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise Cancelled if the user asked to stop."""
        if self._cancel.is_set():
            raise Cancelled()

    def progress(self, done: int, total: int, text: str = "") -> None:
        """Report progress; also a cancellation point."""
        self._task.progress.emit(int(done), int(total), str(text))
        self.check()


class Task(QThread):
    """``fn(ctx)`` in a thread; emits progress, then exactly one of finished/failed/cancelled."""

    progress = Signal(int, int, str)
    finished_with = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    _running: set[Task] = set()  # keep Python references until the thread is done

    def __init__(self, fn: Callable[[TaskContext], Any], doing: str = "", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.fn, self.doing = fn, doing
        self.ctx = TaskContext(self)
        self.result: Any = None
        self.error = ""
        self.finished.connect(lambda: Task._running.discard(self))

    def start_task(self) -> Task:
        Task._running.add(self)
        self.start()
        return self

    def cancel(self) -> None:
        self.ctx._cancel.set()

    def run(self) -> None:
        try:
            self.result = self.fn(self.ctx)
        except (Cancelled, KeyboardInterrupt):
            self.cancelled.emit()
            return
        except Exception as err:
            if self.ctx.cancelled:
                self.cancelled.emit()
                return
            self.error = report(err, self.doing)
            self.failed.emit(self.error)
            return
        if self.ctx.cancelled:
            self.cancelled.emit()
        else:
            self.finished_with.emit(self.result)


def run_in_dialog(parent: QWidget | None, title: str, fn: Callable[[TaskContext], Any],
                  on_done: Callable[[Any], str | None] | None = None,
                  cancelled_text: str = "Cancelled; nothing was written.") -> tuple[Task, TaskProgressDialog]:
    """Start ``fn`` as a Task behind a progress dialog with Cancel; ``on_done(result)`` may return
    the dialog's closing text. The dialog is shown non-modally and stays until closed."""
    dialog = TaskProgressDialog(title, parent)
    task = Task(fn, title)
    task.progress.connect(dialog.set_progress)
    dialog.cancel_requested.connect(task.cancel)

    def done(result: Any) -> None:
        text = None
        try:
            text = on_done(result) if on_done else None
        except Exception as err:
            dialog.fail(report(err, title))
            return
        dialog.finish(text or "Done.")

    task.finished_with.connect(done)
    task.failed.connect(dialog.fail)
    task.cancelled.connect(lambda: dialog.fail(cancelled_text))
    dialog.set_progress(0, 0, "starting…")
    dialog.show()
    task.start_task()
    return task, dialog
