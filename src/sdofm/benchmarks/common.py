"""What every benchmark shares: fitting heads with early stopping, bootstrap CIs, provenance."""

from __future__ import annotations

import copy
import json
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from sdofm import SdofmError
from sdofm.config import config_hash
from sdofm.io import atomic_output, file_sha256

__all__ = [
    "Standardise",
    "TaskInputs",
    "bootstrap_ci",
    "ci",
    "fit",
    "provenance",
    "split_rows",
    "write_json",
    "write_outputs",
]


@dataclass(frozen=True)
class TaskInputs:
    """What every task reads: the ML-ready store, the embeddings, the backbone, the event data.

    ``events`` is the folder `sdofm events` writes (``flares.csv``, ``f107.csv``); ``truth`` is
    the synthetic Sun's ``ground_truth`` folder (``degradation.csv``, ``flares.csv``, ...), None on
    real data, where a task skips its planted-truth checks.
    """

    dataset: Path
    embeddings: Path
    checkpoint: Path
    events: Path | None = None
    truth: Path | None = None

    def open(self) -> tuple[xr.Dataset, xr.Dataset]:
        """The data set and its embeddings, checked to cover the same time steps."""
        from sdofm.dataset.loader import open_dataset
        from sdofm.embeddings.extract import open_embeddings

        ds, emb = open_dataset(self.dataset), open_embeddings(self.embeddings)
        if not np.array_equal(emb.time.values, ds.time.values):
            msg = f"embeddings {self.embeddings} do not cover the time steps of {self.dataset}"
            raise SdofmError(msg + ": re-run `sdofm embed`")
        return ds, emb

    def event_file(self, name: str) -> Path:
        """``events/name``, or a clear error when the task was run without event data."""
        if self.events is None or not (Path(self.events) / name).exists():
            msg = f"no {name} in the event folder {self.events} (run `sdofm events`)"
            raise SdofmError(msg)
        return Path(self.events) / name


class Standardise(nn.Module):
    """A fixed standardisation, ``(x - mean) / std``, with statistics of the training rows."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def split_rows(
    ds: xr.Dataset, usable: np.ndarray, task: str, need: tuple[str, ...] = ("train", "test")
) -> dict[str, np.ndarray]:
    """Row numbers of each split among ``usable`` rows; an error if a needed split is empty."""
    split = ds.split.values
    rows = {s: np.flatnonzero(usable & (split == s)) for s in ("train", "val", "test")}
    for s in need:
        if len(rows[s]) < 2:
            msg = f"{task}: the {s} split has {len(rows[s])} usable time steps"
            raise SdofmError(msg)
    return rows


def ci(point: float, lo: float, hi: float) -> dict[str, Any]:
    """One metric as metrics.json stores it: value and 95 % interval."""
    return {"value": float(point), "ci95": [float(lo), float(hi)]}


def fit(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    loss_fn: Callable = nn.functional.mse_loss,
    epochs: int = 200,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    patience: int = 30,
    seed: int = 0,
) -> nn.Module:
    """Train ``model`` on (x, y) with Adam; keep the weights with the lowest validation loss."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    x, y = train
    best, best_state, stale = float("inf"), copy.deepcopy(model.state_dict()), 0
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
        if len(val[0]) == 0:  # nothing to stop on: train all epochs, keep the last weights
            best_state = model.state_dict()
            continue
        model.eval()
        with torch.no_grad():
            v = float(loss_fn(model(val[0]), val[1]))
        if v < best:
            best, best_state, stale = v, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale > patience:
                break
    model.load_state_dict(best_state)
    return model.eval()


def bootstrap_ci(
    stat: Callable[[np.ndarray], np.ndarray],
    n: int,
    *,
    resamples: int,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point value and percentile CI of ``stat(indices)`` over bootstrap resamples of n rows."""
    rng = np.random.default_rng(seed)
    point = np.asarray(stat(np.arange(n)))
    draws = np.stack([np.asarray(stat(rng.integers(0, n, n))) for _ in range(resamples)])
    lo, hi = np.percentile(draws, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return point, lo, hi


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(params: dict[str, Any], *, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """Where a result came from: config hash, checkpoint hash, package versions, git commit."""
    packages = ["sdofm", "torch", "lightning", "numpy", "xarray", "zarr", "sunpy", "snakemake"]
    return {
        "config_hash": config_hash(params),
        "config": params,
        "checkpoint_sha256": file_sha256(checkpoint) if checkpoint else None,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "packages": {p: version(p) for p in packages},
    }


def write_json(obj: dict[str, Any], path: str | Path) -> None:
    """Write JSON atomically (NaN becomes null, so any JSON reader accepts it)."""

    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        if isinstance(v, float | np.floating):
            return None if not np.isfinite(v) else float(v)
        if isinstance(v, np.integer):
            return int(v)
        return v

    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(clean(obj), indent=2))


def write_outputs(result: dict[str, Any], predictions: pd.DataFrame, out_dir: str | Path) -> None:
    """``predictions.csv`` then ``metrics.json`` (last: Snakemake's sign that the task is done)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_dir / "predictions.csv") as tmp:
        predictions.to_csv(tmp, index=False)
    write_json(result, out_dir / "metrics.json")
