"""Fault injection on the workflow itself: kill -9 in the middle of each stage, a deleted
report, a checkout path that a shell would expand. Nothing is lost, nothing half-written is
taken as done, nothing in a path runs."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, TINY, checkpoint_weights, snakemake, snakemake_command

pytestmark = pytest.mark.workflow


def _digest(path: Path) -> dict[str, str]:
    """What an output holds: the weights of a checkpoint (its provenance records the run's
    seconds), else the SHA-256 of every file under ``path``, by relative name."""
    if path.suffix == ".ckpt":
        weights = checkpoint_weights(path)
        return {k: hashlib.sha256(v.numpy().tobytes()).hexdigest() for k, v in weights.items()}
    files = sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _kill_when(workdir: Path, args: list[str], ready, timeout: float = 300) -> None:
    """Start snakemake, wait until ``ready()`` (the job is half-way through writing), then
    SIGKILL snakemake and every process under it at once, as a node failure would."""
    cmd, env = snakemake_command(
        workdir, "-s", str(ROOT / "workflow" / "Snakefile"), "--configfile", str(TINY),
        "--cores", "2", *args,
    )  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the job finished before it could be killed"
        assert time.monotonic() < deadline, "the job never reached the point to kill it at"
        time.sleep(0.02)
    tree = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
    for pid in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A copy of the finished tiny run (with Snakemake's metadata), to break."""
    shutil.copytree(finished_run, tmp_path / "run", symlinks=True)
    return tmp_path / "run"


# rule: (its output that is rerun, a file that exists only while the job is writing it)
STAGES = {
    "simulate_sun": ("results/synthetic", "results/synthetic.partial"),
    "pull_sdoml": ("results/data/sdoml/2011-02", "results/data/sdoml/2011-02.partial"),
    "pretrain_backbone": (  # killed after the first of two epochs: the rerun resumes
        "results/pretrain/mae_tiny/model.ckpt",
        "results/pretrain/mae_tiny/checkpoints/last.ckpt",
    ),
    "run_benchmark": ("results/f107/metrics.json", "results/f107/samples.partial.nc"),
    "render_report": ("results/f107/report.html", "results/f107/report.partial.ipynb"),
}


# Found by this test, not fixed yet: pretraining killed after its end-of-epoch checkpoint
# (last.ckpt) resumes from it but ends with other weights (max |Δw| 0.006 on the tiny config);
# from a mid-epoch checkpoint it is bit-identical (tests/test_pretrain.py).
EPOCH_END_RESUME = pytest.mark.xfail(
    reason="resume from the end-of-epoch checkpoint is not bit-identical", strict=True
)


@pytest.mark.parametrize(
    "rule",
    [pytest.param(r, marks=EPOCH_END_RESUME) if r == "pretrain_backbone" else r for r in STAGES],
)
def test_kill_9_mid_stage_then_rerun_loses_nothing(run_copy, rule):
    target, writing = STAGES[rule]
    out = run_copy / target
    before = _digest(out)
    _kill_when(run_copy, ["--forcerun", rule, "--", target], (run_copy / writing).exists)
    # Whatever the kill left is not taken as done: a dry run plans the job again.
    plan = snakemake(run_copy, "-n", "--", target)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert rule in plan.stdout + plan.stderr, "a half-written output was taken as done"
    # A killed Snakemake leaves its lock (it guards against two runs on one folder): the user
    # unlocks, as the README says, and runs again.
    assert "--unlock" in snakemake(run_copy, "--", target).stderr
    assert snakemake(run_copy, "--unlock").returncode == 0
    rerun = snakemake(run_copy, "--", target)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _digest(out) == before  # the rerun finished the same output
    assert not list(out.parent.glob(f"{out.stem}.partial*")), "a partial output was left"


def test_all_rebuilds_a_deleted_task_report(run_copy):
    (run_copy / "results" / "f107" / "report.html").unlink()
    plan = snakemake(run_copy, "-n", "all")
    out = plan.stdout + plan.stderr
    assert "render_report" in out and "task=f107" in out, out[-2000:]


def test_a_checkout_path_is_never_run_by_the_shell(tmp_path):
    """Every path in a rule's command is quoted: a checkout under a folder named ``$(touch
    …)`` runs each command with the paths as given (here with a stand-in ``sdofm``)."""
    checkout = tmp_path / "x$(touch PWNED)y"
    checkout.mkdir()
    for part in ("workflow", "config", "notebooks"):
        shutil.copytree(ROOT / part, checkout / part, symlinks=True)
    workdir = checkout / "run"
    cmd, env = snakemake_command(
        workdir, "-s", str(checkout / "workflow" / "Snakefile"), "--configfile", str(TINY),
        "-n", "-p", "--forceall", "all",
    )  # fmt: skip
    plan = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr[-2000:]
    prefix = "Shell command:"
    commands = [
        ln.split(prefix, 1)[1] for ln in (plan.stdout + plan.stderr).splitlines() if prefix in ln
    ]
    assert any(str(checkout) in c for c in commands), plan.stdout[-2000:]  # notebooks' paths
    workdir.mkdir(exist_ok=True)
    for command in commands:  # each with a stand-in `sdofm` and its log redirect cut
        command = command.split(" > ")[0]
        subprocess.run(["bash", "-c", f"sdofm() {{ :; }}; {command}"], cwd=workdir, check=False)
    assert not list(tmp_path.rglob("PWNED")), "a path in a rule's command was run by the shell"
