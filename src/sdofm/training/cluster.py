"""How pretraining runs on a cluster: the process layout, its launcher, and SLURM requeue.

One training process per GPU, on one or more nodes, started by ``srun`` (or ``torchrun``); the
number of processes per node must match the GPUs each node has, so no GPU sits idle. Before a
job's time limit SLURM signals the trainer (``--signal=URG@300``, or ``USR1``); it checkpoints at
the next optimiser step, asks SLURM to requeue the job, and the requeued job resumes from there.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.plugins.environments import SLURMEnvironment

from sdofm import SdofmError
from sdofm.training import layout
from sdofm.training.layout import check_gpus, tasks_per_node

__all__ = ["Requeue", "cluster_layout"]

log = logging.getLogger(__name__)


def cluster_layout(gpus: int = 0, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Trainer settings (devices, nodes, strategy) for how this process was launched.

    ``gpus`` is how many CUDA devices this process sees (0 on a CPU). Under ``srun`` (one
    process per task, on one or more nodes) Lightning's SLURM environment wires up DDP; under
    ``torchrun`` its TorchElastic environment does; a plain process trains on one device. A
    layout that would leave a GPU idle, or put two processes on one, is an error saying what
    to change.
    """
    env = os.environ if env is None else env
    if "SLURM_STEP_ID" in env and "SLURM_NTASKS" in env:
        spec = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
        counts = tasks_per_node(spec) if spec else [int(env["SLURM_NTASKS"])]
        if len(set(counts)) > 1:
            msg = (
                f"srun started {spec} tasks on the nodes of this job step; DDP needs the same "
                f"number on every node: set tasks_per_node (one per GPU) instead of a task count"
            )
            raise SdofmError(msg)
        if len(counts) * counts[0] > 1 and "SLURM_NTASKS_PER_NODE" not in env:
            msg = (
                "srun started several tasks without --ntasks-per-node, which Lightning needs: "
                "give the job tasks_per_node (slurm profile) rather than a task count"
            )
            raise SdofmError(msg)
        check_gpus(gpus, counts[0], "srun")
        layout = {"devices": counts[0], "num_nodes": len(counts)}
        # Lightning's own requeue handler is off: `Requeue` checkpoints at a step boundary.
        layout["plugins"] = [SLURMEnvironment(auto_requeue=False)]
    elif "LOCAL_WORLD_SIZE" in env and "WORLD_SIZE" in env:  # torchrun
        per_node = int(env["LOCAL_WORLD_SIZE"])
        check_gpus(gpus, per_node, "torchrun")
        layout = {"devices": per_node, "num_nodes": int(env["WORLD_SIZE"]) // per_node}
    else:
        check_gpus(gpus, 1, "this single process")
        return {"devices": 1, "num_nodes": 1}
    layout["strategy"] = "ddp" if layout["devices"] * layout["num_nodes"] > 1 else "auto"
    return layout


class Requeue(L.Callback):
    """Checkpoint and requeue a SLURM job that was told its time is nearly up.

    The signal handler only raises a flag. After the next optimiser step every rank learns
    which ranks were signalled, with what and when (one all-gather), they save ``path``
    together, rank 0 asks SLURM to requeue the job (``scontrol requeue``), and the ranks wait
    for SLURM to stop them. The requeued job resumes from ``path`` exactly, as from any step
    checkpoint. ``history`` (in the checkpoint, so it outlives the requeue) records each
    requeue: step, the first signal and the ranks it had reached, when it came, when the
    checkpoint was written and when training resumed. Outside a SLURM job it does nothing.
    """

    def __init__(self, path: str | Path, *, grace_seconds: float = 600.0):
        self.path, self.grace = Path(path), grace_seconds
        self.job = os.environ.get("SLURM_JOB_ID")
        if os.environ.get("SLURM_ARRAY_JOB_ID"):
            self.job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        self.history: list[dict[str, Any]] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.job:
            layout.watch_requeue_signals()  # (`sdofm pretrain` watches from its start)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        layout.unwatch_requeue_signals()

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state["history"])
        last = self.history[-1] if self.history else {}
        if last.get("requeued", True) and last and "resumed_at" not in last:
            if self.history[-1]["saved_at"] is None and self.path.exists():
                self.history[-1]["saved_at"] = self.path.stat().st_mtime  # written just then
            self.history[-1]["resumed_at"] = time.time()
            if rank_zero_only.rank == 0:
                log.info("resumed after a requeue: %s", json.dumps(self.history[-1]))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.job:
            return
        stepped = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        if not (stepped or batch_idx + 1 == trainer.num_training_batches):
            return  # accumulated gradients are not in a checkpoint: wait for the step
        signum, at = layout.requeue_signal() or (0, math.inf)
        mine = torch.tensor([float(signum), at], dtype=torch.float64, device=pl_module.device)
        every = trainer.strategy.all_gather(mine).reshape(-1, 2).cpu()  # (rank, [signal, time])
        ranks = torch.nonzero(every[:, 0] > 0).flatten().tolist()
        if not ranks:
            return
        first = int(torch.argmin(every[:, 1]))  # SLURM may reach the ranks in any order
        signum, at = int(every[first, 0]), float(every[first, 1])
        name = signal.Signals(signum).name
        self.history.append(
            {
                "step": trainer.global_step,
                "signal": name,
                "ranks": ranks,  # those it had reached by this step
                "signalled_at": at,
                "saved_at": None,
            }
        )
        trainer.save_checkpoint(self.path)
        self.history[-1]["saved_at"] = time.time()  # (the checkpoint has None: its mtime)
        requeued = False
        if trainer.is_global_zero:
            log.warning(
                "%s at step %d: checkpoint %s written after %.1f s; requeueing SLURM job %s",
                name,
                trainer.global_step,
                self.path,
                self.history[-1]["saved_at"] - at,
                self.job,
            )
            done = subprocess.run(["scontrol", "requeue", self.job], capture_output=True, text=True)
            requeued = done.returncode == 0
            if not requeued:  # carry on: a retry after the time limit resumes from the checkpoint
                log.error("scontrol requeue %s failed: %s", self.job, done.stderr.strip())
        layout.clear_requeue_signal()
        if not trainer.strategy.broadcast(requeued, src=0):
            self.history[-1]["requeued"] = False
            return
        deadline = time.monotonic() + self.grace  # SLURM stops the job now
        while time.monotonic() < deadline:
            time.sleep(1)
        msg = f"SLURM did not stop job {self.job} within {self.grace:.0f} s of its requeue"
        raise SdofmError(msg)
