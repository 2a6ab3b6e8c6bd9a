"""Pretraining: a killed run resumes from its last checkpoint; stale checkpoints are ignored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import torch

from sdofm.training.pretrain import cluster_layout

RUN = """
import json, sys
from sdofm.training.pretrain import pretrain
print(json.dumps(pretrain(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))))
"""


def _start(dataset, out, params) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUN, str(dataset), str(out), json.dumps(params)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_killed_run_resumes_from_last_checkpoint(dataset, tiny_config, tmp_path):
    params = {**tiny_config["pretrain"], "max_epochs": 12}
    out = tmp_path / "pretrain" / "model.ckpt"
    last = out.parent / "checkpoints" / "last.ckpt"
    proc = _start(dataset, out, params)
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)  # let it get a little further
    proc.send_signal(signal.SIGKILL)  # a node failure: no chance to clean up
    proc.wait()
    assert last.exists() and not out.exists()
    epoch_at_kill = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    assert 0 <= epoch_at_kill < params["max_epochs"] - 1

    resumed = _start(dataset, out, params)
    text = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, text
    assert "resuming from" in text
    summary = json.loads(text.strip().splitlines()[-1])
    assert summary["epochs"] == params["max_epochs"]
    assert out.exists() and not last.parent.exists()  # checkpoints are cleared once done
    history = pd.read_csv(out.parent / "loss_history.csv")
    assert list(history["epoch"]) == list(range(params["max_epochs"]))  # nothing lost


def test_checkpoint_of_other_settings_is_not_resumed(dataset, tiny_config, tmp_path):
    params = {**tiny_config["pretrain"], "max_epochs": 1}
    out = tmp_path / "model.ckpt"
    ckpt_dir = out.parent / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    stale = {"hyper_parameters": {"backbone": "mae_base"}, "state_dict": {}}
    torch.save(stale, ckpt_dir / "last.ckpt")
    proc = _start(dataset, out, params)
    text = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, text
    assert "ignoring" in text and "resuming" not in text


def test_cluster_layout_from_srun_environment(monkeypatch):
    for var in list(os.environ):
        if var.startswith("SLURM_"):
            monkeypatch.delenv(var)
    assert cluster_layout() == {"devices": 1, "num_nodes": 1}
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_NNODES", "2")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4(x2)")
    layout = cluster_layout()
    assert (layout["devices"], layout["num_nodes"], layout["strategy"]) == (4, 2, "ddp")
    assert layout["plugins"][0].auto_requeue
