"""The GPU check: what one GPU does with our code, in under 5 minutes on an H200.

1. MFU of ``mae_base`` at 512² (12 channels) in bf16, eager and ``torch.compile``d (FLOPs
   counted with ``FlopCounterMode``; ``perf/pretrain_throughput.py``, against ``--peak-tflops``);
2. loader -> GPU: ``SDOImages`` through a ``DataLoader`` (pinned memory, workers) into the GPU,
   normalised there (``Normaliser.torch``, what training does), in samples/s and MB/s;
3. a 1-GPU ``sdofm pretrain`` of a few steps (the tiny configuration, ``accelerator: gpu``,
   ``precision: auto`` = bf16) that writes a step checkpoint and its model.

Without CUDA it says so and exits 0 (CI never depends on it). Each part has a time limit.

Usage: ``python perf/gpu_check.py [--peak-tflops 989] [--workers 8]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from ddp_throughput import tiny_dataset
from loader_throughput import build_store
from torch.utils.data import DataLoader

from sdofm.dataset.loader import SDOImages, collate
from sdofm.training.datamodule import _worker_init

HERE = Path(__file__).resolve().parent


def mfu(peak_tflops: float) -> None:
    cmd = [sys.executable, str(HERE / "pretrain_throughput.py"), "--presets", "mae_base"]
    cmd += ["--sizes", "512", "--devices", "cuda", "--modes", "eager", "bf16", "compile-bf16"]
    cmd += ["--batch", "32", "--warmup", "2", "--steps", "10", "--no-embed"]
    cmd += ["--peak-tflops", str(peak_tflops)]
    subprocess.run(cmd, check=True, timeout=180)


def loader_to_gpu(tmp: Path, workers: int, device: torch.device, samples: int = 256) -> None:
    store = tmp / "store512.zarr"
    build_store(store, 512, samples)
    data = SDOImages(store, torch.arange(samples).numpy(), normalise=False)
    loader = DataLoader(
        data,
        batch_size=16,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        collate_fn=collate,
        worker_init_fn=_worker_init,
        persistent_workers=True,
        prefetch_factor=4,
    )
    for _ in range(2):  # the first pass fills the page cache and starts the workers
        _sync(device)
        t0 = time.perf_counter()
        n = 0
        for x, _ in loader:
            z = data.norm.torch(x.to(device, non_blocking=True))
            n += len(z)
        _sync(device)
        seconds = time.perf_counter() - t0
    mb = n * x[0].numel() * 4 / 1e6
    print(
        f"loader -> GPU (512², {x.shape[1]} channels, {workers} workers, normalised on the GPU): "
        f"{n / seconds:.0f} samples/s, {mb / seconds:.0f} MB/s (second pass, warm)"
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def pretrain_on_gpu(tmp: Path, device: torch.device) -> None:
    dataset = tiny_dataset(tmp / "tiny")
    params = yaml.safe_load((HERE.parent / "config" / "config.yaml").read_text())["pretrain"]
    params |= {
        "accelerator": "gpu" if device.type == "cuda" else "cpu",
        "precision": "auto",
        "max_epochs": 1,
        "checkpoint_every_n_steps": 2,
        "progress_every_n_steps": 2,
        "probe_every_n_steps": 0,
    }
    out = tmp / "pretrain" / "model.ckpt"
    cmd = [sys.executable, "-m", "sdofm.cli", "pretrain", "--params", json.dumps(params)]
    cmd += ["--dataset", str(dataset), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    rates = re.findall(r"\| ([\d.]+) samples/s \|", done.stderr)
    ckpt = torch.load(out, map_location="cpu", weights_only=True)
    print(
        f"sdofm pretrain on 1 GPU: {summary['steps']} steps, {summary['accelerator']}, "
        f"{summary['precision']}, {rates[-1] if rates else '?'} samples/s, checkpoint "
        f"{out.stat().st_size / 1e6:.1f} MB at step {ckpt['global_step']}, "
        f"{summary['seconds']:.0f} s with start-up"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument(
        "--try-on-cpu", action="store_true", help="parts 2 and 3 on the CPU (checks the script)"
    )
    args = parser.parse_args()
    device = torch.device("cpu" if args.try_on_cpu else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing to check (skipped)")
        return
    name = torch.cuda.get_device_name() if device.type == "cuda" else "none (--try-on-cpu)"
    print(f"GPU: {name}, torch {torch.__version__}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        parts = [
            lambda: loader_to_gpu(Path(tmp), args.workers, device),
            lambda: pretrain_on_gpu(Path(tmp), device),
        ]
        if device.type == "cuda":
            parts.insert(0, lambda: mfu(args.peak_tflops))
        for part in parts:
            part()
            print(f"  ({time.perf_counter() - started:.0f} s so far)", flush=True)


if __name__ == "__main__":
    main()
