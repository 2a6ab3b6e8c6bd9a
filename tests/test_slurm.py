"""`snakemake --profile slurm` against a real single-node SLURM cluster (scripts/slurm-cluster.sh).

One run of the tiny config through SLURM to the report, during which SLURM kills the
pretraining job once (scancel): Snakemake must retry it and still finish.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, TINY, snakemake_command

pytestmark = pytest.mark.slurm

CLUSTER = ROOT / "scripts" / "slurm-cluster.sh"


def _can_run_cluster() -> bool:
    return os.geteuid() == 0 and (shutil.which("slurmctld") or shutil.which("apt-get")) is not None


@pytest.fixture(scope="module")
def cluster():
    if not _can_run_cluster():
        pytest.skip("needs root on a Debian machine to run a local SLURM cluster")
    subprocess.run([str(CLUSTER), "start"], check=True, capture_output=True, timeout=600)
    yield
    # Left running for other tests or a developer; `scripts/slurm-cluster.sh stop` ends it.


def _squeue(fmt: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", fmt], capture_output=True, text=True)
    return out.stdout.split("\n") if out.returncode == 0 else []


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """Run the workflow to one report through SLURM; cancel the first pretraining job once it
    runs. (One task is enough to exercise every kind of job; the others are the same rules.)"""
    workdir = tmp_path_factory.mktemp("slurm")
    target = "results/virtual_eve/report.html"
    cmd, env = snakemake_command(workdir, "--profile", "slurm", target, "--configfile", str(TINY))
    log = workdir / "snakemake.out"
    started = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        cancelled = None
        while proc.poll() is None and time.time() - started < 900:
            if cancelled is None:
                for line in _squeue("%i %T %k"):
                    parts = line.split()
                    if len(parts) == 3 and parts[1] == "RUNNING" and "pretrain" in parts[2]:
                        time.sleep(2)  # let it start training
                        subprocess.run(["scancel", parts[0]], check=True)
                        cancelled = parts[0]
            time.sleep(0.5)
        if proc.poll() is None:
            proc.kill()
    return {
        "workdir": workdir,
        "rc": proc.returncode,
        "log": log.read_text(),
        "cancelled": cancelled,
        "seconds": time.time() - started,
    }


def _job_ids(log: str) -> dict[str, list[str]]:
    """SLURM job ids per rule, from the plugin's submission lines."""
    ids: dict[str, list[str]] = {}
    for m in re.finditer(r"submitted with SLURM jobid (\d+) \(log: .*/(?:rule|group)_(\w+?)/", log):
        ids.setdefault(m.group(2), []).append(m.group(1))
    return ids


def test_workflow_completes_through_slurm(slurm_run):
    assert slurm_run["rc"] == 0, slurm_run["log"][-4000:]
    report = slurm_run["workdir"] / "results" / "virtual_eve" / "report.html"
    assert report.exists()
    ids = _job_ids(slurm_run["log"])
    for rule in ("build_dataset", "pretrain_backbone", "embed_times", "run_benchmark"):
        assert rule in ids, f"{rule} was not submitted to SLURM: {ids}"
    # Small rules shared one submission (groups in the profile).
    assert any(k.startswith("prepare_") and "pull_sdoml" in k for k in ids), ids
    # SLURM itself ran and finished the jobs (its job-completion log).
    done = Path("/var/log/slurm/jobcomp.log").read_text()
    for job in ids["embed_times"] + ids["run_benchmark"] + ids["build_dataset"]:
        assert re.search(rf"JobId={job} .*JobState=COMPLETED", done), job


def test_gpu_rules_request_gpus(slurm_run):
    ids = _job_ids(slurm_run["log"])
    for rule, expect_gpu in [
        ("pretrain_backbone", True),
        ("embed_times", True),
        ("run_benchmark", True),
        ("build_dataset", False),
    ]:
        shown = subprocess.run(
            ["scontrol", "show", "job", ids[rule][-1]], capture_output=True, text=True, check=True
        ).stdout
        assert ("gres:gpu" in shown) == expect_gpu, (rule, shown)


def test_job_killed_by_slurm_is_retried(slurm_run):
    assert slurm_run["cancelled"], "the pretraining job was never seen running"
    ids = _job_ids(slurm_run["log"])["pretrain_backbone"]
    assert ids[0] == slurm_run["cancelled"] and len(ids) == 2, ids
    done = Path("/var/log/slurm/jobcomp.log").read_text()
    assert re.search(rf"JobId={ids[0]} .*JobState=CANCELLED", done)
    assert re.search(rf"JobId={ids[1]} .*JobState=COMPLETED", done)
    assert (slurm_run["workdir"] / "results" / "pretrain" / "mae_tiny" / "model.ckpt").exists()


def test_pretraining_requeues_on_signal_and_resumes(cluster, dataset, tiny_config, tmp_path):
    """SIGUSR1 (what `--signal=USR1@300` sends before the time limit): Lightning checkpoints and
    requeues the job; the requeued job resumes mid-run and finishes with the whole history."""
    params = {**tiny_config["pretrain"], "max_epochs": 150}
    out = tmp_path / "pretrain" / "model.ckpt"
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/bash\n"
        f"#SBATCH --gpus=1 --mem=4000 --open-mode=append -o {tmp_path}/slurm.out\n"
        f"export PATH={Path(sys.executable).parent}:$PATH\n"
        f"srun sdofm pretrain --params '{json.dumps(params)}' --dataset {dataset} --out {out}\n"
    )
    job = subprocess.run(
        ["sbatch", "--parsable", str(script)], capture_output=True, text=True, check=True
    ).stdout.strip()
    last = out.parent / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline:
        time.sleep(0.5)
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    deadline = time.time() + 600  # SLURM holds a requeued job back for a while before restarting
    while not out.exists() and time.time() < deadline:
        time.sleep(2)
    log = (tmp_path / "slurm.out").read_text()
    assert "Requeued SLURM job" in log, log[-3000:]
    # The newest checkpoint of the run: Lightning's hpc_ckpt from the signal, or the epoch's
    # last.ckpt when the epoch ended between the signal and the requeue.
    assert re.search(r"resuming from .*(hpc_ckpt_\d+|last)\.ckpt", log), log[-3000:]
    assert out.exists()
    history = pd.read_csv(out.parent / "loss_history.csv")
    assert list(history["epoch"]) == list(range(params["max_epochs"]))
