"""`snakemake --profile slurm` against a real single-node SLURM cluster (scripts/slurm-cluster.sh).

One run of the tiny config through SLURM to one report, with pretraining as 2 SLURM tasks (CPU
DDP). While it trains, the test brings its time limit close: SLURM's signal before the limit
(the profile's --signal) makes the trainers checkpoint and requeue the job, which resumes
exactly, as one Snakemake job that succeeds. A benchmark job is killed once (scancel):
Snakemake retries it and still finishes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import ROOT, TINY, checkpoint_weights, snakemake_command

pytestmark = pytest.mark.slurm

CLUSTER = ROOT / "scripts" / "slurm-cluster.sh"


def _can_run_cluster() -> bool:
    return os.geteuid() == 0 and (shutil.which("slurmctld") or shutil.which("apt-get")) is not None


@pytest.fixture(scope="module")
def cluster():
    if not _can_run_cluster():
        pytest.skip("needs root on a Debian machine to run a local SLURM cluster")
    subprocess.run([str(CLUSTER), "start"], check=True, capture_output=True, timeout=600)
    _cancel_orphans()
    yield
    # Left running for other tests or a developer; `scripts/slurm-cluster.sh stop` ends it.


def _squeue(fmt: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", fmt], capture_output=True, text=True)
    return out.stdout.split("\n") if out.returncode == 0 else []


def _running(rule: str, run_id: str | None) -> str | None:
    """The SLURM id of a running job of ``rule`` in this Snakemake run (the plugin names every
    job of a run by its run ID; other runs may share the cluster), if any."""
    if not run_id:
        return None
    for line in _squeue("%i %T %k %j"):
        parts = line.split()
        if (
            len(parts) == 4
            and parts[1] == "RUNNING"
            and parts[2].startswith(f"rule_{rule}")
            and parts[3] == run_id
        ):
            return parts[0]
    return None


def _cancel_orphans() -> None:
    """Cancel the jobs of test runs that died (their Snakemake gone, e.g. a killed session): on a
    one-node cluster they would hold its memory and keep this run's jobs pending."""
    alive = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            alive.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    for line in _squeue("%i %Z"):
        job, _, workdir = line.partition(" ")
        if "/pytest-of-" in workdir and not any(workdir in cmd for cmd in alive):
            subprocess.run(["scancel", job], check=False)


def _show(job: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout


# Pretraining as 2 tasks on the test node (CPU DDP; its one GPU shared by name only), with the
# profile's signal five minutes before a 10-minute limit.
PRETRAIN_LAYOUT = {
    "slurm_partition": "gpu",
    "nodes": 1,
    "tasks_per_node": 2,
    "gres": "gpu:h200:1",
    "gpu": 0,
    "mpi": "srun",
    "runtime": 10,
    "slurm_extra": "'--signal=URG@300'",
}
# Long enough that SLURM (which checks signal deadlines about once a minute) signals the
# trainers well before they finish, however fast the machine: 120 epochs took 54 s on one.
PRETRAIN = {"max_epochs": 300, "probe_every_n_steps": 0, "progress_every_n_steps": 30}


class _Events:
    """What the test does to the run's jobs, and when."""

    def __init__(self, workdir: Path):
        self.train_log = workdir / "results" / "logs" / "pretrain_backbone" / "mae_tiny.log"
        self.snakemake_log = workdir / "snakemake.out"
        self.pretrain = self.cancelled = self.run_id = None
        self.times: dict[str, float] = {}

    def step(self) -> None:
        if self.run_id is None and self.snakemake_log.exists():
            found = re.search(r"SLURM run ID: (\S+)", self.snakemake_log.read_text())
            self.run_id = found.group(1) if found else None
        if self.pretrain is None and (job := _running("pretrain_backbone", self.run_id)):
            if self.train_log.exists() and "training " in self.train_log.read_text():
                # Its time limit 5 min away: SLURM's URG@300 comes at its next check (<= 60 s).
                elapsed = subprocess.run(
                    ["squeue", "-h", "-j", job, "-o", "%M"], capture_output=True, text=True
                ).stdout.strip()
                seconds = sum(int(x) * 60**i for i, x in enumerate(reversed(elapsed.split(":"))))
                limit = seconds + 300
                spec = f"{limit // 3600}:{limit % 3600 // 60:02d}:{limit % 60:02d}"
                subprocess.run(
                    ["scontrol", "update", f"jobid={job}", f"timelimit={spec}"], check=True
                )
                self.pretrain, self.times["limit_shortened"] = job, time.time()
        elif (
            self.pretrain
            and "requeued" not in self.times
            and re.search(r"Restarts=[1-9]", _show(self.pretrain))
        ):
            self.times["requeued"] = time.time()  # the limit back: no second requeue
            subprocess.run(
                ["scontrol", "update", f"jobid={self.pretrain}", "timelimit=10"], check=True
            )
        if self.cancelled is None and (job := _running("train_arms", self.run_id)):
            time.sleep(2)  # let it start
            subprocess.run(["scancel", job], check=True)
            self.cancelled = job


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """Run the workflow to one report through SLURM (one task exercises every kind of job)."""
    workdir = tmp_path_factory.mktemp("slurm")
    profile = yaml.safe_load((ROOT / "slurm" / "config.yaml").read_text())
    profile["set-resources"]["pretrain_backbone"] = PRETRAIN_LAYOUT
    profile["set-threads"] = {"pretrain_backbone": 1}
    (workdir / "profile").mkdir()
    (workdir / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    overrides = workdir / "pretrain.yaml"
    overrides.write_text(yaml.safe_dump({"pretrain": PRETRAIN}))
    target = "results/virtual_eve/report.html"
    cmd, env = snakemake_command(
        workdir,
        "--profile",
        str(workdir / "profile"),
        target,
        "--configfile",
        str(TINY),
        str(overrides),
    )
    log = workdir / "snakemake.out"
    events = _Events(workdir)
    started = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None and time.time() - started < 1500:
            events.step()
            time.sleep(0.5)
        if proc.poll() is None:
            proc.kill()
    return {
        "workdir": workdir,
        "rc": proc.returncode,
        "log": log.read_text(),
        "cancelled": events.cancelled,
        "pretrain": events.pretrain,
        "times": events.times | {"started": started, "finished": time.time()},
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
    for rule in ("build_dataset", "pretrain_backbone", "embed_month", "embed_times"):
        assert rule in ids, f"{rule} was not submitted to SLURM: {ids}"
    assert len(ids["embed_month"]) == 3  # one job per month, then the merge
    # Small rules shared one submission (groups in the profile).
    assert any(k.startswith("prepare_") and "simulate_sun" in k for k in ids), ids
    # The monthly pulls went as one job array (the plugin's --slurm-array-jobs).
    m = re.search(
        r"Submitted array job .* SLURM job ID (\d+)\. The individual task IDs are 1-3",
        slurm_run["log"],
    )
    assert m, slurm_run["log"][-4000:]
    # SLURM itself ran and finished the jobs (its job-completion log).
    done = Path("/var/log/slurm/jobcomp.log").read_text()
    for job in ids["embed_times"] + ids["embed_month"] + ids["build_dataset"]:
        assert re.search(rf"JobId={job} .*JobState=COMPLETED", done), job
    tasks = [
        re.search(r"ArrayTaskId=(\d+)", line).group(1)
        for line in done.splitlines()
        if f" ArrayJobId={m.group(1)} " in line and "JobState=COMPLETED" in line
    ]
    assert sorted(tasks) == ["1", "2", "3"], tasks


def test_gpu_rules_request_gpus(slurm_run):
    ids = _job_ids(slurm_run["log"])
    for rule, expect_gpu in [
        ("pretrain_backbone", True),
        ("embed_month", True),
        ("train_arms", True),
        ("train_baselines", True),
        ("run_benchmark", False),  # the scoring of the saved arms: no GPU
        ("embed_times", False),
        ("build_dataset", False),
    ]:
        assert ("gres:gpu" in _show(ids[rule][-1])) == expect_gpu, (rule, _show(ids[rule][-1]))


def test_job_killed_by_slurm_is_retried(slurm_run):
    assert slurm_run["cancelled"], "the benchmark job was never seen running"
    ids = _job_ids(slurm_run["log"])["train_arms"]
    assert ids[0] == slurm_run["cancelled"] and len(ids) == 2, ids
    done = Path("/var/log/slurm/jobcomp.log").read_text()
    assert re.search(rf"JobId={ids[0]} .*JobState=CANCELLED", done)
    assert re.search(rf"JobId={ids[1]} .*JobState=COMPLETED", done)


def test_pretraining_in_two_tasks_requeues_and_resumes_exactly(slurm_run, tiny_config):
    """The signal before the time limit reached the trainers only: they checkpointed and
    requeued the job, which resumed. Snakemake submitted it once and saw it succeed (no retry
    spent), and the weights are those of an uninterrupted 2-rank run."""
    from tests.test_ddp import finish, start_ranks

    assert slurm_run["rc"] == 0, slurm_run["log"][-4000:]
    (job,) = _job_ids(slurm_run["log"])["pretrain_backbone"]  # submitted once
    assert job == slurm_run["pretrain"]
    shown = _show(job)
    assert re.search(r"Restarts=1\b", shown) and re.search(r"NumTasks=2\b", shown), shown
    done = Path("/var/log/slurm/jobcomp.log").read_text()
    assert re.search(rf"JobId={job} .*JobState=COMPLETED", done)
    out = slurm_run["workdir"] / "results" / "pretrain" / "mae_tiny"
    (requeue,) = json.loads((out / "summary.json").read_text())["requeues"]
    assert requeue["signal"] == "SIGURG" and requeue["ranks"] in ([0], [1], [0, 1])
    log = (
        slurm_run["workdir"] / "results" / "logs" / "pretrain_backbone" / "mae_tiny.log"
    ).read_text()
    assert "on 2 process(es)" in log
    assert re.search(r"resuming from .*/checkpoints/requeue\.ckpt", log)
    t = slurm_run["times"]
    signal_after = requeue["signalled_at"] - t["limit_shortened"]
    print(
        f"\nrequeue at step {requeue['step']}: signal {signal_after:.0f} s after the limit was "
        "brought within reach; checkpoint written "
        f"{requeue['saved_at'] - requeue['signalled_at']:.1f} s after the signal; training again "
        f"{requeue['resumed_at'] - requeue['saved_at']:.0f} s later (SLURM holds a requeued job "
        f"~120 s); whole run {t['finished'] - t['started']:.0f} s"
    )

    params = {**tiny_config["pretrain"], **PRETRAIN}
    ref = slurm_run["workdir"] / "reference" / "model.ckpt"
    dataset = slurm_run["workdir"] / "results" / "data" / "dataset.zarr"
    finish(start_ranks(dataset, ref, params), ref)
    theirs = torch.load(ref, map_location="cpu", weights_only=True)
    ours = torch.load(out / "model.ckpt", map_location="cpu", weights_only=True)
    for part in ("config", "dataset"):  # (the runtime record names the host's threads)
        assert theirs["hyper_parameters"][part] == ours["hyper_parameters"][part]
    for k, v in checkpoint_weights(ref).items():
        assert torch.equal(v, ours["state_dict"][k]), k
