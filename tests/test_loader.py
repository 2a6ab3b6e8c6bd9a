"""The training data loader: normalisation, splits, disk masking, batching, refusal."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader

from sdofm import SdofmError
from sdofm.dataset.build import apply_transform
from sdofm.dataset.loader import SDOImages, collate, disk_mask, open_dataset
from sdofm.training.datamodule import SDODataModule


def _expected(dataset, row: int) -> np.ndarray:
    """(transform(x) - mean) / std from the store's own variables, NaN -> 0."""
    ds = open_dataset(dataset)
    x = np.asarray(zarr.open_array(dataset / "images", mode="r")[row], np.float32)
    transforms = [str(t) for t in ds.transform.values]
    mean = ds.norm_mean.values[:, None, None]
    std = ds.norm_std.values[:, None, None]
    z = (apply_transform(x, transforms) - mean) / std
    return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def test_normalisation_matches_store_variables(dataset):
    data = SDOImages.split(dataset, "train")
    for i in (0, len(data) - 1):
        x, row = data[i]
        assert x.dtype == torch.float32 and x.shape == (len(data.norm.index), 32, 32)
        np.testing.assert_allclose(x.numpy(), _expected(dataset, row), rtol=1e-5, atol=1e-5)
    batch = data.__getitems__([0, 1, 2])  # the batched path gives the same values
    for k in range(3):
        np.testing.assert_allclose(batch.x[k].numpy(), data[k][0].numpy(), rtol=1e-6, atol=1e-6)


def test_nan_becomes_zero(dataset, tmp_path):
    copy = tmp_path / "nan.zarr"
    shutil.copytree(dataset, copy)
    images = zarr.open_array(copy / "images", mode="r+")
    row = int(np.flatnonzero(open_dataset(copy).valid.values)[0])
    x = np.asarray(images[row])
    x[0, :4, :4], x[-1, 5, 5] = np.nan, np.inf
    images[row] = x
    chunk = copy / "images" / f"{row}.0.0.0"
    zarr.open_array(copy / "chunk_bytes", mode="r+")[row] = chunk.stat().st_size  # the manifest
    data = SDOImages(copy, np.array([row]))
    out = data[0][0].numpy()
    assert np.isfinite(out).all()
    assert (out[0, :4, :4] == 0).all() and out[-1, 5, 5] == 0
    np.testing.assert_allclose(out, _expected(copy, row), rtol=1e-5, atol=1e-5)
    unwritten = SDOImages(copy, np.array([row]))
    chunk.unlink()  # a missing chunk of a valid row is an error, never a blank (NaN) frame
    with pytest.raises(SdofmError, match=f"chunk images/{row}.0.0.0 .* is missing"):
        unwritten[0]


def test_split_rows_are_valid_rows_of_split(dataset):
    ds = open_dataset(dataset)
    for split in ("train", "val", "test"):
        rows = SDOImages.split(dataset, split).rows
        expected = np.flatnonzero(ds.valid.values & (ds.split.values == split))
        np.testing.assert_array_equal(rows, expected)


def test_mask_off_disk_zeroes_exactly_off_disk(dataset):
    plain = SDOImages.split(dataset, "train")
    masked = SDOImages.split(dataset, "train", mask_off_disk=True)
    on = disk_mask(32)
    r = 976 / (4.8 * 512 / 32)
    yy, xx = np.mgrid[:32, :32]
    np.testing.assert_array_equal(on, (yy - 15.5) ** 2 + (xx - 15.5) ** 2 <= r**2)
    assert 0 < on.sum() < on.size
    x, xm = plain[0][0].numpy(), masked[0][0].numpy()
    assert (xm[:, ~on] == 0).all()
    np.testing.assert_array_equal(xm[:, on], x[:, on])
    batch = masked.__getitems__([0])
    np.testing.assert_array_equal(batch.x[0].numpy(), xm)


@pytest.mark.parametrize("workers", [0, 1])
def test_datamodule_batches(dataset, workers):
    dm = SDODataModule(dataset, batch_size=4, num_workers=workers)
    dm.setup()
    n_ch = open_dataset(dataset).sizes["channel"]
    seen = []
    for x, rows in dm.train_dataloader():
        assert x.dtype == torch.float32 and x.shape[1:] == (n_ch, 32, 32)
        assert 1 <= x.shape[0] <= 4 and rows.shape == (x.shape[0],)
        seen += rows.tolist()
    assert sorted(seen) == dm.train_set.rows.tolist()
    x, rows = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert x.shape == (min(4, len(dm.val_set)), n_ch, 32, 32)
    np.testing.assert_allclose(x[0].numpy(), _expected(dataset, int(rows[0])), atol=1e-5)


@pytest.mark.parametrize("mask_off_disk", [False, True])
def test_normalising_on_the_device_equals_the_loader(dataset, mask_off_disk):
    """Physical batches normalised after the transfer equal batches normalised in the loader,
    NaN, negative and infinite values included."""
    on_device = SDODataModule(dataset, batch_size=5, mask_off_disk=mask_off_disk)
    in_loader = SDODataModule(
        dataset, batch_size=5, mask_off_disk=mask_off_disk, normalise_on="loader"
    )
    for dm in (on_device, in_loader):
        dm.setup()
    raw, rows = next(iter(on_device.val_dataloader()))
    assert raw.max() > 50  # physical DN/s, not normalised
    raw[0, 0, :2, :2] = torch.tensor([[np.nan, -3.0], [np.inf, 0.0]])
    got, got_rows = on_device.on_after_batch_transfer((raw, rows), 0)
    expect = in_loader.val_set.norm.inplace(raw.numpy().copy(), in_loader.val_set.mask)
    torch.testing.assert_close(got, torch.from_numpy(expect), atol=2e-6, rtol=1e-5)
    assert torch.isfinite(got).all() and got_rows is rows
    assert in_loader.on_after_batch_transfer((raw, rows), 0)[0] is raw  # left as it is


def test_bad_normalise_on(dataset):
    with pytest.raises(SdofmError, match="normalise_on must be 'device' or 'loader'"):
        SDODataModule(dataset, normalise_on="gpu")


def test_default_collate_still_works(dataset):
    """extract.py uses a plain DataLoader: batches are (images, rows) as before."""
    data = SDOImages.split(dataset, "val")
    x, rows = next(iter(DataLoader(data, batch_size=3)))
    assert x.shape == (3, len(data.norm.index), 32, 32)
    np.testing.assert_array_equal(rows.numpy(), data.rows[:3])
    x2, rows2 = collate(data.__getitems__([0, 1, 2]))
    torch.testing.assert_close(x, x2)
    torch.testing.assert_close(rows, rows2)


def test_channel_subset(dataset):
    ds = open_dataset(dataset)
    channels = [str(c) for c in ds.channel.values][1:3]
    data = SDOImages.split(dataset, "train", channels)
    x, row = data[0]
    np.testing.assert_allclose(x.numpy(), _expected(dataset, row)[1:3], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data.__getitems__([0]).x[0].numpy(), x.numpy(), atol=1e-6)


def test_refuses_incomplete_store(dataset, tmp_path):
    broken = tmp_path / "broken.zarr"
    shutil.copytree(dataset, broken)
    (broken / ".zmetadata").unlink()
    with pytest.raises(SdofmError, match="not a complete"):
        open_dataset(broken)
    with pytest.raises(SdofmError):
        SDOImages(broken, np.array([0]))


def test_temporal_stacks_come_from_the_index(dataset):
    from sdofm.dataset.loader import SDOStacks, temporal_index

    ds = open_dataset(dataset)
    stacks = temporal_index(ds, frames=3, spacing=2, split="train")
    assert stacks.shape[1] == 3 and len(stacks) > 10
    np.testing.assert_array_equal(np.diff(stacks, axis=1), 2)
    ok = ds.valid.values & (ds.split.values == "train")
    assert ok[stacks].all()  # every frame valid and in the split: none across a boundary
    # Every possible start is there: a row is missing only if one of its frames is not usable.
    starts = set(stacks[:, 0])
    for r in range(len(ok) - 4):
        assert (r in starts) == bool(ok[r] and ok[r + 2] and ok[r + 4])
    data = SDOStacks(dataset, frames=3, spacing=2, split="train")
    x, row = data[5]
    assert tuple(x.shape) == (ds.sizes["channel"], 3, ds.sizes["y"], ds.sizes["x"])
    assert row == stacks[5, -1]  # an item is labelled by its newest frame
    single = SDOImages(dataset, np.array([stacks[5, 1]]))[0][0]
    torch.testing.assert_close(x[:, 1], single)
    assert len(temporal_index(ds, frames=1000, spacing=1, split="train")) == 0
