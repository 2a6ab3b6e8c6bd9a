"""Lightning's progress bar for job logs: a line every N optimiser steps, not a redrawn bar."""

from __future__ import annotations

import datetime
import logging
import math
import time

import lightning as L
from lightning.pytorch.callbacks import ProgressBar

__all__ = ["LogProgress"]

log = logging.getLogger(__name__)


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds))) if math.isfinite(seconds) else "?"


class LogProgress(ProgressBar):
    """Every ``every_n_steps`` optimiser steps one log line: epoch, step, loss, samples/s, ETA.

    Samples/s counts every rank's samples (the whole job's throughput) since this process
    started training, so a resumed run reports its own speed; the ETA is the steps left at that
    speed. After each validation pass, a line with the validation loss. Rank 0 only.
    """

    def __init__(self, every_n_steps: int = 10):
        super().__init__()
        self.every = max(1, every_n_steps)
        self._enabled = True
        self._start: tuple[float, int] | None = None
        self._samples = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _total_steps(self, trainer: L.Trainer) -> int:
        per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        return per_epoch * trainer.max_epochs

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = (time.perf_counter(), trainer.global_step)
        self._samples = 0
        if self._enabled:
            log.info(
                "training %d steps (%d epochs) on %d process(es) from step %d",
                self._total_steps(trainer),
                trainer.max_epochs,
                trainer.world_size,
                trainer.global_step,
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Every batch counted as it comes (an epoch's last batch is smaller); each rank's
        # sampler gives it batches of the same size, so the job's samples are world_size times.
        self._samples += len(batch[0]) * trainer.world_size
        step = trainer.global_step
        last = step == self._total_steps(trainer)
        if not self._enabled or self._start is None or (step % self.every and not last):
            return
        if (batch_idx + 1) % trainer.accumulate_grad_batches and not last:
            return  # the same optimiser step as the previous line
        began, first = self._start
        elapsed = time.perf_counter() - began
        steps = step - first
        rate = steps / elapsed if elapsed > 0 else float("nan")
        loss = float(self.get_metrics(trainer, pl_module).get("train_loss_step", float("nan")))
        log.info(
            "epoch %d/%d step %d/%d loss %.4f | %.1f samples/s | elapsed %s | ETA %s",
            trainer.current_epoch + 1,
            trainer.max_epochs,
            step,
            self._total_steps(trainer),
            loss,
            self._samples / elapsed if elapsed > 0 else float("nan"),
            _clock(elapsed),
            _clock((self._total_steps(trainer) - step) / rate if steps else float("nan")),
        )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = self.get_metrics(trainer, pl_module)
        if self._enabled and not trainer.sanity_checking and "val_loss" in metrics:
            log.info(
                "epoch %d/%d val_loss %.4f",
                trainer.current_epoch + 1,
                trainer.max_epochs,
                float(metrics["val_loss"]),
            )
