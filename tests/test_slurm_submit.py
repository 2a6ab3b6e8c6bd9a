"""What `snakemake --profile slurm` submits: the plugin's own sbatch line for the README's GPU
layouts (a stand-in `sbatch` records it), and the threads a cluster job gets."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, snakemake_command

# Stand-ins for the SLURM client commands the plugin calls; `sbatch` records its command line
# and refuses, so Snakemake stops after the submission.
FAKES = {
    "sbatch": 'printf "%s\\n" "$*" >> "$SBATCH_RECORD"; echo "refused by the test" >&2; exit 1',
    "scontrol": 'echo "MinJobAge = 600 sec"; echo "MaxArraySize = 1001"',
    "sinfo": "echo gpu",
    "squeue": "true",
    "sacct": "true",
    "sacctmgr": "true",
    "sshare": "true",
}


def readme_layouts() -> list[dict]:
    """The `pretrain_backbone` entries of the README's cluster section, in order."""
    blocks = re.findall(
        r"```yaml\n(  pretrain_backbone:\n.*?)```", (ROOT / "README.md").read_text(), re.S
    )
    return [yaml.safe_load(b)["pretrain_backbone"] for b in blocks]


def profile_with(tmp_path: Path, entry: dict) -> Path:
    profile = yaml.safe_load((ROOT / "slurm" / "config.yaml").read_text())
    profile["set-resources"]["pretrain_backbone"] = entry
    out = tmp_path / "profile"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(profile))
    return out


def submit(tmp_path: Path, profile: Path) -> str:
    """The sbatch line the plugin builds for the pretraining job."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    work = tmp_path / "work"
    (work / "results" / "data" / "dataset.zarr").mkdir(parents=True)  # pretraining's input
    record = tmp_path / "sbatch.txt"
    cmd, env = snakemake_command(
        work, "--profile", str(profile), "--retries", "0", "results/pretrain/mae_tiny/model.ckpt"
    )
    env = env | {"PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", "SBATCH_RECORD": str(record)}
    env = {k: v for k, v in env.items() if not k.startswith("SLURM_")}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert record.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    lines = record.read_text().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_readme_one_gpu_layout_is_the_profile():
    profile = yaml.safe_load((ROOT / "slurm" / "config.yaml").read_text())
    assert len(readme_layouts()) == 3
    assert readme_layouts()[0] == profile["set-resources"]["pretrain_backbone"]


@pytest.mark.parametrize(
    ("layout", "wanted", "unwanted"),
    [
        (0, ["--gpus=h200:1", "--cpus-per-task=8"], ["--ntasks-per-node", "--gres", "--nodes"]),
        (
            1,
            ["--nodes=1", "--ntasks-per-node=4", "--gres=gpu:h200:4", "--cpus-per-task=8"],
            ["--gpus=", "--ntasks-per-gpu"],
        ),
        (
            2,
            ["--nodes=2", "--ntasks-per-node=4", "--gres=gpu:h200:4", "--cpus-per-task=8"],
            ["--gpus=", "--ntasks-per-gpu"],
        ),
    ],
    ids=["1 GPU", "1 node x 4 GPUs", "2 nodes x 4 GPUs"],
)
def test_sbatch_line_of_each_gpu_layout(tmp_path, layout, wanted, unwanted):
    line = submit(tmp_path, profile_with(tmp_path, readme_layouts()[layout]))
    args = shlex.split(line.split(" --wrap=")[0])
    for flag in wanted:
        assert flag in args, (flag, line)
    for flag in unwanted:
        assert not any(a.startswith(flag) for a in args), (flag, line)
    assert "--signal=URG@300" in args and "-p" in args and args[args.index("-p") + 1] == "gpu"
    assert args[args.index("-t") + 1] == "720"


def dry_run(*args: str) -> str:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "-n", "-p", *args]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def _pretrain_job(text: str) -> str:
    return text.split("rule pretrain_backbone:")[1].split("\n\n")[0]


def test_cluster_threads_are_not_capped_by_the_workflow_profile(tmp_path):
    out = dry_run(
        "--profile",
        "slurm",
        "-R",
        "pretrain_backbone",
        "--set-threads",
        "pretrain_backbone=16",
        "-d",
        str(tmp_path),
    )
    job = _pretrain_job(out)
    assert "threads: 16" in job, job
    assert "sdofm --threads 16 pretrain" in out


def test_several_gpus_are_started_with_srun(tmp_path):
    profile = profile_with(tmp_path, readme_layouts()[2])
    out = dry_run("--profile", str(profile), "-R", "pretrain_backbone", "-d", str(tmp_path))
    assert (
        "srun --nodes=2 --ntasks-per-node=4 --cpus-per-task=8 --kill-on-bad-exit=1 sdofm "
        "--threads 8 pretrain" in out
    )
