"""Build the ML-ready store from pulled SDOML v2 stores: align on time, split, normalise."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pandas as pd
import xarray as xr
import zarr

import sdofm
from sdofm import SdofmError
from sdofm.config import config_hash
from sdofm.dataset.splits import assign_splits, check_no_leak
from sdofm.io import atomic_output
from sdofm.sources.sdoml import EVE_GROUP, eve_times, frame_times

__all__ = ["Frames", "build_dataset", "downsample", "index_frames", "match_times", "transform_for"]

# Training reads one sample (all channels at one time) per chunk; lz4 decompresses fastest.
IMAGE_COMPRESSOR = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
ROWS_PER_BLOCK = 32


@dataclass
class Frames:
    """Where the frames of one channel are: their times and (year group, index) in the store."""

    name: str
    times: pd.DatetimeIndex
    year: np.ndarray
    index: np.ndarray


def transform_for(channel: str) -> str:
    """The intensity transform before standardisation: AIA spans decades, HMI is signed."""
    return "linear" if channel in ("Bx", "By", "Bz") else "log1p"


def apply_transform(x: np.ndarray, transforms: list[str]) -> np.ndarray:
    """Apply per-channel transforms along axis -3 (channel, y, x)."""
    out = np.empty_like(x, dtype=np.float32)
    for c, name in enumerate(transforms):
        xc = x[..., c, :, :]
        out[..., c, :, :] = np.log1p(np.clip(xc, 0.0, None)) if name == "log1p" else xc
    return out


def index_frames(store: zarr.Group, names: list[str]) -> dict[str, Frames]:
    """Collect each channel's frames across the year groups (channels are never co-indexed)."""
    found: dict[str, list] = {n: [] for n in names}
    for year in sorted(k for k in store.group_keys() if k.isdigit()):
        for name in names:
            if name in store[year]:
                t = frame_times(store[year][name])
                found[name].append((t, np.full(len(t), year), np.arange(len(t))))
    frames = {}
    for name, parts in found.items():
        if not parts:
            frames[name] = Frames(name, pd.DatetimeIndex([]), np.array([], str), np.array([], int))
            continue
        frames[name] = Frames(
            name,
            pd.DatetimeIndex(np.concatenate([p[0] for p in parts])),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )
    return frames


def match_times(
    grid: pd.DatetimeIndex, times: pd.DatetimeIndex, tolerance: pd.Timedelta
) -> np.ndarray:
    """Position in ``times`` of the nearest frame to each grid time within ``tolerance``, or -1."""
    if len(times) == 0:
        return np.full(len(grid), -1)
    order = np.argsort(times.to_numpy(), kind="stable")
    sorted_times = times[order]
    pos = pd.Index(sorted_times).get_indexer(grid, method="nearest", tolerance=tolerance)
    return np.where(pos >= 0, order[np.clip(pos, 0, None)], -1)


def downsample(frames: np.ndarray, size: int) -> np.ndarray:
    """Mean-downsample (..., H, W) frames to (..., size, size), as SDOML does."""
    h, w = frames.shape[-2:]
    if h % size or w % size or h != w:
        msg = f"cannot mean-downsample {h}x{w} frames to {size}x{size}: size must divide {h}"
        raise SdofmError(msg)
    f = h // size
    if f == 1:
        return frames
    return frames.reshape(*frames.shape[:-2], size, f, size, f).mean(axis=(-3, -1))


def _read_rows(store: zarr.Group, frames: Frames, pos: np.ndarray) -> np.ndarray:
    """Read frames at positions ``pos`` (-1 = missing → NaN), one request per year group."""
    shape = None
    out: dict[int, np.ndarray] = {}
    for year in np.unique(frames.year[pos[pos >= 0]]):
        rows = np.flatnonzero((pos >= 0) & (frames.year[np.clip(pos, 0, None)] == year))
        idx = frames.index[pos[rows]]
        order = np.argsort(idx)
        data = store[str(year)][frames.name].get_orthogonal_selection((idx[order],))
        for r, d in zip(rows[order], data, strict=True):
            out[int(r)] = d
        shape = data.shape[1:]
    if shape is None:
        return np.full((len(pos), 1, 1), np.nan, np.float32)
    block = np.full((len(pos), *shape), np.nan, np.float32)
    for r, d in out.items():
        block[r] = d
    return block


def build_dataset(sdoml_dir: str | Path, out: str | Path, params: dict[str, Any]) -> dict:
    """Build the ML-ready Zarr store at ``out`` from the pulled stores in ``sdoml_dir``.

    ``params`` holds the ``data`` and ``splits`` config blocks. The store has, per time step:
    ``images`` (time, channel, y, x; physical units, one chunk per time step), ``valid`` (all
    channels present), ``frame_time`` (time, channel; NaT where missing), ``eve`` (time, line;
    NaN where missing) and ``split``; per channel ``transform``, ``norm_mean``, ``norm_std``
    computed on the training rows only.
    """
    data, splits = params["data"], params["splits"]
    sdoml_dir, out = Path(sdoml_dir), Path(out)
    grid = pd.date_range(
        data["start"], data["end"], freq=f"{data['cadence_minutes']}min", inclusive="left"
    )
    tol = pd.Timedelta(minutes=data["tolerance_minutes"])
    aia = zarr.open_group(sdoml_dir / "aia.zarr", mode="r")
    hmi = zarr.open_group(sdoml_dir / "hmi.zarr", mode="r")
    sources = [(aia, list(data["aia_channels"])), (hmi, list(data["hmi_components"]))]
    channels: list[str] = []
    positions, frame_sets, stores = [], [], []
    for store, names in sources:
        for name, frames in index_frames(store, names).items():
            channels.append(name)
            frame_sets.append(frames)
            stores.append(store)
            positions.append(match_times(grid, frames.times, tol))
    pos = np.stack(positions, axis=1)  # (time, channel)
    present = pos >= 0
    valid = present.all(axis=1)
    for c, name in enumerate(channels):
        if not present[:, c].any():
            msg = f"channel {name} has no frame within {tol} of any time step: nothing to align"
            raise SdofmError(msg)
    if not valid.any():
        msg = "no time step has every channel: check data.channels and data.tolerance_minutes"
        raise SdofmError(msg)

    labels = assign_splits(
        grid, val=splits["val"], test=splits["test"], buffer_days=splits["buffer_days"]
    )
    check_no_leak(grid[valid], labels[valid], splits["buffer_days"])
    train = valid & (labels == "train")
    if not train.any():
        msg = "the training split is empty: widen data.start/end or shrink splits.val/test"
        raise SdofmError(msg)

    # EVE lines aligned to the same steps; negative values mark missing data in SDOML v2.
    eve_group = zarr.open_group(sdoml_dir / "eve.zarr", mode="r")[EVE_GROUP]
    eve_pos = match_times(
        grid, eve_times(eve_group), pd.Timedelta(minutes=data["eve_tolerance_minutes"])
    )
    eve = np.full((len(grid), len(data["eve_lines"])), np.nan, np.float32)
    for k, line in enumerate(data["eve_lines"]):
        values = np.asarray(eve_group[line][:], np.float32)
        v = np.where(eve_pos >= 0, values[np.clip(eve_pos, 0, None)], np.nan)
        eve[:, k] = np.where(v > 0, v, np.nan)

    frame_time = np.full(pos.shape, np.datetime64("NaT"), "datetime64[ns]")
    for c, frames in enumerate(frame_sets):
        ok = pos[:, c] >= 0
        frame_time[ok, c] = frames.times[pos[ok, c]].to_numpy()

    with atomic_output(out) as tmp:
        valid = _write_store(
            tmp,
            grid,
            channels,
            stores,
            frame_sets,
            pos,
            valid,
            train,
            labels,
            frame_time,
            eve,
            params,
        )
    counts = {s: int((valid & (labels == s)).sum()) for s in ("train", "val", "test")}
    return {"steps": len(grid), "valid": int(valid.sum()), **counts, "channels": channels}


def _write_store(
    tmp, grid, channels, stores, frame_sets, pos, valid, train, labels, frame_time, eve, params
) -> np.ndarray:
    """Stream the images into ``tmp`` and add the index, splits and statistics; return ``valid``."""
    data, splits = params["data"], params["splits"]
    size = data["image_size"]
    images = zarr.open_group(tmp, mode="w", zarr_format=2).create_array(
        "images",
        shape=(len(grid), len(channels), size, size),
        chunks=(1, len(channels), size, size),
        dtype="float32",
        compressors=IMAGE_COMPRESSOR,
        fill_value=np.nan,
    )
    images.attrs.update(
        {"_ARRAY_DIMENSIONS": ["time", "channel", "y", "x"], "units": "DN/s (AIA), G (HMI)"}
    )

    # Stream blocks of rows: read each channel's frames, downsample, write; accumulate the
    # training statistics in float64 (bounded memory whatever the time range).
    transforms = [transform_for(c) for c in channels]
    n, s1, s2 = np.zeros(1), np.zeros(len(channels)), np.zeros(len(channels))
    rows = np.flatnonzero(valid)
    for lo in range(0, len(rows), ROWS_PER_BLOCK):
        block = rows[lo : lo + ROWS_PER_BLOCK]
        x = np.stack(
            [
                downsample(_read_rows(st, fr, pos[block, c]), size)
                for c, (st, fr) in enumerate(zip(stores, frame_sets, strict=True))
            ],
            axis=1,
        ).astype(np.float32)
        bad = ~np.isfinite(x).all(axis=(1, 2, 3))
        valid[block[bad]] = False  # NaN frames: kept out of training and embedding
        x[bad] = np.nan
        images.set_orthogonal_selection((block,), x)
        keep = train[block] & ~bad
        if keep.any():
            z = apply_transform(x[keep], transforms).astype(np.float64)
            n += z.shape[0] * z.shape[2] * z.shape[3]
            s1 += z.sum(axis=(0, 2, 3))
            s2 += (z**2).sum(axis=(0, 2, 3))
    train &= valid
    if not train.any():
        msg = "every training frame is bad (NaN): nothing to normalise on"
        raise SdofmError(msg)
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 1e-12))

    xr.Dataset(
        {
            "valid": ("time", valid),
            "split": ("time", labels),
            "frame_time": (("time", "channel"), frame_time),
            "eve": (("time", "line"), eve),
            "transform": ("channel", np.array(transforms)),
            "norm_mean": ("channel", mean.astype(np.float32)),
            "norm_std": ("channel", std.astype(np.float32)),
        },
        coords={"time": grid, "channel": channels, "line": list(data["eve_lines"])},
        attrs={
            "title": "sdofm ML-ready SDO data set",
            "source": params.get("source", ""),
            "config_hash": config_hash(params),
            "sdofm_version": sdofm.__version__,
            "buffer_days": splits["buffer_days"],
            "norm_split": "train",
            "norm_rows": int(train.sum()),
        },
    ).to_zarr(tmp, mode="a", zarr_format=2, consolidated=True)
    return valid
