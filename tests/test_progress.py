"""The pretraining progress line: the job's samples/s counts every batch it trained on."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import torch

from sdofm.training import progress
from sdofm.training.progress import LogProgress


def test_samples_per_second_counts_the_short_last_batch(monkeypatch, caplog):
    """17 rows in batches of 16 and 1, two ranks, 2 s: (16 + 1) x 2 / 2 = 17 samples/s (the
    old count, steps x the last batch's size, said 2)."""
    clock = iter([100.0, 101.0, 102.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    trainer = SimpleNamespace(
        num_training_batches=2,
        accumulate_grad_batches=1,
        max_epochs=1,
        world_size=2,
        global_step=0,
        current_epoch=0,
    )
    bar = LogProgress(every_n_steps=1)
    monkeypatch.setattr(LogProgress, "get_metrics", lambda self, t, m: {"train_loss_step": 0.5})
    with caplog.at_level(logging.INFO, logger="sdofm.training.progress"):
        bar.on_train_start(trainer, None)
        for i, size in enumerate((16, 1)):
            trainer.global_step = i + 1
            bar.on_train_batch_end(trainer, None, None, (torch.zeros(size, 1),), i)
    lines = [r.getMessage() for r in caplog.records if "samples/s" in r.getMessage()]
    assert "32.0 samples/s" in lines[0]  # 16 x 2 ranks in 1 s
    assert "17.0 samples/s" in lines[-1]
