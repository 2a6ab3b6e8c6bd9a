"""The training processes of a job: one per GPU, the same number on every node.

Pure Python (the workflow imports it to build the ``srun`` line of the pretraining rule).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sdofm import SdofmError

__all__ = ["check_gpus", "launcher", "tasks_per_node"]


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
