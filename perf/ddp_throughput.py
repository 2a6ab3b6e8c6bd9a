"""Pretraining samples/s with two DDP ranks (gloo, CPU) against one process, side by side.

The same ``sdofm pretrain`` on the same store: one process with 2 threads, one with 1 thread,
and 2 ranks with 1 thread each started by ``torchrun`` (one process per core, as on a GPU node
one process per GPU). The figure is the job's samples/s over all ranks from the last progress
line of each run (training only: start-up and the final outputs are not in it). Without
``--dataset`` the tiny test configuration is built first with Snakemake in a temporary folder.

Usage: ``python perf/ddp_throughput.py [--dataset results/data/dataset.zarr] [--epochs 8]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RATE = re.compile(r"step (\d+)/(\d+) loss \S+ \| ([\d.]+) samples/s")


def tiny_dataset(workdir: Path) -> Path:
    """The tiny test configuration's ML-ready store, built by the workflow."""
    cmd = [sys.executable, "-m", "snakemake", "results/data/dataset.zarr", "--cores", "2"]
    cmd += ["--directory", str(workdir), "--quiet", "--configfile"]
    cmd += [str(ROOT / "tests" / "configs" / "tiny.yaml")]
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    return workdir / "results" / "data" / "dataset.zarr"


def run(dataset: Path, out: Path, params: dict, ranks: int, threads: int) -> float:
    """Train; the samples/s of the last progress line."""
    sdofm = [sys.executable, "-m", "sdofm.cli", "--threads", str(threads), "pretrain"]
    if ranks > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        sdofm = [*launch, f"--nproc-per-node={ranks}", "-m", "sdofm.cli", *sdofm[3:]]
    cmd = [*sdofm, "--params", json.dumps(params), "--dataset", str(dataset), "--out", str(out)]
    env = os.environ | {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
    rates = RATE.findall(done.stderr)
    return float(rates[-1][2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, help="an ML-ready store (default: build tiny)")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["pretrain"]
    params = base | {
        "max_epochs": args.epochs,
        "probe_every_n_steps": 0,  # the probe is the same work on every rank: not training
        "checkpoint_every_n_steps": 0,
        "progress_every_n_steps": 5,
    }
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or tiny_dataset(Path(tmp))
        rows = []
        for ranks, threads in ((1, 2), (1, 1), (2, 1)):
            rate = run(
                dataset, Path(tmp) / f"r{ranks}t{threads}" / "model.ckpt", params, ranks, threads
            )
            rows.append((ranks, threads, rate))
            print(f"{ranks} rank(s) x {threads} thread(s): {rate:8.1f} samples/s", flush=True)
    one, two = rows[0][2], rows[2][2]
    print(f"2 ranks x 1 thread / 1 rank x 2 threads: {two / one:.2f}")
    print(f"2 ranks x 1 thread / 1 rank x 1 thread:  {two / rows[1][2]:.2f}")


if __name__ == "__main__":
    main()
