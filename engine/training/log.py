"""The training log: log.csv (resumable) and the progress bar, and the progress callback type."""
from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from engine.training.losses import LossTerms

if TYPE_CHECKING:
    from engine.training.trainer import Trainer

Progress = Callable[[int, int, dict], None]
"""progress(step, total_steps, metrics) after each step, on rank 0."""
LOG_FIELDS = ("step", "loss", "shape_loss", "texture_loss", "lr", "samples_per_s")


class RunLog:
    """log.csv (one row per `log_every` steps, flushed) and the progress bar; rank 0 writes.

    Losses are averaged over the window and over ranks; samples/s counts all ranks' samples.
    On resume the file is cut back to the checkpoint's step: later rows are about to be redone.
    """

    def __init__(self, trainer: Trainer, path: Path | None) -> None:
        self.trainer = trainer
        self.acc = torch.zeros(3, device=trainer.env.device)
        self.count, self.start = 0, time.perf_counter()
        self.metrics: dict[str, float] = {}
        self.file = self.bar = self.writer = None
        if path is not None:
            rows: list[list[str]] = []
            if trainer.step > 0 and path.exists():
                with open(path, newline="") as f:
                    rows = [r for r in list(csv.reader(f))[1:] if r and int(r[0]) <= trainer.step]
            self.file = open(path, "w", newline="")
            self.writer = csv.writer(self.file, lineterminator="\n")
            self.writer.writerows([list(LOG_FIELDS), *rows])
            self.file.flush()
            if trainer.show_bar:
                from tqdm import tqdm
                self.bar = tqdm(total=trainer.cfg.steps, initial=trainer.step, unit="step",
                                desc="train", dynamic_ncols=True,
                                mininterval=0.1 if sys.stderr.isatty() else 30.0)

    def add(self, terms: LossTerms) -> None:
        self.acc += torch.stack([terms.total, terms.shape, terms.texture])
        self.count += 1
        step, cfg = self.trainer.step, self.trainer.cfg
        if step % cfg.log_every == 0 or step == cfg.steps:
            self._write(step)
        if self.bar is not None:
            self.bar.update(1)

    def _write(self, step: int) -> None:
        now = time.perf_counter()
        env, cfg = self.trainer.env, self.trainer.cfg
        mean = env.all_mean(self.acc / self.count).tolist()
        self.metrics = {"loss": mean[0], "shape_loss": mean[1], "texture_loss": mean[2],
                        "lr": self.trainer.last_lr,
                        "samples_per_s": self.count * cfg.batch_size * env.world_size
                        / max(now - self.start, 1e-9)}
        if self.writer is not None:
            self.writer.writerow([step, *(f"{self.metrics[k]:.6g}" for k in LOG_FIELDS[1:])])
            self.file.flush()
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{mean[0]:.4g}", refresh=False)
        self.acc.zero_()
        self.count, self.start = 0, now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            self.file.close()
