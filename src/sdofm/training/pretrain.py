"""Pretrain a masked-autoencoder backbone on the ML-ready store with Lightning."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment

from sdofm import SdofmError
from sdofm.dataset.loader import SDODataModule, open_dataset
from sdofm.models import build_backbone

__all__ = ["MAEPretrainer", "load_backbone", "pretrain"]


class MAEPretrainer(L.LightningModule):
    """Steps, optimiser and logging around a backbone given from outside."""

    def __init__(
        self,
        net: torch.nn.Module,
        *,
        backbone: str,
        img_size: int,
        in_chans: int,
        channels: list[str],
        dataset_hash: str,
        learning_rate: float,
        weight_decay: float,
        warmup_epochs: int,
        max_epochs: int,
        mask_ratio: float,
        norm_pix_loss: bool,
    ):
        super().__init__()
        self.net = net
        self.save_hyperparameters(ignore=["net"])

    def training_step(self, batch, batch_idx):
        loss, _, _ = self.net(batch[0])
        if not torch.isfinite(loss):
            msg = f"non-finite loss at step {self.global_step}: lower pretrain.learning_rate"
            raise SdofmError(msg)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, _, _ = self.net(batch[0])
        self.log("val_loss", loss, prog_bar=True, on_epoch=True)

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.AdamW(
            self.net.parameters(),
            lr=hp.learning_rate,
            weight_decay=hp.weight_decay,
            betas=(0.9, 0.95),
        )
        total = max(1, self.trainer.estimated_stepping_batches)
        warmup = min(total - 1, int(total * hp.warmup_epochs / hp.max_epochs))

        def schedule(step: int) -> float:  # linear warm-up, then cosine decay
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def load_backbone(ckpt_path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a backbone from a checkpoint written by `pretrain`; returns (net, hparams)."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    hp = ckpt["hyper_parameters"]
    net = build_backbone(
        hp["backbone"],
        img_size=hp["img_size"],
        in_chans=hp["in_chans"],
        mask_ratio=hp["mask_ratio"],
        norm_pix_loss=hp["norm_pix_loss"],
    )
    state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items()}
    net.load_state_dict(state)
    return net.eval(), hp


def cluster_layout() -> dict[str, Any]:
    """Trainer settings for how the process was launched.

    Under ``srun`` (one process per GPU, possibly on several nodes) Lightning's SLURM environment
    wires up DDP, and SIGUSR1 (sbatch ``--signal=USR1@<s>``) makes it checkpoint and requeue the
    job before its time limit. Anywhere else: one device.
    """
    env = os.environ
    if "SLURM_STEP_ID" in env and "SLURM_NTASKS" in env:
        nodes = int(env.get("SLURM_NNODES", "1"))
        per_node = env.get("SLURM_NTASKS_PER_NODE", "").split("(")[0].split(",")[0]
        devices = int(per_node) if per_node else int(env["SLURM_NTASKS"]) // nodes
        plugin = SLURMEnvironment(auto_requeue=True, requeue_signal=signal.SIGUSR1)
        return {
            "devices": devices,
            "num_nodes": nodes,
            "plugins": [plugin],
            "strategy": "ddp" if devices * nodes > 1 else "auto",
        }
    return {"devices": 1, "num_nodes": 1}


def _resume_point(ckpt_dir: Path, hparams: dict[str, Any]) -> Path | None:
    """The newest checkpoint in ``ckpt_dir`` written by this very configuration, if any.

    Candidates are the rolling ``last.ckpt`` and Lightning's ``hpc_ckpt_*.ckpt`` (written when
    SLURM signals the time limit). Checkpoints of other settings are removed, not resumed.
    """
    newest_first = sorted(ckpt_dir.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for ckpt in newest_first:
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)
        if dict(saved.get("hyper_parameters", {})) == dict(hparams):
            step = saved.get("global_step")
            print(f"resuming from {ckpt} (epoch {saved.get('epoch')}, step {step})")
            return ckpt
        print(f"ignoring {ckpt}: it was written with other settings")
        ckpt.unlink()
    return None


def pretrain(dataset: str | Path, out: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Train the configured backbone; write the checkpoint to ``out`` and logs beside it.

    ``params`` is the ``pretrain`` config block. Returns a summary (final losses, steps, time).
    """
    out = Path(out)
    ds = open_dataset(dataset)
    channels = [str(c) for c in ds.channel.values]
    size = int(ds.sizes["y"])
    L.seed_everything(params["seed"], workers=True)
    net = build_backbone(
        params["backbone"],
        img_size=size,
        in_chans=len(channels),
        mask_ratio=params["mask_ratio"],
        norm_pix_loss=params["norm_pix_loss"],
    )
    module = MAEPretrainer(
        net,
        backbone=params["backbone"],
        img_size=size,
        in_chans=len(channels),
        channels=channels,
        dataset_hash=ds.attrs.get("config_hash", ""),
        learning_rate=params["learning_rate"],
        weight_decay=params["weight_decay"],
        warmup_epochs=params["warmup_epochs"],
        max_epochs=params["max_epochs"],
        mask_ratio=params["mask_ratio"],
        norm_pix_loss=params["norm_pix_loss"],
    )
    data = SDODataModule(
        dataset, batch_size=params["batch_size"], num_workers=params["num_workers"]
    )
    log_dir, ckpt_dir = out.parent / "logs", out.parent / "checkpoints"
    # A retried or requeued job resumes from the newest checkpoint of the same configuration;
    # the loss history so far is kept (the CSV logger starts a new file).
    resume = _resume_point(ckpt_dir, dict(module.hparams)) if ckpt_dir.exists() else None
    earlier = log_dir / "metrics.csv"
    before = pd.read_csv(earlier) if resume and earlier.exists() else None
    shutil.rmtree(log_dir, ignore_errors=True)
    trainer = L.Trainer(
        max_epochs=params["max_epochs"],
        accelerator="auto",
        deterministic=True,
        default_root_dir=ckpt_dir,  # where Lightning's SLURM requeue writes hpc_ckpt_*.ckpt
        logger=CSVLogger(log_dir, name="", version=""),
        callbacks=[
            # One rolling checkpoint, rewritten every epoch.
            ModelCheckpoint(
                dirpath=ckpt_dir, filename="last", every_n_epochs=1, enable_version_counter=False
            )
        ],
        enable_model_summary=False,
        log_every_n_steps=1,
        enable_progress_bar=sys.stderr.isatty(),  # bars on a terminal, not in job logs
        **cluster_layout(),
    )
    trainer.fit(module, datamodule=data, ckpt_path=resume)
    # Every rank takes part in saving (it synchronises); rank 0 writes, then renames, so no
    # half-written checkpoint ever carries the output's name.
    partial = out.with_name(f"{out.stem}.partial{out.suffix}")
    trainer.save_checkpoint(partial)
    if trainer.global_rank != 0:
        return {}
    partial.replace(out)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    metrics = pd.read_csv(log_dir / "metrics.csv")
    if before is not None:
        metrics = pd.concat([before[before["epoch"] < metrics["epoch"].min()], metrics])
        metrics.to_csv(log_dir / "metrics.csv", index=False)
    history = metrics.groupby("epoch").mean(numeric_only=True)
    history.to_csv(out.parent / "loss_history.csv")
    if not (history["train_loss"].dropna().iloc[-1] < history["train_loss"].dropna().iloc[0]):
        # Not an error (a short run can be noisy) but worth seeing in the log.
        print("warning: training loss did not decrease over the run")
    summary = {
        "backbone": params["backbone"],
        "parameters": net.n_params,
        "epochs": int(trainer.current_epoch),
        "steps": int(trainer.global_step),
        "first_train_loss": float(history["train_loss"].dropna().iloc[0]),
        "final_train_loss": float(history["train_loss"].dropna().iloc[-1]),
        "final_val_loss": float(history["val_loss"].dropna().iloc[-1])
        if "val_loss" in history
        else None,
    }
    (out.parent / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
