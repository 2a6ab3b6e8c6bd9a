"""Pretrain a backbone (MAE, temporal MAE or VAE) on the ML-ready store with Lightning.

One code path from a laptop CPU to many GPUs: the hardware, precision and process layout come
from the config and from how the job was launched (``srun`` -> DDP, SLURM requeue). A killed
run resumes exactly: weights, optimiser, schedule, RNG and the position in the epoch are all in
the checkpoint, so the resumed run ends with the weights an uninterrupted run would have.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from sdofm import SdofmError
from sdofm.dataset.loader import open_dataset
from sdofm.dataset.splits import split_intervals
from sdofm.models import backbone_kwargs, build_backbone
from sdofm.models.checkpoint import unsafe_checkpoint
from sdofm.training.cluster import Requeue, cluster_layout
from sdofm.training.datamodule import SDODataModule
from sdofm.training.kept import KeepCheckpoints, publish_kept
from sdofm.training.lock import run_lock
from sdofm.training.module import Pretrainer
from sdofm.training.resume import dataset_identity, resume_point, runtime

__all__ = ["Pretrainer", "hardware", "pretrain"]


def hardware(params: dict[str, Any]) -> dict[str, Any]:
    """Accelerator and precision for the Trainer; an error if a GPU is asked for and absent.

    ``precision: auto`` is bf16 mixed precision on a GPU that has bf16, else 32-bit.
    """
    accelerator, precision = params["accelerator"], params["precision"]
    has_gpu = torch.cuda.is_available()
    if accelerator == "gpu" and not has_gpu:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        msg = (
            f"pretrain.accelerator is 'gpu' but this process sees no CUDA GPU "
            f"(CUDA_VISIBLE_DEVICES={visible}): run it on a GPU node (`--profile slurm` asks for "
            f"one) or set pretrain.accelerator to 'auto' or 'cpu'"
        )
        raise SdofmError(msg)
    on_gpu = accelerator == "gpu" or (accelerator == "auto" and has_gpu)
    if precision == "auto":
        precision = "bf16-mixed" if on_gpu and torch.cuda.is_bf16_supported() else "32-true"
    return {"accelerator": "gpu" if on_gpu else "cpu", "precision": precision}


def _loggers(params: dict[str, Any], log_dir: Path) -> list:
    loggers = [CSVLogger(log_dir, name="", version="")]
    if "tensorboard" in params["loggers"]:
        try:
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(log_dir, name="tensorboard", version=""))
        except ModuleNotFoundError as err:  # tensorboard is optional
            msg = "pretrain.loggers asks for tensorboard: `pip install tensorboard` first"
            raise SdofmError(msg) from err
    return loggers


def pretrain(dataset: str | Path, out: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Train the configured backbone; write the checkpoint to ``out`` and logs beside it.

    ``params`` is the ``pretrain`` config block. Beside ``out``: ``logs/metrics.csv``,
    ``loss_history.csv`` (per epoch), ``probe.csv``, ``loss_curve.png``,
    ``reconstructions.png``, ``summary.json`` and ``kept_checkpoints/`` (`sdofm.training.kept`).
    Returns the summary. The directory is
    locked for the whole run (`sdofm.training.lock`): a second run on it stops at once.
    """
    out = Path(out)
    with run_lock(out.parent):
        return _train(dataset, out, params)


def _train(dataset: str | Path, out: Path, params: dict[str, Any]) -> dict[str, Any]:
    from sdofm.training.callbacks import LinearProbe, ReconstructionMonitor, plot_loss_curve
    from sdofm.training.progress import LogProgress

    ds = open_dataset(dataset)
    channels = [str(c) for c in ds.channel.values]
    size = int(ds.sizes["y"])
    hw = hardware(params)
    layout = cluster_layout(torch.cuda.device_count() if hw["accelerator"] == "gpu" else 0)
    world_size = layout["devices"] * layout["num_nodes"]
    L.seed_everything(params["seed"], workers=True)
    rsun = ds.attrs.get("rsun_px")
    kwargs = backbone_kwargs(
        params, img_size=size, in_chans=len(channels), rsun_px=float(rsun) if rsun else None
    )
    net = build_backbone(params["backbone"], **kwargs)
    if params["compile"]:
        net.compile()  # in place: the state_dict keys stay those of the plain module
    frames = kwargs.get("frames", 1)
    module = Pretrainer(
        net,
        backbone=params["backbone"],
        net_kwargs=kwargs,
        channels=channels,
        frames=frames,
        spacing=params["frame_spacing"],
        dataset_hash=ds.attrs.get("config_hash", ""),
        # The time ranges of the training split: a benchmark refuses test rows inside them.
        pretrain_intervals=split_intervals(ds.time.values, ds.split.values, "train"),
        learning_rate=params["learning_rate"],
        weight_decay=params["weight_decay"],
        warmup_epochs=params["warmup_epochs"],
        max_epochs=params["max_epochs"],
        seed=params["seed"],
        kl_warmup_epochs=params["kl_warmup_epochs"] if hasattr(net, "beta") else 0,
        config={**params, **hw},  # "auto" resolved: what this run really uses
        dataset=dataset_identity(ds),
        runtime=runtime(hw["accelerator"], world_size),
    )
    data = SDODataModule(
        dataset,
        batch_size=params["batch_size"],
        num_workers=params["num_workers"],
        mask_off_disk=params["mask_off_disk"],
        frames=frames,
        spacing=params["frame_spacing"],
        seed=params["seed"],
    )
    log_dir, ckpt_dir = out.parent / "logs", out.parent / "checkpoints"
    # A retried or requeued job resumes from the newest checkpoint of the same settings.
    resume = resume_point(ckpt_dir, dict(module.hparams)) if ckpt_dir.exists() else None
    if rank_zero_only.rank == 0:  # rank 0 writes the logs; the others only train
        shutil.rmtree(log_dir, ignore_errors=True)
    checkpoints = [
        # Rolling checkpoints: one rewritten every epoch, one every N optimiser steps.
        ModelCheckpoint(
            dirpath=ckpt_dir, filename="last", every_n_epochs=1, enable_version_counter=False
        )
    ]
    if params["checkpoint_every_n_steps"]:
        checkpoints.append(
            ModelCheckpoint(
                dirpath=ckpt_dir,
                filename="step",
                every_n_train_steps=params["checkpoint_every_n_steps"],
                enable_version_counter=False,
            )
        )
    kept = KeepCheckpoints(ckpt_dir / "kept", params.get("keep_checkpoints", 0))
    probe = LinearProbe(dataset, every_n_steps=params["probe_every_n_steps"])
    monitor = ReconstructionMonitor(out.parent)
    # Bars on a terminal; in a job log, a line every N steps (loss, samples/s, ETA).
    bar = [] if sys.stderr.isatty() else [LogProgress(params["progress_every_n_steps"])]
    requeue = Requeue(ckpt_dir / "requeue.ckpt")
    trainer = L.Trainer(
        max_epochs=params["max_epochs"],
        **hw,
        deterministic=True,
        accumulate_grad_batches=params["accumulate_grad_batches"],
        default_root_dir=ckpt_dir,
        logger=_loggers(params, log_dir),
        callbacks=[*checkpoints, kept, probe, monitor, *bar, requeue],
        enable_model_summary=False,
        log_every_n_steps=1,
        use_distributed_sampler=False,  # the loader shards by (seed, epoch, rank) itself
        **layout,
    )
    try:  # loads tensors and plain types only, like `resume_point` before it
        trainer.fit(module, datamodule=data, ckpt_path=resume, weights_only=True)
    except pickle.UnpicklingError as err:  # replaced since `resume_point` read it
        raise unsafe_checkpoint(resume, err) from None
    # Every rank takes part in saving (it synchronises); rank 0 writes, then renames, so no
    # half-written checkpoint ever carries the output's name.
    partial = out.with_name(f"{out.stem}.partial{out.suffix}")
    trainer.save_checkpoint(partial)
    if trainer.global_rank != 0:
        return {}
    history = module.loss_history()
    history.to_csv(out.parent / "loss_history.csv")
    probe_table = probe.table()
    probe_table.to_csv(out.parent / "probe.csv", index=False)
    plot_loss_curve(history, probe_table, out.parent / "loss_curve.png")
    train = history["train_loss"].dropna()
    if not train.iloc[-1] < train.iloc[0]:
        # Not an error (a short run can be noisy) but worth seeing in the log.
        print("warning: training loss did not decrease over the run")
    summary = {
        "backbone": params["backbone"],
        "parameters": sum(p.numel() for p in net.parameters()),
        "accelerator": hw["accelerator"],
        "precision": hw["precision"],
        "epochs": int(trainer.current_epoch),
        "steps": int(trainer.global_step),
        "first_train_loss": float(train.iloc[0]),
        "final_train_loss": float(train.iloc[-1]),
        "final_val_loss": float(history["val_loss"].dropna().iloc[-1])
        if "val_loss" in history and history["val_loss"].notna().any()
        else None,
        "final_probe_r2": float(probe_table["probe_r2"].iloc[-1]) if len(probe_table) else None,
        "reconstruction_mse": monitor.errors,
        "requeues": requeue.history,  # SLURM signalled the time limit: checkpoint, requeue
        # What the weights depend on beyond the config: the data and the numerics (the
        # runtime of the last resumed part; a resume refuses other numerics).
        "provenance": {"dataset": module.hparams.dataset, **module.hparams.runtime},
    }
    (out.parent / "summary.json").write_text(json.dumps(summary, indent=2))
    publish_kept(kept.folder, out.parent)
    partial.replace(out)  # last: the output exists only once everything beside it does
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return summary
