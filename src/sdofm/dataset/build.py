"""Build the ML-ready store from pulled SDOML v2 stores: align on time, split, normalise."""

from __future__ import annotations

import json
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
from sdofm.dataset.splits import assign_splits, check_no_leak
from sdofm.io import atomic_output
from sdofm.sources.sdoml import EVE_GROUP, eve_times, frame_times

__all__ = [
    "Alignment",
    "Frames",
    "align",
    "apply_transform",
    "build_dataset",
    "downsample",
    "index_frames",
    "match_times",
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
    """Read frames at positions ``pos`` (all present), one request per year group."""
    block = None
    years = frames.year[pos]
    for year in np.unique(years):
        rows = np.flatnonzero(years == year)
        order = np.argsort(frames.index[pos[rows]])
        data = store[str(year)][frames.name].get_orthogonal_selection(
            (frames.index[pos[rows[order]]],)
        )
        if block is None:
            block = np.empty((len(pos), *data.shape[1:]), np.float32)
        block[rows[order]] = data
    return block


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


def align(sdoml_dir: Path, data: dict[str, Any]) -> Alignment:
    """Match every AIA channel and HMI component to the time grid within the tolerance."""
    grid = pd.date_range(
        data["start"], data["end"], freq=f"{data['cadence_minutes']}min", inclusive="left"
    )
    tol = pd.Timedelta(minutes=data["tolerance_minutes"])
    al = Alignment(grid, [], [], [], np.empty((len(grid), 0), int))
    positions = []
    for store_name, names in (("aia", data["aia_channels"]), ("hmi", data["hmi_components"])):
        store = zarr.open_group(sdoml_dir / f"{store_name}.zarr", mode="r")
        for name, frames in index_frames(store, list(names)).items():
            pos = _match_checked(grid, frames, tol, al.qc)
            if not (pos >= 0).any():
                msg = f"channel {name} has no frame within {tol} of any time step: nothing to align"
                raise SdofmError(msg)
            al.channels.append(name)
            al.stores.append(store)
            al.frames.append(frames)
            positions.append(pos)
    al.pos = np.stack(positions, axis=1)
    for c, name in enumerate(al.channels):
        for t in grid[al.pos[:, c] < 0]:
            al.qc.append({"time": t, "channel": name, "issue": "gap", "detail": "no frame"})
    return al


def _match_checked(
    grid: pd.DatetimeIndex, frames: Frames, tol: pd.Timedelta, qc: list[dict[str, Any]]
) -> np.ndarray:
    """`match_times` after quarantining duplicate timestamps; off-cadence frames are recorded."""
    duplicate = frames.times.duplicated(keep="first")
    keep = np.flatnonzero(~duplicate)
    for i in np.flatnonzero(duplicate):
        qc.append(
            {
                "time": frames.times[i],
                "channel": frames.name,
                "issue": "duplicate",
                "detail": f"{frames.year[i]}/{frames.name}[{frames.index[i]}] repeats a time",
            }
        )
    if len(keep) == 0:
        return np.full(len(grid), -1)
    pos = match_times(grid, frames.times[keep], tol)
    pos = np.where(pos >= 0, keep[np.clip(pos, 0, None)], -1)
    near = pd.Index(grid).get_indexer(frames.times[keep], method="nearest", tolerance=tol) >= 0
    for i in keep[~near]:
        qc.append(
            {
                "time": frames.times[i],
                "channel": frames.name,
                "issue": "off-cadence",
                "detail": f"{frames.year[i]}/{frames.name}[{frames.index[i]}] is more "
                f"than {tol} from every time step",
            }
        )
    return pos


def align_eve(sdoml_dir: Path, grid: pd.DatetimeIndex, data: dict[str, Any]) -> np.ndarray:
    """EVE lines at the time steps, (time, line); NaN where missing.

    SDOML v2 marks missing values with negatives; zero is no physical irradiance either.
    """
    group = zarr.open_group(sdoml_dir / "eve.zarr", mode="r")[EVE_GROUP]
    pos = match_times(grid, eve_times(group), pd.Timedelta(minutes=data["eve_tolerance_minutes"]))
    eve = np.full((len(grid), len(data["eve_lines"])), np.nan, np.float32)
    for k, line in enumerate(data["eve_lines"]):
        values = np.asarray(group[line][:], np.float32)
        v = np.where(pos >= 0, values[np.clip(pos, 0, None)], np.nan)
        eve[:, k] = np.where(v > 0, v, np.nan)
    return eve


def build_dataset(sdoml_dir: str | Path, out: str | Path, params: dict[str, Any]) -> dict:
    """Build the ML-ready Zarr store at ``out`` from the pulled stores in ``sdoml_dir``.

    ``params`` holds the ``data`` and ``splits`` config blocks. The store has, per time step:
    ``images`` (time, channel, y, x; physical units, one chunk per time step), ``valid`` (all
    channels present and finite), ``frame_time`` (time, channel; NaT where missing), ``eve``
    (time, line; NaN where missing) and ``split``; per channel ``transform``, ``norm_mean``,
    ``norm_std`` computed on the training rows only.
    """
    data, splits = params["data"], params["splits"]
    sdoml_dir = Path(sdoml_dir)
    al = align(sdoml_dir, data)
    valid = (al.pos >= 0).all(axis=1)
    if not valid.any():
        msg = "no time step has every channel: check data.channels and data.tolerance_minutes"
        raise SdofmError(msg)
    labels = assign_splits(
        al.grid, val=splits["val"], test=splits["test"], buffer_days=splits["buffer_days"]
    )
    check_no_leak(al.grid[valid], labels[valid], splits["buffer_days"])
    if not (valid & (labels == "train")).any():
        msg = "the training split is empty: widen data.start/end or shrink splits.val/test"
        raise SdofmError(msg)

    with atomic_output(out) as tmp:
        valid, mean, std = _write_images(tmp, al, valid, labels == "train", data["image_size"])
        qc = pd.DataFrame(al.qc, columns=["time", "channel", "issue", "detail"])
        xr.Dataset(
            {
                "valid": ("time", valid),
                "split": ("time", labels),
                "frame_time": (("time", "channel"), al.frame_time),
                "eve": (("time", "line"), align_eve(sdoml_dir, al.grid, data)),
                "transform": ("channel", np.array([transform_for(c) for c in al.channels])),
                "norm_mean": ("channel", mean.astype(np.float32)),
                "norm_std": ("channel", std.astype(np.float32)),
            },
            coords={"time": al.grid, "channel": al.channels, "line": list(data["eve_lines"])},
            attrs={
                "title": "sdofm ML-ready SDO data set",
                "source": al.stores[0].attrs.get("sdofm_source", str(sdoml_dir)),
                "config_hash": config_hash(params),
                "sdofm_version": sdofm.__version__,
                "buffer_days": splits["buffer_days"],
                "norm_split": "train",
                "norm_rows": int((valid & (labels == "train")).sum()),
                "qc_counts": json.dumps(qc["issue"].value_counts().to_dict()),
            },
        ).to_zarr(tmp, mode="a", zarr_format=2, consolidated=True)
        with atomic_output(qc_path(out)) as tmp_qc:
            qc.sort_values(["time", "channel"]).to_csv(tmp_qc, index=False)
    counts = {s: int((valid & (labels == s)).sum()) for s in ("train", "val", "test")}
    return {
        "steps": len(al.grid),
        "valid": int(valid.sum()),
        **counts,
        "channels": al.channels,
        "qc": qc["issue"].value_counts().to_dict(),
    }


def qc_path(store: str | Path) -> Path:
    """The QC table written beside a built store: one row per gap or quarantined frame."""
    store = Path(store)
    return store.with_name(f"{store.stem}.qc.csv")


def _quarantine_bad_frames(x: np.ndarray, rows: np.ndarray, al: Alignment) -> np.ndarray:
    """Rows of ``x`` (rows, channel, H, W) with an unusable frame, each recorded in ``al.qc``."""
    bad = np.zeros(len(rows), bool)
    for c, name in enumerate(al.channels):
        frames = x[:, c]
        finite = np.isfinite(frames).all(axis=(1, 2))
        # AIA counts cannot be all zero or negative; HMI fields are signed.
        if transform_for(name) == "log1p":
            dark = ~(frames > 0).any(axis=(1, 2))
        else:
            dark = np.zeros(len(rows), bool)
        for r in np.flatnonzero(~finite | dark):
            issue = "non-finite pixels" if not finite[r] else "no positive signal"
            al.qc.append(
                {
                    "time": al.grid[rows[r]],
                    "channel": name,
                    "issue": issue,
                    "detail": f"frame at {al.frame_time[rows[r], c]}",
                }
            )
        bad |= ~finite | dark
    return bad


def _write_images(tmp: Path, al: Alignment, valid: np.ndarray, train: np.ndarray, size: int):
    """Stream the images of the valid rows into ``tmp``/images, a block of rows at a time.

    Accumulates the training statistics in float64 on the way (memory bounded by the block,
    whatever the time range). Rows with non-finite pixels become invalid. Returns
    (valid, mean, std).
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
    rows = np.flatnonzero(valid)
    for lo in range(0, len(rows), ROWS_PER_BLOCK):
        block = rows[lo : lo + ROWS_PER_BLOCK]
        x = downsample(al.read(block), size).astype(np.float32)
        bad = _quarantine_bad_frames(x, block, al)
        valid[block[bad]] = False  # kept out of training and embedding
        x[bad] = np.nan
        images.set_orthogonal_selection((block,), x)
        keep = train[block] & ~bad
        if keep.any():
            z = apply_transform(x[keep], transforms).astype(np.float64)
            n += z.shape[0] * z.shape[2] * z.shape[3]
            s1 += z.sum(axis=(0, 2, 3))
            s2 += (z**2).sum(axis=(0, 2, 3))
    if n == 0:
        msg = "every training frame is bad (NaN): nothing to normalise on"
        raise SdofmError(msg)
    mean = s1 / n
    return valid, mean, np.sqrt(np.maximum(s2 / n - mean**2, 1e-12))
