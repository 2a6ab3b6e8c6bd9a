"""The training processes of a job: one per GPU, the same number on every node; and SLURM's
warning before the job's time limit, heard from the moment the process starts.

Pure Python (the workflow imports it to build the ``srun`` line of the pretraining rule).
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

from sdofm import SdofmError

__all__ = [
    "REQUEUE_SIGNALS",
    "check_gpus",
    "clear_requeue_signal",
    "launcher",
    "requeue_signal",
    "tasks_per_node",
    "unwatch_requeue_signals",
    "watch_requeue_signals",
]

# SIGURG is ignored by every process that does not ask for it, so the wrappers around the
# trainer in a job step (Snakemake, the shell) live through it; SIGUSR1 is the usual choice
# where the trainer is alone in its job step.
REQUEUE_SIGNALS = (signal.SIGURG, signal.SIGUSR1)
_received: list[tuple[int, float]] = []
_previous: dict[int, Any] = {}


def _remember(signum: int, frame: Any) -> None:
    _received.append((signum, time.time()))


def watch_requeue_signals() -> None:
    """From now on, remember the signals SLURM sends before the time limit (`requeue_signal`).

    `sdofm pretrain` starts watching before its slow imports, so a warning that comes while
    the trainer starts up is acted on at its first step rather than lost.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in REQUEUE_SIGNALS:
        previous = signal.signal(sig, _remember)
        if previous is not _remember:
            _previous[sig] = previous


def unwatch_requeue_signals() -> None:
    for sig, handler in _previous.items():
        signal.signal(sig, handler)
    _previous.clear()


def requeue_signal() -> tuple[int, float] | None:
    """The first requeue signal received (its number and time), or None."""
    return _received[0] if _received else None


def clear_requeue_signal() -> None:
    _received.clear()


def tasks_per_node(spec: str) -> list[int]:
    """SLURM's tasks-per-node list (``"4(x2),3"`` -> ``[4, 4, 3]``)."""
    counts: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not m:
            msg = f"cannot read SLURM's tasks per node {spec!r}"
            raise SdofmError(msg)
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts


def check_gpus(gpus: int, per_node: int, how: str) -> None:
    """Every GPU a node has gets one process, and every process a GPU of its own."""
    if gpus == 0 or gpus == per_node:
        return
    if gpus > per_node:
        msg = (
            f"{how} starts {per_node} training process(es) per node but each sees {gpus} GPUs, "
            f"so {gpus - per_node} would sit idle: start one task per GPU (slurm profile, "
            f"set-resources pretrain_backbone: tasks_per_node: {gpus}, see the README's "
            f"cluster section), or give each node {per_node} GPU(s) (CUDA_VISIBLE_DEVICES)"
        )
    else:
        msg = (
            f"{how} starts {per_node} training processes per node but each sees only {gpus} "
            f"GPU(s): give every node {per_node} GPUs (gres: gpu:<type>:{per_node}) that every "
            f"task sees (no --gpus-per-task binding), or set tasks_per_node to {gpus}"
        )
    raise SdofmError(msg)


def launcher(resources: Mapping[str, Any], threads: int) -> str:
    """The command that starts the training processes of a Snakemake job.

    Nothing for one process per job (the job step runs the trainer); ``srun`` with one task per
    GPU when the slurm profile gives the job ``nodes`` and ``tasks_per_node``.
    """
    nodes = int(resources.get("nodes") or 1)
    per_node = int(resources.get("tasks_per_node") or 1)
    if nodes * per_node == 1:
        return ""
    return (
        f"srun --nodes={nodes} --ntasks-per-node={per_node} --cpus-per-task={threads} "
        "--kill-on-bad-exit=1"
    )
