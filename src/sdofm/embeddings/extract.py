"""Compute embeddings for every valid time step and write them as an xarray Zarr store."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.utils.data import DataLoader

from sdofm import SdofmError
from sdofm.dataset.loader import SDOImages, SDOStacks, collate, open_dataset
from sdofm.io import atomic_output, file_sha256
from sdofm.models.checkpoint import load_backbone

__all__ = ["compute_embeddings", "extract_embeddings", "open_embeddings"]


def _inputs(dataset: str | Path, ds: xr.Dataset, hp: dict[str, Any]) -> SDOImages | SDOStacks:
    """What the backbone reads for each time step: its image, or the stack ending on it."""
    if hp["frames"] > 1:
        return SDOStacks(dataset, frames=hp["frames"], spacing=hp["spacing"], split=None)
    return SDOImages(dataset, np.flatnonzero(ds.valid.values))


def extract_embeddings(
    dataset: str | Path, checkpoint: str | Path, out: str | Path, params: dict[str, Any]
) -> dict[str, Any]:
    """Write ``embedding(time, feature)`` for every time step of ``dataset`` to ``out``.

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
    started = time.perf_counter()
    emb, tok, n_rows = compute_embeddings(
        dataset,
        ds,
        net,
        hp,
        batch_size=params["batch_size"],
        tokens=params.get("tokens"),
        device=device,
    )
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
        "samples_per_second": round(n_rows / seconds, 1),
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
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """``net.embed`` (and ``net.tokens``) of every time step: (time, F) arrays, NaN where none.

    Returns (embeddings, tokens or None, number of rows embedded).
    """
    net = net.to(device).eval()
    data = _inputs(dataset, ds, hp)
    if len(data) == 0:
        msg = f"{dataset} has no time step the backbone can embed"
        raise SdofmError(msg)
    loader = DataLoader(data, batch_size=batch_size, collate_fn=collate)
    n_time = ds.sizes["time"]
    emb = tok = None
    with torch.inference_mode():
        for x, idx in loader:
            x = x.to(device)
            z = net.embed(x).float().cpu().numpy()
            if emb is None:
                emb = np.full((n_time, z.shape[1]), np.nan, np.float32)
            emb[idx.numpy()] = z
            if tokens:
                t = net.tokens(x)
                t = (t[:, :, -1] if t.ndim == 5 else t).float().cpu().numpy()
                if tok is None:
                    tok = np.full((n_time, *t.shape[1:]), np.nan, np.float32)
                tok[idx.numpy()] = t
    return emb, tok, len(data)


def open_embeddings(path: str | Path) -> xr.Dataset:
    """Open an embeddings store written by `extract_embeddings`."""
    return xr.open_zarr(path, consolidated=True).load()
