"""Build the ML-ready store from pulled SDOML v2 stores: align on time, split, normalise."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
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
from sdofm.dataset.integrity import (
    CheckedStore,
    ChunkError,
    chunk_name,
    file_manifest,
    open_checked,
    write_errors,
)
from sdofm.dataset.partitions import (
    partition_of,
    partitions,
    period_rows,
    pull_windows,
    time_grid,
)
from sdofm.dataset.qc import (
    QC_COLUMNS,
    check_ranges,
    qc_path,
    quality_flags,
    quarantine_frames,
    usable_frames,
)
from sdofm.dataset.splits import assign_splits, check_no_leak
from sdofm.io import atomic_output
from sdofm.progress import progress
from sdofm.sources.sdoml import EVE_GROUP, HMI_PRODUCTS, eve_times, frame_times

__all__ = [
    "Alignment",
    "Frames",
    "align",
    "apply_transform",
    "build_dataset",
    "downsample",
    "index_frames",
    "match_times",
    "merge_partitions",
    "partition_of",
    "partitions",
    "pull_windows",
    "build_partition",
    "time_grid",
    "qc_path",
    "transform_for",
]

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
    quality: np.ndarray  # the QUALITY keyword of each frame (0: nominal or not recorded)


def transform_for(channel: str) -> str:
    """The intensity transform before standardisation: AIA spans decades, HMI is signed."""
    return "linear" if channel in HMI_PRODUCTS else "log1p"


def apply_transform(x: np.ndarray, transforms: list[str]) -> np.ndarray:
    """Apply per-channel transforms along axis -3 (channel, y, x)."""
    out = np.empty_like(x, dtype=np.float32)
    for c, name in enumerate(transforms):
        xc = x[..., c, :, :]
        out[..., c, :, :] = np.log1p(np.clip(xc, 0.0, None)) if name == "log1p" else xc
    return out


def index_frames(store: zarr.Group, names: list[str]) -> dict[str, Frames]:
    """Collect each channel's frames across the year groups (channels are never co-indexed).

    Through a `CheckedStore`, each array's chunks are then checked as they are read, and
    named by their frames' T_OBS in errors.
    """
    found: dict[str, list] = {n: [] for n in names}
    for year in sorted(k for k in store.group_keys() if k.isdigit()):
        for name in names:
            if name in store[year]:
                arr = store[year][name]
                t = frame_times(arr)
                if isinstance(store.store, CheckedStore):
                    store.store.watch(arr, arr.attrs["T_OBS"])
                q = quality_flags(arr.attrs.get("QUALITY"), len(t))
                found[name].append((t, np.full(len(t), year), np.arange(len(t)), q))
    frames = {}
    for name, parts in found.items():
        if not parts:
            empty = np.array([], int)
            frames[name] = Frames(name, pd.DatetimeIndex([]), np.array([], str), empty, empty)
            continue
        frames[name] = Frames(
            name, pd.DatetimeIndex(np.concatenate([p[0] for p in parts])),
            *(np.concatenate([p[k] for p in parts]) for k in (1, 2, 3)),
        )  # fmt: skip
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
    """Read frames at positions ``pos`` (all present), one request per year group."""
    block = None
    years = frames.year[pos]
    for year in np.unique(years):
        rows = np.flatnonzero(years == year)
        order = np.argsort(frames.index[pos[rows]])
        data = _read_frames(store[str(year)][frames.name], frames.index[pos[rows[order]]])
        if block is None:
            block = np.empty((len(pos), *data.shape[1:]), np.float32)
        block[rows[order]] = data
    return block


def _read_frames(array: zarr.Array, index: np.ndarray) -> np.ndarray:
    """Frames ``index`` of ``array``; a chunk the codec cannot decode is named in the error
    (missing and truncated chunks are caught before decoding, by the `CheckedStore`)."""
    try:
        return array.get_orthogonal_selection((index,))
    except (RuntimeError, ValueError) as err:
        per_chunk = array.chunks[0]
        for first in np.unique(index // per_chunk) * per_chunk:  # find the chunk, then name it
            try:
                array[first]
            except (RuntimeError, ValueError):
                store = array.store
                where = store.describe(array.path, first // per_chunk)
                msg = f"{where} cannot be decoded: {err}"
                raise ChunkError(msg) from err
        raise


@dataclass
class Alignment:
    """The aligned index: which frame of which store each (time step, channel) uses."""

    grid: pd.DatetimeIndex
    channels: list[str]
    stores: list[zarr.Group]
    frames: list[Frames]
    pos: np.ndarray  # (time, channel) position in `frames`, -1 where no frame is close enough
    qc: list[dict[str, Any]] = field(default_factory=list)  # quarantined frames and gaps

    @property
    def frame_time(self) -> np.ndarray:
        out = np.full(self.pos.shape, np.datetime64("NaT"), "datetime64[ns]")
        for c, frames in enumerate(self.frames):
            ok = self.pos[:, c] >= 0
            out[ok, c] = frames.times[self.pos[ok, c]].to_numpy()
        return out

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Images of the given (complete) rows: (rows, channel, H, W), source resolution."""
        return np.stack(
            [
                _read_rows(st, fr, self.pos[rows, c])
                for c, (st, fr) in enumerate(zip(self.stores, self.frames, strict=True))
            ],
            axis=1,
        )


def align(
    sdoml_dir: Path,
    data: dict[str, Any],
    grid: pd.DatetimeIndex | None = None,
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> Alignment:
    """Match every AIA channel and HMI component to the time grid within the tolerance.

    Duplicate and off-cadence frames are reported for frames inside ``window`` (all by default),
    so partitions of one build report each frame once.
    """
    grid = time_grid(data) if grid is None else grid
    tol = pd.Timedelta(minutes=data["tolerance_minutes"])
    al = Alignment(grid, [], [], [], np.empty((len(grid), 0), int))
    positions = []
    for store_name, names in (("aia", data["aia_channels"]), ("hmi", data["hmi_components"])):
        store = zarr.open_group(open_checked(sdoml_dir / f"{store_name}.zarr"), mode="r")
        for name, frames in index_frames(store, list(names)).items():
            keep = usable_frames(grid, frames, tol, al.qc, window)
            pos = match_times(grid, frames.times[keep], tol)
            if len(keep):  # positions among the usable frames -> among all frames
                pos = np.where(pos >= 0, keep[np.clip(pos, 0, None)], -1)
            al.channels.append(name)
            al.stores.append(store)
            al.frames.append(frames)
            positions.append(pos)
    al.pos = np.stack(positions, axis=1)
    for c, name in enumerate(al.channels):
        for t in grid[al.pos[:, c] < 0]:
            al.qc.append({"time": t, "channel": name, "issue": "gap", "detail": "no frame"})
    return al


def align_eve(sdoml_dir: Path, grid: pd.DatetimeIndex, data: dict[str, Any]) -> np.ndarray:
    """EVE lines at the time steps, (time, line); NaN where missing.

    SDOML v2 marks missing values with negatives; zero is no physical irradiance either.
    """
    store = open_checked(sdoml_dir / "eve.zarr")
    group = zarr.open_group(store, mode="r")[EVE_GROUP]
    times = eve_times(group)
    pos = match_times(grid, times, pd.Timedelta(minutes=data["eve_tolerance_minutes"]))
    eve = np.full((len(grid), len(data["eve_lines"])), np.nan, np.float32)
    for k, line in enumerate(data["eve_lines"]):
        store.watch(group[line], times.strftime("%Y-%m-%dT%H:%M:%S"))
        values = np.asarray(group[line][:], np.float32)
        v = np.where(pos >= 0, values[np.clip(pos, 0, None)], np.nan)
        eve[:, k] = np.where(v > 0, v, np.nan)
    return eve


def build_partition(
    sdoml_dir: str | Path,
    out: str | Path,
    params: dict[str, Any],
    period: str,
    frames_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Build the rows of one month (``period`` like ``2011-01``) into a partition store.

    Splits are assigned on the whole time grid (so buffers reach across months) and sliced; the
    training statistics are stored as sums, so `merge_partitions` can combine them exactly.
    """
    data, splits = params["data"], params["splits"]
    sdoml_dir = Path(sdoml_dir)
    grid = time_grid(data)
    labels = assign_splits(
        grid, val=splits["val"], test=splits["test"], buffer_days=splits["buffer_days"]
    )
    check_no_leak(grid, labels, splits["buffer_days"])
    rows = period_rows(data, period)
    first = pd.Period(period, freq="M")
    window = (  # the block's months: QC reports the frames in them (each frame once)
        max(first.start_time, pd.Timestamp(data["start"])),
        min((first + data.get("partition_months", 1)).start_time, pd.Timestamp(data["end"])),
    )
    # AIA/HMI from ``frames_dir`` when given (FITS ingested for this month), EVE from the pull.
    ranges = check_ranges(data, [*data["aia_channels"], *data["hmi_components"]])
    al = align(Path(frames_dir or sdoml_dir), data, grid[rows], window)
    valid = (al.pos >= 0).all(axis=1)
    with atomic_output(out) as tmp, write_errors(out):
        valid, n, s1, s2, manifest = _write_images(
            tmp, al, valid, labels[rows] == "train", data["image_size"], ranges
        )
        xr.Dataset(
            {
                "valid": ("time", valid),
                "split": ("time", labels[rows]),
                "frame_time": (("time", "channel"), al.frame_time),
                "eve": (("time", "line"), align_eve(sdoml_dir, al.grid, data)),
                "chunk_bytes": ("time", manifest[0]),
                "chunk_crc32": ("time", manifest[1]),
                "stat_n": ((), n),
                "stat_sum": ("channel", s1),
                "stat_sum_sq": ("channel", s2),
            },
            coords={"time": al.grid, "channel": al.channels, "line": list(data["eve_lines"])},
            attrs={"period": period, "source": al.stores[0].attrs.get("sdofm_source", "")},
        ).to_zarr(tmp, mode="a", zarr_format=2, consolidated=True)
        pd.DataFrame(al.qc, columns=QC_COLUMNS).to_csv(tmp / "qc.csv", index=False)
    return {"period": period, "steps": len(rows), "valid": int(valid.sum())}


def merge_partitions(parts: list[str | Path], out: str | Path, params: dict[str, Any]) -> dict:
    """Join monthly partitions into the ML-ready store at ``out`` (and its QC table).

    The store has, per time step: ``images`` (time, channel, y, x; physical units, one chunk per
    time step), ``valid`` (all channels present and usable), ``frame_time`` (time, channel; NaT
    where missing), ``eve`` (time, line; NaN where missing) and ``split``; per channel
    ``transform``, ``norm_mean``, ``norm_std`` from the training rows only. Image chunks are
    hard-linked from the partitions where the file system allows (no copy, no recompression).
    """
    data, splits = params["data"], params["splits"]
    parts = sorted(Path(p) for p in parts)
    # The index only: the images stay on disk and are linked, never loaded.
    metas = [xr.open_zarr(p, consolidated=True, drop_variables=["images"]).load() for p in parts]
    meta = xr.concat([m.drop_vars(["stat_n", "stat_sum", "stat_sum_sq"]) for m in metas], "time")
    meta.attrs = {}
    if not np.array_equal(meta.time.values, time_grid(data).values):
        msg = "the partitions do not cover the configured time range exactly: rebuild them"
        raise SdofmError(msg)
    channels = [str(c) for c in meta.channel.values]
    present = ~np.isnat(meta.frame_time.values)
    for c, name in enumerate(channels):
        if not present[:, c].any():
            msg = f"channel {name} has no frame near any time step: nothing to align"
            raise SdofmError(msg)
    valid = meta.valid.values
    if not valid.any():
        msg = "no time step has every channel: check data.channels and data.tolerance_minutes"
        raise SdofmError(msg)
    train = valid & (meta.split.values == "train")
    n = float(sum(m.stat_n.values for m in metas))
    if not train.any() or n == 0:
        msg = "the training split is empty: widen data.start/end or shrink splits.val/test"
        raise SdofmError(msg)
    mean = sum(m.stat_sum.values for m in metas) / n
    std = np.sqrt(np.maximum(sum(m.stat_sum_sq.values for m in metas) / n - mean**2, 1e-12))
    qc = pd.concat([pd.read_csv(p / "qc.csv") for p in parts], ignore_index=True)
    with atomic_output(out) as tmp, write_errors(out):
        _join_images(parts, tmp, meta)
        meta.assign(
            transform=("channel", np.array([transform_for(c) for c in channels])),
            norm_mean=("channel", mean.astype(np.float32)),
            norm_std=("channel", std.astype(np.float32)),
        ).assign_attrs(
            title="sdofm ML-ready SDO data set",
            source=metas[0].attrs.get("source", ""),
            config_hash=config_hash(params),
            sdofm_version=sdofm.__version__,
            buffer_days=splits["buffer_days"],
            norm_split="train",
            norm_rows=int(train.sum()),
            qc_counts=json.dumps(qc["issue"].value_counts().to_dict()),
            partitions=[p.name for p in parts],
            partition_months=params["data"].get("partition_months", 1),
        ).to_zarr(tmp, mode="a", zarr_format=2, consolidated=True)
        with atomic_output(qc_path(out)) as tmp_qc:
            qc.sort_values(["time", "channel"]).to_csv(tmp_qc, index=False)
    counts = {s: int((valid & (meta.split.values == s)).sum()) for s in ("train", "val", "test")}
    return {
        "steps": len(meta.time),
        "valid": int(valid.sum()),
        **counts,
        "channels": channels,
        "qc": qc["issue"].value_counts().to_dict(),
    }


def _join_images(parts: list[Path], tmp: Path, meta: xr.Dataset) -> None:
    """One ``images`` array from the partitions' arrays: chunk files linked with shifted keys.

    Every valid row's chunk must be there with the size its partition's manifest records.
    """
    first = zarr.open_array(parts[0] / "images", mode="r")
    root = zarr.open_group(tmp, mode="w", zarr_format=2)
    images = root.create_array(
        "images",
        shape=(len(meta.time), *first.shape[1:]),
        chunks=first.chunks,
        dtype=first.dtype,
        compressors=IMAGE_COMPRESSOR,
        fill_value=np.nan,
    )
    images.attrs.update(first.attrs.asdict())
    valid = meta.valid.values
    sizes = meta.chunk_bytes.values if "chunk_bytes" in meta else None
    offset = 0
    for part in parts:
        n = zarr.open_array(part / "images", mode="r").shape[0]
        for i in range(n):  # chunks are one time step each
            src = part / "images" / chunk_name(first, i)
            row = offset + i
            if not valid[row]:
                continue  # no chunk: the row was never written (fill value NaN)
            if not src.exists() or (sizes is not None and src.stat().st_size != sizes[row]):
                why = "is missing" if not src.exists() else "differs from its manifest"
                time = np.datetime_as_string(meta.time.values[row], unit="s")
                msg = f"{src} (time {time}, a valid row) {why}: rebuild partition {part.name}"
                raise ChunkError(msg)
            dst = tmp / "images" / chunk_name(images, row)
            try:
                os.link(src, dst)
            except OSError:  # another file system: copy the compressed bytes
                shutil.copyfile(src, dst)
        offset += n


def build_dataset(sdoml_dir: str | Path, out: str | Path, params: dict[str, Any]) -> dict:
    """Build every monthly partition and merge them (what the workflow does as parallel jobs)."""
    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        parts = [Path(tmp) / f"{period}.zarr" for period in partitions(params["data"])]
        for part in parts:
            build_partition(sdoml_dir, part, params, part.stem)
        return merge_partitions(parts, out, params)


def _write_images(
    tmp: Path,
    al: Alignment,
    valid: np.ndarray,
    train: np.ndarray,
    size: int,
    ranges: dict[str, tuple[float, float]],
):
    """Stream the images of the valid rows into ``tmp``/images, a block of rows at a time.

    Accumulates the training-row sums in float64 on the way (memory bounded by the block,
    whatever the time range). Rows with an unusable frame (`quarantine_frames`) become invalid
    before they count. Returns (valid, pixel count, sum, sum of squares) per channel, and the
    chunk manifest (bytes, CRC-32 of each row's chunk file; 0 where none).
    """
    n_ch = len(al.channels)
    images = zarr.open_group(tmp, mode="w", zarr_format=2).create_array(
        "images",
        shape=(len(al.grid), n_ch, size, size),
        chunks=(1, n_ch, size, size),
        dtype="float32",
        compressors=IMAGE_COMPRESSOR,
        fill_value=np.nan,
    )
    images.attrs.update(
        {"_ARRAY_DIMENSIONS": ["time", "channel", "y", "x"], "units": "DN/s (AIA), G (HMI)"}
    )
    transforms = [transform_for(c) for c in al.channels]
    valid = valid.copy()
    n, s1, s2 = 0, np.zeros(n_ch), np.zeros(n_ch)
    sizes, crcs = np.zeros(len(al.grid), np.int64), np.zeros(len(al.grid), np.uint32)
    rows = np.flatnonzero(valid)
    bar = progress(len(rows), f"build {al.grid[0]:%Y-%m}", "samples")
    for lo in range(0, len(rows), ROWS_PER_BLOCK):
        block = rows[lo : lo + ROWS_PER_BLOCK]
        x = downsample(al.read(block), size).astype(np.float32)
        bad = quarantine_frames(x, al.grid[block], al.channels, al.frame_time[block], ranges, al.qc)
        valid[block[bad]] = False  # kept out of training and embedding
        x[bad] = np.nan
        images.set_orthogonal_selection((block,), x)
        names = [chunk_name(images, int(r)) for r in block]
        sizes[block], crcs[block] = file_manifest(tmp / "images", names)
        keep = train[block] & ~bad
        if keep.any():
            z = apply_transform(x[keep], transforms).astype(np.float64)
            n += z.shape[0] * z.shape[2] * z.shape[3]
            s1 += z.sum(axis=(0, 2, 3))
            s2 += (z**2).sum(axis=(0, 2, 3))
        bar.update(len(block))
    bar.close()
    return valid, n, s1, s2, (sizes, crcs)
