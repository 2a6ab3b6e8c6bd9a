"""Streaming access to the ML-ready store: torch Datasets (Lightning's DataModule over them:
`sdofm.training.datamodule`).

The hot path (``SDOImages.__getitem__``) reads one sample as one chunk, through zarr's own read
path decoding straight into the batch (``get_basic_selection(out=...)``), with the store wrapped
in a `CheckedStore`: a missing or damaged chunk is an error, never a blank frame. Normalisation
constants are derived once per data set. In training, the loader hands over physical values and the
normalisation runs on the accelerator after the transfer (``SDODataModule``): on a CPU it costs
as much as decoding, on a GPU nothing, so the loader streams at the speed of the chunk reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numcodecs.blosc
import numpy as np
import torch
import xarray as xr
import zarr
from torch.utils.data import Dataset, default_collate
from zarr.core.buffer.cpu import NDBuffer

from sdofm import SdofmError
from sdofm.dataset.build import apply_transform
from sdofm.dataset.integrity import (
    CheckedStore,
    ChunkError,
    check_chunks,
    open_checked,
    time_labels,
)

__all__ = [
    "Normaliser",
    "SDOImages",
    "SDOStacks",
    "collate",
    "disk_mask",
    "open_dataset",
    "sdoml_rsun_px",
    "store_rsun_px",
    "temporal_index",
]

RSUN_ARCSEC = 976.0  # SDOML v2 rescales the Sun to this radius
CDELT_512 = 4.8  # arcsec per pixel at 512²


def open_dataset(path: str | Path) -> xr.Dataset:
    """Open a built ML-ready store, refusing anything a killed build left behind.

    Reads go through zarr with a `CheckedStore`: a valid row whose image chunk is missing or
    truncated is an error naming the chunk and its time, never a silent NaN fill. Presence and
    size of every valid row's chunk are checked here, before any compute is spent.
    """
    path = Path(path)
    if not (path / ".zmetadata").exists():
        msg = f"{path} is not a complete sdofm data set (run `sdofm build` to make one)"
        raise SdofmError(msg)
    store = open_checked(path)
    ds = xr.open_zarr(store, consolidated=True)
    if "images" in ds and "valid" in ds:
        check_chunks(path, ds)
        _watch_images(store, _image_index(ds))
    return ds


def _image_index(ds: xr.Dataset) -> dict[str, Any]:
    """What a `CheckedStore` needs to check ``images``: row times, valid rows, manifest sizes."""
    sizes = ds["chunk_bytes"].values if "chunk_bytes" in ds else None
    return {
        "labels": time_labels(ds["time"].values),
        "required": ds["valid"].values,
        "sizes": sizes,
    }


def _watch_images(store: CheckedStore, index: dict[str, Any]) -> zarr.Array:
    """The ``images`` array of ``store``, read through zarr with its chunks checked."""
    array = zarr.open_array(store=store, path="images", mode="r")
    store.watch(array, index["labels"], required=index["required"], sizes=index["sizes"])
    return array


class Normaliser:
    """Per-channel transform then standardisation with the training-split statistics."""

    def __init__(self, ds: xr.Dataset, channels: list[str] | None = None):
        sel = ds.sel(channel=channels) if channels else ds
        self.channels = [str(c) for c in sel.channel.values]
        all_channels = [str(c) for c in ds.channel.values]
        self.index = [all_channels.index(c) for c in self.channels]
        self.transforms = [str(t) for t in sel.transform.values]
        self.mean = sel.norm_mean.values.astype(np.float32)[:, None, None]
        self.std = sel.norm_std.values.astype(np.float32)[:, None, None]
        self._log = [c for c, t in enumerate(self.transforms) if t == "log1p"]
        self._scale = (1.0 / self.std).astype(np.float32)
        self._offset = (-self.mean / self.std).astype(np.float32)
        self._on_device: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(..., C, H, W) physical -> normalised float32, NaN -> 0 (the training mean)."""
        z = (apply_transform(x, self.transforms) - self.mean) / self.std
        return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_on_device": {}}  # no device tensors into worker processes

    def _constants(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """The log channels, scale and offset as tensors on ``device``, moved there once."""
        if device not in self._on_device:
            self._on_device[device] = (
                torch.tensor(self._log, dtype=torch.int64, device=device),
                torch.from_numpy(self._scale).to(device),
                torch.from_numpy(self._offset).to(device),
            )
        return self._on_device[device]

    def torch(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Normalise a physical (B, C, H, W) tensor on its own device (same result as ``inplace``).

        ``mask`` (H, W, 0/1) is multiplied in before NaNs become 0. Used after the batch has
        been moved to the accelerator, where this is a few element-wise kernels.
        """
        if x.ndim == 5:  # (B, C, T, H, W) stacks: normalise as (B, C, T*H, W)
            b, c, t, h, w = x.shape
            m = mask.repeat(t, 1) if mask is not None else None
            return self.torch(x.reshape(b, c, t * h, w), m).reshape(b, c, t, h, w)
        log, scale, offset = self._constants(x.device)
        x = x.float()
        if len(log):
            x = x.index_copy(1, log, x.index_select(1, log).clamp(min=0.0).log1p())
        x = x * scale + offset
        if mask is not None:
            x = x * mask.to(x.device, x.dtype)
        return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)

    def inplace(self, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Normalise float32 (..., C, H, W) ``x`` in place (same result as ``__call__``).

        ``mask`` (H, W, float32 0/1) is multiplied in before NaNs become 0.
        """
        for c in self._log:
            xc = x[..., c, :, :]
            np.maximum(xc, 0.0, out=xc)  # NaN stays NaN, as np.clip does
            np.log1p(xc, out=xc)
        x *= self._scale
        x += self._offset
        if mask is not None:
            x *= mask
        # One cheap reduction instead of np.nan_to_num: the sum is finite iff every value is
        # (or, very rarely, it overflows, and the exact pass below finds nothing to do).
        if not np.isfinite(x.sum(dtype=np.float32)):
            x[~np.isfinite(x)] = 0.0
        return x


def disk_mask(size: int, rsun_px: float | None = None) -> np.ndarray:
    """Boolean (size, size) mask of the pixels on the solar disk (centre at (size - 1) / 2).

    Without ``rsun_px``, the SDOML v2 scale: 976″ at 4.8″/px for 512², scaled to ``size``.
    """
    if rsun_px is None:
        rsun_px = sdoml_rsun_px(size)
    c = (size - 1) / 2
    yy, xx = np.ogrid[:size, :size]
    return (yy - c) ** 2 + (xx - c) ** 2 <= rsun_px**2


def sdoml_rsun_px(size: int) -> float:
    """The disk radius in pixels of a ``size``² image at the SDOML v2 scale (976″ at 4.8″/px
    for 512²)."""
    return RSUN_ARCSEC / (CDELT_512 * 512 / size)


def store_rsun_px(ds: xr.Dataset) -> float:
    """The disk radius in pixels of the store's images: the store's record of it if any, else
    the SDOML v2 scale at their size."""
    for attrs in (ds.attrs, ds["images"].attrs if "images" in ds else {}):
        if "rsun_px" in attrs:
            return float(attrs["rsun_px"])
    return sdoml_rsun_px(int(ds.sizes["x"]))


class SDOImages(Dataset):
    """Normalised images of the given rows; one Zarr chunk read per sample.

    ``mask_off_disk`` sets the pixels outside the solar disk to 0 (the normalised mean).
    ``normalise=False`` returns physical values, for a caller that normalises later with
    ``self.norm.torch`` (and ``self.mask``) on the accelerator. The store is opened lazily,
    once per worker process.
    """

    def __init__(
        self,
        path: str | Path,
        rows: np.ndarray,
        channels: list[str] | None = None,
        *,
        mask_off_disk: bool = False,
        normalise: bool = True,
    ):
        ds = open_dataset(path)
        self.path, self.rows = str(path), np.asarray(rows, dtype=np.int64)
        self.normalise = normalise
        self.norm = Normaliser(ds, channels)
        self.all_channels = len(self.norm.index) == ds.sizes["channel"] and self.norm.index == list(
            range(ds.sizes["channel"])
        )
        self.shape = (int(ds.sizes["channel"]), int(ds.sizes["y"]), int(ds.sizes["x"]))
        self.mask: np.ndarray | None = None
        if mask_off_disk:
            self.mask = disk_mask(self.shape[1], store_rsun_px(ds)).astype(np.float32)
        self._index = _image_index(ds)
        self._array: zarr.Array | None = None  # opened in the worker

    @classmethod
    def split(
        cls,
        path: str | Path,
        split: str,
        channels: list[str] | None = None,
        **options: Any,
    ) -> SDOImages:
        """The valid rows of one split (``train``, ``val`` or ``test``)."""
        ds = open_dataset(path)
        rows = np.flatnonzero(ds.valid.values & (ds.split.values == split))
        return cls(path, rows, channels, **options)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_array": None}  # each worker opens its own

    def read_into(self, row: int, out: np.ndarray) -> np.ndarray:
        """Decode the chunk of ``row`` (all channels) into ``out`` (float32 (C, H, W)) through
        zarr; a missing, truncated or undecodable chunk is an `SdofmError` naming it."""
        if self._array is None:
            # zarr decodes in its worker threads, where numcodecs keeps Blosc single-threaded
            # unless told otherwise: let it use its threads, as a decode in this thread would.
            numcodecs.blosc.use_threads = True
            self._array = _watch_images(open_checked(self.path), self._index)
        try:
            self._array.get_basic_selection(row, out=NDBuffer.from_numpy_array(out))
        except (RuntimeError, ValueError) as err:  # the codec's own error: corrupt payload
            store = self._array.store
            msg = f"{store.describe('images', row)} cannot be decoded: {err}"
            raise ChunkError(msg) from err
        return out

    def read_raw(self, row: int) -> np.ndarray:
        """Physical (C_selected, H, W) float32 values of one row, in a fresh array."""
        x = self.read_into(row, np.empty(self.shape, np.float32))
        return x if self.all_channels else x[self.norm.index]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        row = int(self.rows[i])
        x = self.read_raw(row)
        if self.normalise:
            self.norm.inplace(x, self.mask)
        return torch.from_numpy(x), row

    def __getitems__(self, indices: list[int]) -> _Batch:
        """A whole batch, decoded and normalised in place in one (B, C, H, W) tensor.

        A torch ``DataLoader`` calls this instead of ``__getitem__`` per sample; with
        ``collate`` as its ``collate_fn`` the batch is passed through without a copy, with the
        default collate it is an ordinary list of (image, row) samples.
        """
        rows = [int(self.rows[i]) for i in indices]
        shape = (len(rows), len(self.norm.index), *self.shape[1:])
        if torch.utils.data.get_worker_info() is not None:
            # Going back to the main process: allocate in shared memory (no copy on the way).
            elem = torch.empty(0, dtype=torch.float32)
            storage = elem._typed_storage()._new_shared(int(np.prod(shape)), device="cpu")
            x = elem.new(storage).resize_(shape)
        else:  # numpy asks for huge pages: a fresh batch faults in far faster than torch.empty
            x = torch.from_numpy(np.empty(shape, np.float32))
        out = x.numpy()
        for k, row in enumerate(rows):
            if self.all_channels:
                self.read_into(row, out[k])
            else:
                out[k] = self.read_raw(row)
        if self.normalise:
            self.norm.inplace(out, self.mask)
        return _Batch(x, rows)


def temporal_index(ds: xr.Dataset, *, frames: int, spacing: int, split: str | None) -> np.ndarray:
    """Rows of every temporal stack of one split: (stacks, frames), oldest first.

    A stack is ``frames`` time steps ``spacing`` steps apart, all valid and all in ``split``
    (so a stack never straddles a split boundary or a gap). ``split=None`` takes any valid
    rows (embedding every time step; the frames before a test row are test or buffer rows,
    never training rows, as long as the stack is shorter than the buffer). From the index alone.
    """
    if frames < 1 or spacing < 1:
        msg = f"a temporal stack needs frames ≥ 1 and spacing ≥ 1 (got {frames}, {spacing})"
        raise SdofmError(msg)
    ok = ds.valid.values & (True if split is None else ds.split.values == split)
    offsets = np.arange(frames) * spacing
    last = len(ok) - offsets[-1]
    if last <= 0:
        return np.empty((0, frames), np.int64)
    starts = np.arange(last)
    good = np.all([ok[starts + o] for o in offsets], axis=0)
    return starts[good][:, None] + offsets[None, :]


class SDOStacks(Dataset):
    """Temporal stacks for the temporal model: (C, T, H, W) per item, oldest frame first.

    The rows of an item are its T rows; ``rows`` says which row each item ends on (its time).
    ``ending_in`` keeps only the stacks that end on one of those rows.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        frames: int,
        spacing: int,
        split: str | None,
        ending_in: np.ndarray | None = None,
        **image_options: Any,
    ):
        ds = open_dataset(path)
        self.stacks = temporal_index(ds, frames=frames, spacing=spacing, split=split)
        if ending_in is not None:
            self.stacks = self.stacks[np.isin(self.stacks[:, -1], ending_in)]
        self.rows = self.stacks[:, -1] if len(self.stacks) else np.empty(0, np.int64)
        self.images = SDOImages(path, np.unique(self.stacks), **image_options)
        self.norm, self.mask = self.images.norm, self.images.mask
        self.position = {int(r): i for i, r in enumerate(self.images.rows)}

    def __len__(self) -> int:
        return len(self.stacks)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        frames = [self.images[self.position[int(r)]][0] for r in self.stacks[i]]
        return torch.stack(frames, dim=1), int(self.rows[i])


class _Batch(list):
    """A batch as one tensor; also a list of (image, row) samples for the default collate."""

    def __init__(self, x: torch.Tensor, rows: list[int]):
        super().__init__(zip(x, rows, strict=True))
        self.x, self.rows = x, torch.tensor(rows, dtype=torch.int64)


def collate(data: list) -> tuple[torch.Tensor, torch.Tensor]:
    """``collate_fn`` for ``SDOImages``: a ``__getitems__`` batch as it is, else stacked."""
    if isinstance(data, _Batch):
        return data.x, data.rows
    return tuple(default_collate(data))
