"""The training-process layout from srun/torchrun, its launcher, and GPUs that would sit idle."""

from __future__ import annotations

import os
import signal

import lightning as L
import pytest
import torch

from sdofm import SdofmError
from sdofm.training.cluster import Requeue, cluster_layout
from sdofm.training.layout import launcher, tasks_per_node


def srun(tasks_per_node: str, ntasks: int, *, per_node_flag: bool = True) -> dict[str, str]:
    env = {
        "SLURM_JOB_ID": "77",
        "SLURM_STEP_ID": "0",
        "SLURM_NTASKS": str(ntasks),
        "SLURM_STEP_TASKS_PER_NODE": tasks_per_node,
    }
    if per_node_flag:
        env["SLURM_NTASKS_PER_NODE"] = tasks_per_node.split("(")[0]
    return env


def test_tasks_per_node():
    assert tasks_per_node("4(x2)") == [4, 4]
    assert tasks_per_node("4(x2),3") == [4, 4, 3]
    assert tasks_per_node("1") == [1]
    with pytest.raises(SdofmError, match="cannot read"):
        tasks_per_node("four")


def test_plain_process_is_one_device():
    assert cluster_layout(0, {}) == {"devices": 1, "num_nodes": 1}
    assert cluster_layout(1, {}) == {"devices": 1, "num_nodes": 1}


@pytest.mark.parametrize(
    ("spec", "ntasks", "gpus", "devices", "nodes", "strategy"),
    [
        ("1", 1, 1, 1, 1, "auto"),  # 1 GPU
        ("4", 4, 4, 4, 1, "ddp"),  # 1 node x 4 GPUs
        ("4(x2)", 8, 4, 4, 2, "ddp"),  # 2 nodes x 4 GPUs
        ("2", 2, 0, 2, 1, "ddp"),  # 2 CPU ranks (gloo)
    ],
)
def test_srun_layouts(spec, ntasks, gpus, devices, nodes, strategy):
    layout = cluster_layout(gpus, srun(spec, ntasks))
    assert (layout["devices"], layout["num_nodes"], layout["strategy"]) == (
        devices,
        nodes,
        strategy,
    )
    assert not layout["plugins"][0].auto_requeue  # `Requeue` checkpoints at a step boundary


def test_torchrun_layout():
    env = {"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4", "RANK": "5", "LOCAL_RANK": "1"}
    layout = cluster_layout(4, env)
    assert (layout["devices"], layout["num_nodes"], layout["strategy"]) == (4, 2, "ddp")


@pytest.mark.parametrize(
    ("gpus", "env", "message"),
    [
        # What plain `gpu: 4` gave: one task with four GPUs.
        (4, srun("1", 1), r"1 training process\(es\) per node but each sees 4 GPUs, so 3 would"),
        (2, {}, r"this single process starts 1 .* sees 2 GPUs, so 1 would sit idle"),
        (4, srun("2(x2)", 4), r"tasks_per_node: 4"),
        (1, srun("4", 4), r"each sees only 1 GPU\(s\): give every node 4 GPUs"),
        (8, {"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4"}, r"torchrun starts 4 .* 4 would sit"),
    ],
)
def test_idle_or_shared_gpus_are_an_error(gpus, env, message):
    with pytest.raises(SdofmError, match=message):
        cluster_layout(gpus, env)


def test_uneven_or_unnamed_tasks_per_node_are_an_error():
    with pytest.raises(SdofmError, match="same number on every node"):
        cluster_layout(0, srun("3,1", 4))
    with pytest.raises(SdofmError, match="without --ntasks-per-node"):
        cluster_layout(0, srun("2", 2, per_node_flag=False))


def test_launcher_from_job_resources():
    assert launcher({}, 8) == ""
    assert launcher({"nodes": 1, "tasks_per_node": 1}, 8) == ""
    assert launcher({"nodes": 2, "tasks_per_node": 4}, 8) == (
        "srun --nodes=2 --ntasks-per-node=4 --cpus-per-task=8 --kill-on-bad-exit=1"
    )


class _Line(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.fit_ = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.fit_(batch).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _WarnAt(L.Callback):
    """SLURM's warning before the time limit, arriving during batch ``at``."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.at:
            os.kill(os.getpid(), signal.SIGURG)


def test_a_single_process_job_checkpoints_at_the_step_and_requeues(tmp_path, monkeypatch):
    """One process, no DDP (a one-GPU job): the warning during step 3 makes it save at that step,
    ask SLURM to requeue it, and wait; if SLURM does not stop it, it says so."""
    record = tmp_path / "scontrol.txt"
    (tmp_path / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {record}\n')
    (tmp_path / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    requeue = Requeue(tmp_path / "requeue.ckpt", grace_seconds=1)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=10,
        callbacks=[_WarnAt(2), requeue],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(SdofmError, match="SLURM did not stop job 77 within 1 s"):
        trainer.fit(_Line(), torch.utils.data.DataLoader(torch.ones(10, 2), batch_size=1))
    assert record.read_text().split() == ["requeue", "77"]
    (entry,) = requeue.history
    assert entry["signal"] == "SIGURG" and entry["ranks"] == [0] and entry["step"] == 3
    assert entry["signalled_at"] <= entry["saved_at"]
    saved = torch.load(tmp_path / "requeue.ckpt", weights_only=False)
    assert saved["global_step"] == 3
