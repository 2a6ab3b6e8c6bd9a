"""The LightningModule of pretraining: steps, optimiser, schedule and logging around a backbone."""

from __future__ import annotations

import math
import random
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch

from sdofm import SdofmError
from sdofm.training.datamodule import ResumableLoader

__all__ = ["Pretrainer"]


class Pretrainer(L.LightningModule):
    """Steps, optimiser, schedule and logging around a backbone given from outside.

    The backbone's ``forward(x)`` returns ``(loss, prediction, mask)``; validation draws its
    masks from a fixed generator, so validation losses are comparable across epochs and
    validation never touches the training RNG. ``config`` (the resolved ``pretrain`` block),
    ``dataset`` (its identity) and ``runtime`` (versions, device, threads) go into the
    checkpoint's hyper-parameters, which a resume compares (`sdofm.training.resume`).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        *,
        backbone: str,
        net_kwargs: dict[str, Any],
        channels: list[str],
        frames: int,
        spacing: int,
        dataset_hash: str,
        pretrain_intervals: list[list[str]],
        learning_rate: float,
        weight_decay: float,
        warmup_epochs: int,
        max_epochs: int,
        seed: int,
        kl_warmup_epochs: int = 0,
        config: dict[str, Any] | None = None,
        dataset: dict[str, Any] | None = None,
        runtime: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.net = net
        self.save_hyperparameters(ignore=["net"])
        # Loss per step and per validation pass; kept in the checkpoint so that a resumed run
        # has the whole history (the CSV log of a killed process may not have been flushed).
        self.history: dict[str, list] = {"train": [], "val": []}
        self._val_losses: list[float] = []

    def on_train_batch_start(self, batch, batch_idx) -> None:
        # VAE: KL warm-up, beta rising linearly from 0 to its configured value.
        hp = self.hparams
        if hasattr(self.net, "beta"):
            warmup = hp.kl_warmup_epochs * max(1, self._total_steps() // hp.max_epochs)
            scale = min(1.0, self.global_step / warmup) if warmup else 1.0
            self.net.beta = hp.net_kwargs["beta"] * scale

    def training_step(self, batch, batch_idx):
        loss, _, _ = self.net(batch[0])
        if not torch.isfinite(loss):
            hp = self.hparams
            msg = (
                f"the training loss is {loss.item()} at step {self.global_step} (epoch "
                f"{self.current_epoch}): lower pretrain.learning_rate (now {hp.learning_rate}), "
                f"raise warmup_epochs, or use precision 32-true"
            )
            raise SdofmError(msg)
        loader = self.trainer.train_dataloader
        if isinstance(loader, ResumableLoader):
            loader.batches_done += 1  # the position a checkpoint taken now resumes from
        # The mean over the ranks' batches (the loss of the step's whole batch under DDP).
        step_loss = self.trainer.strategy.reduce(loss.detach(), reduce_op="mean")
        self.log("train_loss", step_loss, prog_bar=True, on_step=True, on_epoch=True)
        self.history["train"].append([self.global_step, self.current_epoch, step_loss.item()])
        return loss

    def validation_step(self, batch, batch_idx):
        gen = torch.Generator(device=batch[0].device).manual_seed(self.hparams.seed + batch_idx)
        loss, _, _ = self.net(batch[0], generator=gen)
        self.log("val_loss", loss, prog_bar=True, on_epoch=True, sync_dist=True)
        self._val_losses.append(loss.item())

    def on_validation_epoch_end(self) -> None:
        if self._val_losses and not self.trainer.sanity_checking:
            mean = sum(self._val_losses) / len(self._val_losses)
            self.history["val"].append([self.current_epoch, mean])
        self._val_losses = []

    def loss_history(self) -> pd.DataFrame:
        """Mean training loss (over the epoch's steps) and validation loss per epoch."""
        train = pd.DataFrame(self.history["train"], columns=["step", "epoch", "train_loss"])
        val = pd.DataFrame(self.history["val"], columns=["epoch", "val_loss"])
        per_epoch = train.groupby("epoch")[["train_loss"]].mean()
        return per_epoch.join(val.groupby("epoch").last(), how="outer")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning does not keep the global RNG states; the masks of the next steps depend on
        # them. Tensors and plain types only, so the checkpoint loads with weights_only=True.
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        checkpoint["rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": random.getstate(),
        }
        checkpoint["loss_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = checkpoint.get("loss_history", {"train": [], "val": []})
        rng = checkpoint.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
            kind, keys, pos, has_gauss, gauss = rng["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            random.setstate(rng["python"])

    def _total_steps(self) -> int:
        """Optimiser steps of the whole run, from the data set's size.

        Not ``trainer.estimated_stepping_batches``: it builds the training loader before the
        checkpoint is restored, and Lightning then never hands the loader its saved position.
        """
        trainer, dm = self.trainer, self.trainer.datamodule
        batches = math.ceil(len(dm.train_set) / (dm.batch_size * trainer.world_size))
        return math.ceil(batches / trainer.accumulate_grad_batches) * trainer.max_epochs

    def configure_optimizers(self):
        hp = self.hparams
        decay = [p for n, p in self.net.named_parameters() if p.ndim > 1 and "token" not in n]
        no_decay = [p for n, p in self.net.named_parameters() if p.ndim <= 1 or "token" in n]
        opt = torch.optim.AdamW(
            [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.learning_rate,
            weight_decay=hp.weight_decay,
            betas=(0.9, 0.95),
        )
        total = max(1, self._total_steps())
        warmup = min(total - 1, int(total * hp.warmup_epochs / hp.max_epochs))

        def schedule(step: int) -> float:  # linear warm-up, then cosine decay
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
