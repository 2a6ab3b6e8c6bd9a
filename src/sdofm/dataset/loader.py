"""Streaming access to the ML-ready store: a torch Dataset and a Lightning DataModule."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
import xarray as xr
import zarr
from torch.utils.data import DataLoader, Dataset

from sdofm import SdofmError
from sdofm.dataset.build import apply_transform

__all__ = ["SDODataModule", "SDOImages", "Normaliser", "open_dataset"]


def open_dataset(path: str | Path) -> xr.Dataset:
    """Open a built ML-ready store, refusing anything a killed build left behind."""
    path = Path(path)
    if not (path / ".zmetadata").exists():
        msg = f"{path} is not a complete sdofm data set (run `sdofm build` to make one)"
        raise SdofmError(msg)
    return xr.open_zarr(path, consolidated=True)


class Normaliser:
    """Per-channel transform then standardisation with the training-split statistics."""

    def __init__(self, ds: xr.Dataset, channels: list[str] | None = None):
        sel = ds.sel(channel=channels) if channels else ds
        self.channels = [str(c) for c in sel.channel.values]
        self.index = [list(ds.channel.values).index(c) for c in self.channels]
        self.transforms = [str(t) for t in sel.transform.values]
        self.mean = sel.norm_mean.values.astype(np.float32)[:, None, None]
        self.std = sel.norm_std.values.astype(np.float32)[:, None, None]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(..., C, H, W) physical -> normalised float32, NaN -> 0 (the training mean)."""
        z = (apply_transform(x, self.transforms) - self.mean) / self.std
        return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


class SDOImages(Dataset):
    """Normalised images of the given rows; one Zarr chunk read per sample."""

    def __init__(self, path: str | Path, rows: np.ndarray, channels: list[str] | None = None):
        ds = open_dataset(path)
        self.path, self.rows = str(path), np.asarray(rows)
        self.norm = Normaliser(ds, channels)
        self._images = None  # opened lazily, once per worker process

    @classmethod
    def split(cls, path: str | Path, split: str, channels: list[str] | None = None) -> SDOImages:
        ds = open_dataset(path)
        rows = np.flatnonzero(ds.valid.values & (ds.split.values == split))
        return cls(path, rows, channels)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self._images is None:
            self._images = zarr.open_array(Path(self.path) / "images", mode="r")
        x = self._images[int(self.rows[i])][self.norm.index]
        return torch.from_numpy(self.norm(x)), int(self.rows[i])


class SDODataModule(L.LightningDataModule):
    """Train/val loaders over the ML-ready store."""

    def __init__(self, path: str | Path, *, batch_size: int = 16, num_workers: int = 0):
        super().__init__()
        self.path, self.batch_size, self.num_workers = str(path), batch_size, num_workers

    def setup(self, stage: str | None = None) -> None:
        self.train_set = SDOImages.split(self.path, "train")
        self.val_set = SDOImages.split(self.path, "val")
        if len(self.train_set) == 0:
            msg = f"the training split of {self.path} is empty"
            raise SdofmError(msg)

    def _loader(self, data: SDOImages, shuffle: bool) -> DataLoader:
        return DataLoader(
            data,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, shuffle=False) if len(self.val_set) else []
