"""DDP: each rank's shard of an epoch, and two-rank pretraining on CPU (gloo) started the way
``srun`` starts it (one process per task, SLURM's variables), killed mid-epoch and resumed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from sdofm import SdofmError
from sdofm.training.datamodule import _EpochSampler
from tests.conftest import checkpoint_weights


def test_ranks_split_each_epoch_between_them():
    """Every sample once per epoch over the ranks (padded to equal shares), and each rank's
    shard depends on (seed, epoch, rank) only."""
    n, world = 11, 3
    shards = [_EpochSampler(n, shuffle=True, seed=5, rank=r, world=world) for r in range(world)]
    epoch0 = [list(s) for s in shards]
    assert all(len(s) == len(shard) == 4 for s, shard in zip(shards, epoch0, strict=True))
    together = sum(epoch0, [])
    assert sorted(set(together)) == list(range(n)) and len(together) == 12  # one repeat
    epoch1 = [list(s) for s in shards]
    assert epoch1 != epoch0  # a new order each epoch
    again = _EpochSampler(n, shuffle=True, seed=5, rank=1, world=world)
    again.epoch, again.skip = 1, 2  # resuming epoch 1 after two samples
    assert list(again) == epoch1[1][2:]
    single = list(_EpochSampler(n, shuffle=True, seed=5))
    assert sorted(single) == list(range(n))
    with pytest.raises(SdofmError, match="rank 3 is not one of the 3 ranks"):
        _EpochSampler(n, shuffle=True, seed=5, rank=3, world=world)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def srun_env(rank: int, world: int, port: int) -> dict[str, str]:
    """The environment ``srun --ntasks=<world>`` gives task ``rank`` on one node."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "MASTER_", "LOCAL_", "WORLD_", "RANK", "CUDA_VISIBLE"))
    }
    return env | {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "sdofm-ddp-test",
        "SLURM_STEP_ID": "0",
        "SLURM_NTASKS": str(world),
        "SLURM_TASKS_PER_NODE": str(world),
        "SLURM_NTASKS_PER_NODE": str(world),
        "SLURM_NNODES": "1",
        "SLURM_NODELIST": "localhost",
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": str(rank),
        "SLURM_NODEID": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "CUDA_VISIBLE_DEVICES": "",
        "SDOFM_PROGRESS_SECONDS": "0",
    }


def start_ranks(
    dataset, out: Path, params: dict, world: int = 2, path: str | None = None
) -> list[subprocess.Popen]:
    """``sdofm pretrain`` as ``world`` DDP ranks; rank r logs to ``out.parent / rank<r>.log``.

    ``path`` goes before PATH (stand-ins for SLURM's commands)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    cmd = [sys.executable, "-m", "sdofm.cli", "--threads", "1", "pretrain"]
    cmd += ["--params", json.dumps(params), "--dataset", str(dataset), "--out", str(out)]
    procs = []
    for rank in range(world):
        with open(out.parent / f"rank{rank}.log", "a") as log:
            procs.append(
                subprocess.Popen(
                    cmd, env=with_path(srun_env(rank, world, port), path), stdout=log, stderr=log
                )
            )
    return procs


def with_path(env: dict[str, str], path: str | None) -> dict[str, str]:
    return env | {"PATH": f"{path}{os.pathsep}{env['PATH']}"} if path else env


def finish(procs: list[subprocess.Popen], out: Path) -> str:
    for proc in procs:
        proc.wait(timeout=600)
    log = (out.parent / "rank0.log").read_text()
    assert [p.returncode for p in procs] == [0] * len(procs), log[-3000:]
    return log


@pytest.fixture(scope="module")
def params(resume_params):
    # 95 training samples: 48 per rank, 3 batches of 16 an epoch; a checkpoint every 4 steps.
    return resume_params | {"progress_every_n_steps": 2}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, dataset, params):
    out = tmp_path_factory.mktemp("ddp") / "model.ckpt"
    return out, finish(start_ranks(dataset, out, params), out)


@pytest.mark.ddp
def test_two_ranks_train_together(two_ranks):
    out, log = two_ranks
    summary = json.loads(log.strip().splitlines()[-1])
    assert summary["steps"] == 9  # 3 epochs of 3 steps: each rank has half the samples
    assert "on 2 process(es)" in log
    history = pd.read_csv(out.parent / "loss_history.csv")
    assert list(history["epoch"]) == [0, 1, 2]
    # Progress lines in the job log: loss, samples/s and ETA every 2 steps, rank 0 only.
    lines = [line for line in log.splitlines() if " samples/s | " in line]
    assert [int(line.split(" step ")[1].split("/")[0]) for line in lines] == [2, 4, 6, 8, 9]
    assert all(" loss " in line and " ETA " in line for line in lines)
    assert " samples/s | " not in (out.parent / "rank1.log").read_text()


@pytest.mark.ddp
def test_two_ranks_killed_mid_epoch_resume_exactly(dataset, params, two_ranks, tmp_path):
    """Both ranks SIGKILLed after a mid-epoch checkpoint; restarted, they resume from it and
    end with exactly the weights and loss history of the uninterrupted two-rank run."""
    out = tmp_path / "model.ckpt"
    step = tmp_path / "checkpoints" / "step.ckpt"
    procs = start_ranks(dataset, out, params)
    deadline = time.time() + 300
    while not step.exists() and time.time() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    time.sleep(0.3)  # let rank 0 finish writing it
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert step.exists() and not out.exists()
    (tmp_path / "checkpoints" / "last.ckpt").unlink(missing_ok=True)
    saved = torch.load(step, map_location="cpu", weights_only=True)
    assert saved["global_step"] % 3 != 0  # mid-epoch

    log = finish(start_ranks(dataset, out, params), out)
    assert f"resuming from {step}" in log
    ref, got = checkpoint_weights(two_ranks[0]), checkpoint_weights(out)
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    pd.testing.assert_frame_equal(
        pd.read_csv(out.parent / "loss_history.csv"),
        pd.read_csv(two_ranks[0].parent / "loss_history.csv"),
    )


@pytest.mark.ddp
def test_signal_to_one_rank_checkpoints_requeues_and_resumes_exactly(
    dataset, params, two_ranks, tmp_path
):
    """SIGURG (SLURM's warning before the time limit) reaches rank 1 only: both ranks save
    requeue.ckpt after the step they are on, rank 0 asks SLURM to requeue the job (a stand-in
    `scontrol` records it) and they wait to be stopped; restarted, they resume from it and end
    with the uninterrupted run's weights, the requeue (its signal, and the rank it reached) in
    the summary that rank 0 writes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "scontrol.txt"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {record}\n')
    (bin_dir / "scontrol").chmod(0o755)
    out = tmp_path / "run" / "model.ckpt"
    procs = start_ranks(dataset, out, params, path=str(bin_dir))
    log = out.parent / "rank0.log"
    deadline = time.time() + 300
    while "training 9 steps" not in log.read_text() and time.time() < deadline:
        assert all(p.poll() is None for p in procs), log.read_text()[-3000:]
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGURG)
    while not record.exists() and time.time() < deadline:
        assert all(p.poll() is None for p in procs), log.read_text()[-3000:]
        time.sleep(0.1)
    assert record.read_text().split() == ["requeue", "4242"]
    time.sleep(1)
    assert all(p.poll() is None for p in procs)  # waiting for SLURM to stop them
    for proc in procs:
        proc.send_signal(signal.SIGKILL)  # what SLURM does after its requeue
        proc.wait()
    requeue = out.parent / "checkpoints" / "requeue.ckpt"
    assert "SIGURG at step" in log.read_text()
    assert not out.exists()

    text = finish(start_ranks(dataset, out, params, path=str(bin_dir)), out)
    assert f"resuming from {requeue}" in text
    ref, got = checkpoint_weights(two_ranks[0]), checkpoint_weights(out)
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    (entry,) = json.loads((out.parent / "summary.json").read_text())["requeues"]
    assert entry["signal"] == "SIGURG" and entry["ranks"] == [1] and 0 < entry["step"] < 9
    assert entry["signalled_at"] <= entry["saved_at"] <= entry["resumed_at"]
