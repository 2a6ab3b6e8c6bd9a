"""Compute embeddings for every valid time step and write them as an xarray Zarr store."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch.utils.data import DataLoader

from sdofm import SdofmError
from sdofm.dataset.build import partition_of
from sdofm.dataset.loader import SDOImages, SDOStacks, collate, open_dataset
from sdofm.io import atomic_output, file_sha256
from sdofm.models.checkpoint import load_backbone
from sdofm.progress import progress

__all__ = ["compute_embeddings", "extract_embeddings", "merge_embeddings", "open_embeddings"]


def _inputs(
    dataset: str | Path, ds: xr.Dataset, hp: dict[str, Any], rows: np.ndarray
) -> SDOImages | SDOStacks:
    """What the backbone reads for each time step in ``rows``: its image, or the stack ending
    on it (whose older frames may lie before ``rows``)."""
    if hp["frames"] > 1:
        return SDOStacks(
            dataset, frames=hp["frames"], spacing=hp["spacing"], split=None, ending_in=rows
        )
    return SDOImages(dataset, rows[ds.valid.values[rows]])


def _period(ds: xr.Dataset, period: str | None) -> np.ndarray:
    """Positions of the time steps of partition ``period`` (``2011-01``), or of every step."""
    if period is None:
        return np.arange(ds.sizes["time"])
    months = int(ds.attrs.get("partition_months", 1))
    rows = np.flatnonzero(partition_of(pd.DatetimeIndex(ds.time.values), months) == period)
    if len(rows) == 0:
        msg = f"the data set has no time step in {period}"
        raise SdofmError(msg)
    return rows


def _store(net, x, at, emb, tok, n_time: int, tokens: bool):
    """Embed batch ``x`` into rows ``at`` of ``emb`` (and ``tok``), allocated at first use."""
    z = net.embed(x).float().cpu().numpy()
    if emb is None:
        emb = np.full((n_time, z.shape[1]), np.nan, np.float32)
    emb[at] = z[: len(at)]
    if tokens:
        t = net.tokens(x)
        t = (t[:, :, -1] if t.ndim == 5 else t).float().cpu().numpy()
        if tok is None:
            tok = np.full((n_time, *t.shape[1:]), np.nan, np.float32)
        tok[at] = t[: len(at)]
    return emb, tok


def extract_embeddings(
    dataset: str | Path,
    checkpoint: str | Path,
    out: str | Path,
    params: dict[str, Any],
    *,
    period: str | None = None,
) -> dict[str, Any]:
    """Write ``embedding(time, feature)`` for every time step of ``dataset`` to ``out``.

    With ``period`` (a month, ``2011-01``) only the steps of that month, as one part for
    `merge_embeddings` (the workflow embeds month by month, in parallel).

    Rows without a usable sample (or, for a temporal backbone, without a full stack of frames
    ending on them) are NaN. With ``params["tokens"]`` the latent grid is written too, as
    ``tokens(time, token_feature, ty, tx)`` (the newest time slot for a temporal backbone).
    The store carries the split of each row and the checkpoint hash, so a benchmark can check
    it uses embeddings of the backbone it expects.
    """
    ds = open_dataset(dataset)
    net, hp = load_backbone(checkpoint)
    if list(hp["channels"]) != [str(c) for c in ds.channel.values]:
        msg = (
            f"checkpoint {checkpoint} was trained on channels {hp['channels']} but {dataset} "
            f"has {[str(c) for c in ds.channel.values]}: re-run pretraining on this data set"
        )
        raise SdofmError(msg)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    steps = _period(ds, period)
    started = time.perf_counter()
    emb, tok, n_rows = compute_embeddings(
        dataset,
        ds,
        net,
        hp,
        batch_size=params["batch_size"],
        tokens=params.get("tokens"),
        device=device,
        rows=steps if period else None,
        label=f"embed {period or 'all'}",
    )
    ds = ds.isel(time=steps)
    seconds = time.perf_counter() - started
    variables = {
        "embedding": (("time", "feature"), emb),
        "split": ("time", ds.split.values),
        "valid": ("time", ds.valid.values),
    }
    if tok is not None:
        variables["tokens"] = (("time", "token_feature", "ty", "tx"), tok)
    what = "[CLS token, mean token] of the unmasked encoder"
    if hp["backbone"].startswith("vae_"):
        what = "posterior mean of the latent grid, pooled"
    out_ds = xr.Dataset(
        variables,
        coords={"time": ds.time.values, "feature": np.arange(emb.shape[1])},
        attrs={
            "backbone": hp["backbone"],
            "checkpoint_sha256": file_sha256(checkpoint),
            "dataset_config_hash": ds.attrs.get("config_hash", ""),
            "description": what
            + (f" over {hp['frames']}-frame stacks" if hp["frames"] > 1 else ""),
        },
    )
    with atomic_output(out) as tmp:
        out_ds.to_zarr(tmp, mode="w", zarr_format=2, consolidated=True)
    return {
        "rows": n_rows,
        "features": int(emb.shape[1]),
        "samples_per_second": round(n_rows / max(seconds, 1e-9), 1),
        "device": str(device),
        **out_ds.attrs,
    }


def compute_embeddings(
    dataset: str | Path,
    ds: xr.Dataset,
    net: torch.nn.Module,
    hp: dict[str, Any],
    *,
    batch_size: int,
    tokens: bool = False,
    device: torch.device | str = "cpu",
    rows: np.ndarray | None = None,
    label: str = "embed",
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """``net.embed`` (and ``net.tokens``) of the time steps ``rows`` (default: all), as
    (len(rows), F) arrays, NaN where a step has no usable sample.

    Returns (embeddings, tokens or None, number of rows embedded). A subset of rows without a
    usable step (a month of gaps) is all NaN; the whole data set without one is an error.
    """
    net = net.to(device).eval()
    steps = np.arange(ds.sizes["time"]) if rows is None else np.asarray(rows)
    data = _inputs(dataset, ds, hp, steps)
    if len(data) == 0 and rows is None:
        msg = f"{dataset} has no time step the backbone can embed"
        raise SdofmError(msg)
    position = np.full(int(steps.max()) + 1, -1)
    position[steps] = np.arange(len(steps))  # row of the data set -> row of this output
    loader = DataLoader(data, batch_size=batch_size, collate_fn=collate)
    emb = tok = None
    with torch.inference_mode(), progress(len(data), label, "samples") as bar:
        for x, idx in loader:
            at = position[idx.numpy()]
            emb, tok = _store(net, x.to(device), at, emb, tok, len(steps), tokens)
            bar.update(len(at))
        if emb is None:  # no usable step among ``rows``: NaN rows of the right width
            c, t = ds.sizes["channel"], hp["frames"]
            x = torch.zeros(1, c, *([t] if t > 1 else []), ds.sizes["y"], ds.sizes["x"])
            emb, tok = _store(net, x.to(device), np.empty(0, int), emb, tok, len(steps), tokens)
    return emb, tok, len(data)


def merge_embeddings(parts: list[str | Path], dataset: str | Path, out: str | Path) -> dict:
    """Join the monthly parts of `extract_embeddings` into one store for every time step of
    ``dataset`` (the parts in any order; each month exactly once, from one checkpoint)."""
    stores = sorted((xr.open_zarr(p, consolidated=True) for p in parts), key=lambda d: d.time[0])
    keys = ("backbone", "checkpoint_sha256", "dataset_config_hash")
    if len({tuple(d.attrs.get(k) for k in keys) for d in stores}) != 1:
        msg = "the embedding parts come from different checkpoints or data sets: re-embed them"
        raise SdofmError(msg)
    merged = xr.concat(stores, "time", combine_attrs="override")
    expected = open_dataset(dataset).time.values
    if not np.array_equal(merged.time.values, expected):
        msg = f"the embedding parts do not cover the time steps of {dataset} once each"
        raise SdofmError(msg)
    with atomic_output(out) as tmp:
        merged.chunk({"time": -1}).to_zarr(tmp, mode="w", zarr_format=2, consolidated=True)
    return {"parts": len(stores), "steps": len(expected), **merged.attrs}


def open_embeddings(path: str | Path) -> xr.Dataset:
    """Open an embeddings store written by `extract_embeddings`."""
    return xr.open_zarr(path, consolidated=True).load()
