"""Shared fixtures: a tiny synthetic Sun, its pulled copy and its ML-ready store (built once)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sdofm.config import validate_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny.yaml"
SNAKEFILE = ROOT / "workflow" / "Snakefile"


def snakemake_command(workdir: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run this repository's workflow in ``workdir``.

    The virtual environment's ``bin`` goes first on PATH, as `make run` does, so the rules find
    ``sdofm``.
    """
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "--directory", str(workdir), *args]
    return cmd, env


def snakemake(
    workdir: Path, *args: str, configfile: Path = TINY, **run
) -> subprocess.CompletedProcess:
    """Run the workflow on ``configfile`` (the tiny config) in ``workdir`` with 2 cores."""
    cmd, env = snakemake_command(
        workdir, "-s", str(SNAKEFILE), "--configfile", str(configfile), "--cores", "2", *args
    )
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, **run)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """The whole workflow (`all`) run once on the tiny config; tests must leave it as it is."""
    workdir = tmp_path_factory.mktemp("workflow")
    run = snakemake(workdir, "all")
    assert run.returncode == 0, run.stderr[-3000:]
    return workdir


def working_tree_copy(dest: Path) -> Path:
    """A copy of the checkout's files (committed or not, links kept) in ``dest``, as a fresh
    clone with the current edits would have them."""
    import subprocess
    import tarfile

    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest / ".checkout.tar", "w") as tar:
        for name in files:
            if os.path.lexists(ROOT / name):
                tar.add(ROOT / name, arcname=name, recursive=False)
    with tarfile.open(dest / ".checkout.tar") as tar:
        tar.extractall(dest, filter="tar")
    (dest / ".checkout.tar").unlink()
    return dest


# Snakemake runs in one Python process (its imports once), each argv after the options in
# sys.argv[2]; one JSON line per run: {"argv": ..., "code": exit status, "output": its log}.
_SNAKEMAKE_RUNS = """
import contextlib, io, json, logging, sys
from snakemake.cli import main
for argv in json.loads(sys.argv[1]):
    argv = [*json.loads(sys.argv[2]), *argv]
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logging.getLogger().addHandler(handler)
    with contextlib.redirect_stderr(buffer), contextlib.redirect_stdout(buffer):
        try:
            main(argv)
            code = 0
        except SystemExit as exit_:  # sys.exit("message"): the message, and status 1
            code = exit_.code if isinstance(exit_.code, int) else 1
            buffer.write("" if isinstance(exit_.code, int) else str(exit_.code))
    logging.getLogger().removeHandler(handler)
    print(json.dumps({"argv": argv[len(json.loads(sys.argv[2])):], "code": code,
                      "output": buffer.getvalue()}), flush=True)
"""


def snakemake_runs(workdir: Path, commands: list[list[str]], *, dry: bool = True) -> list[dict]:
    """``snakemake -n <argv>`` (without -n if not ``dry``) for each argv in ``commands``, in one
    process, from ``workdir`` (the repository root of a copy, or give -s and --directory): exit
    status and output of each."""
    import json
    import subprocess

    _, env = snakemake_command(workdir)
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _SNAKEMAKE_RUNS,
            json.dumps(commands),
            json.dumps(["-n"] if dry else []),
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    results = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(commands), run.stderr[-3000:]
    return results


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    """The default config with tests/configs/tiny.yaml merged over it, as Snakemake does."""
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return validate_config(_merge(base, yaml.safe_load(TINY.read_text())))


@pytest.fixture(scope="session")
def resume_params(tiny_config) -> dict:
    """Tiny pretraining for the kill/resume tests: 3 epochs, a checkpoint every 4 steps."""
    return {
        **tiny_config["pretrain"],
        "max_epochs": 3,
        "checkpoint_every_n_steps": 4,
        "probe_every_n_steps": 5,
    }


def checkpoint_weights(ckpt) -> dict:
    """The state dict of a checkpoint file (tensors only: our checkpoints need nothing else)."""
    import torch

    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="session")
def synthetic_mirror(tmp_path_factory, tiny_config) -> Path:
    from sdofm.sources.synthetic import SyntheticSun, generate

    out = tmp_path_factory.mktemp("synthetic") / "mirror"
    generate(SyntheticSun(**tiny_config["synthetic"]), out)
    return out


@pytest.fixture(scope="session")
def pulled(tmp_path_factory, tiny_config, synthetic_mirror) -> Path:
    from sdofm.sources.sdoml import pull_store

    data = tiny_config["data"]
    start, end = pd.Timestamp(data["start"]), pd.Timestamp(data["end"])
    out = tmp_path_factory.mktemp("pulled")
    for kind, store, names in [
        ("aia", "sdomlv2_small.zarr", data["aia_channels"]),
        ("hmi", "sdomlv2_hmi.zarr", data["hmi_components"]),
        ("eve", "sdomlv2_eve.zarr", data["eve_lines"]),
    ]:
        pull_store(
            f"file://{synthetic_mirror / store}",
            out / f"{kind}.zarr",
            kind=kind,
            start=start,
            end=end,
            names=names,
        )
    return out


@pytest.fixture(scope="session")
def dataset(tmp_path_factory, tiny_config, pulled) -> Path:
    from sdofm.dataset.build import build_dataset

    out = tmp_path_factory.mktemp("dataset") / "dataset.zarr"
    build_dataset(pulled, out, {"data": tiny_config["data"], "splits": tiny_config["splits"]})
    return out


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, tiny_config, dataset) -> Path:
    """A tiny backbone pretrained for one epoch on the tiny data set."""
    from sdofm.training.pretrain import pretrain

    out = tmp_path_factory.mktemp("pretrain") / "model.ckpt"
    pretrain(dataset, out, dict(tiny_config["pretrain"], max_epochs=1))
    return out


@pytest.fixture(scope="session")
def embeddings(tmp_path_factory, tiny_config, dataset, checkpoint) -> Path:
    from sdofm.embeddings.extract import extract_embeddings

    out = tmp_path_factory.mktemp("embeddings") / "embeddings.zarr"
    extract_embeddings(dataset, checkpoint, out, dict(tiny_config["embed"]))
    return out


@pytest.fixture(scope="session")
def events(tmp_path_factory, tiny_config, synthetic_mirror) -> Path:
    """The tiny Sun's flare list, F10.7 and GOES XRS as `sdofm events` writes them."""
    from sdofm.sources.events import collect_events

    out = tmp_path_factory.mktemp("events") / "events"
    data = tiny_config["data"]
    collect_events(
        synthetic_mirror / "flares.csv",
        synthetic_mirror / "f107.csv",
        out,
        start=data["start"],
        end=data["end"],
        goes=synthetic_mirror / "goes_xrs.csv",
    )
    return out


@pytest.fixture(scope="session")
def task_inputs(dataset, embeddings, checkpoint, events, synthetic_mirror):
    """Everything a benchmark task reads, for the tiny configuration."""
    from sdofm.benchmarks.runner import TaskInputs

    return TaskInputs(dataset, embeddings, checkpoint, events, synthetic_mirror / "ground_truth")


def run_tiny_task(task: str, tiny_config: dict, task_inputs, out, **changes):
    """Run one benchmark task under the tiny config's protocol; returns metrics.json's content."""
    import torch

    from sdofm.benchmarks import TASKS
    from sdofm.benchmarks.runner import run_task
    from sdofm.config import validate_block

    params = validate_block(copy.deepcopy(tiny_config["benchmarks"][task]), "benchmarks", task)
    protocol = copy.deepcopy(tiny_config["protocol"]) | changes.pop("protocol", {})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the rule runs it (`sdofm --threads 1`): small nets gain nothing
    try:
        return run_task(TASKS[task], task_inputs, out, params | changes | {"protocol": protocol})
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def virtual_eve_run(tmp_path_factory, tiny_config, task_inputs):
    """virtual_eve run once on the tiny backbone: (metrics.json content, output folder)."""
    out = tmp_path_factory.mktemp("virtual_eve")
    return run_tiny_task("virtual_eve", tiny_config, task_inputs, out), out
