"""Compute embeddings for every valid time step and write them as an xarray Zarr store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.utils.data import DataLoader

from sdofm import SdofmError
from sdofm.dataset.loader import SDOImages, open_dataset
from sdofm.io import atomic_output, file_sha256
from sdofm.training.pretrain import load_backbone

__all__ = ["extract_embeddings", "open_embeddings"]


def extract_embeddings(
    dataset: str | Path, checkpoint: str | Path, out: str | Path, params: dict[str, Any]
) -> dict[str, Any]:
    """Write ``embedding(time, feature)`` for every time step of ``dataset`` to ``out``.

    Rows without a usable sample are NaN. The store carries the split of each row and the
    checkpoint hash, so a benchmark can check it uses embeddings of the backbone it expects.
    """
    ds = open_dataset(dataset)
    net, hp = load_backbone(checkpoint)
    if list(hp["channels"]) != [str(c) for c in ds.channel.values]:
        msg = (
            f"checkpoint {checkpoint} was trained on channels {hp['channels']} but {dataset} "
            f"has {[str(c) for c in ds.channel.values]}: re-run pretraining on this data set"
        )
        raise SdofmError(msg)
    rows = np.flatnonzero(ds.valid.values)
    loader = DataLoader(SDOImages(dataset, rows), batch_size=params["batch_size"])
    emb = None
    with torch.inference_mode():
        for x, idx in loader:
            z = net.embed(x).numpy()
            if emb is None:
                emb = np.full((ds.sizes["time"], z.shape[1]), np.nan, np.float32)
            emb[idx.numpy()] = z
    out_ds = xr.Dataset(
        {
            "embedding": (("time", "feature"), emb),
            "split": ("time", ds.split.values),
            "valid": ("time", ds.valid.values),
        },
        coords={"time": ds.time.values, "feature": np.arange(emb.shape[1])},
        attrs={
            "backbone": hp["backbone"],
            "checkpoint_sha256": file_sha256(checkpoint),
            "dataset_config_hash": ds.attrs.get("config_hash", ""),
            "description": "[CLS token, mean patch token] of the unmasked MAE encoder",
        },
    )
    with atomic_output(out) as tmp:
        out_ds.to_zarr(tmp, mode="w", zarr_format=2, consolidated=True)
    return {"rows": int(len(rows)), "features": int(emb.shape[1]), **out_ds.attrs}


def open_embeddings(path: str | Path) -> xr.Dataset:
    """Open an embeddings store written by `extract_embeddings`."""
    return xr.open_zarr(path, consolidated=True).load()
