"""Surya's format: export of the ML-ready store, import into our build, and the round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from sdofm import SdofmError
from sdofm.dataset.build import build_partition, merge_partitions, partitions
from sdofm.dataset.loader import SDOImages, open_dataset
from sdofm.dataset.surya import SURYA_NAMES, export_surya, import_surya


@pytest.fixture(scope="module")
def exported(tmp_path_factory, dataset):
    out = tmp_path_factory.mktemp("surya") / "surya"
    return out, export_surya(dataset, out)


def test_export_is_surya_layout(exported, dataset):
    out, summary = exported
    ds = open_dataset(dataset)
    index = pd.read_csv(out / "index.csv")
    assert list(index.columns) == ["timestep", "path", "present"]
    assert len(index) == ds.sizes["time"] and index.present.sum() == int(ds.valid.sum())
    row = index[index.present == 1].iloc[0]
    t = pd.Timestamp(row.timestep)
    assert row.path.endswith(f"{t:%Y}/{t:%m}/{t:%Y%m%d_%H%M}.nc")
    with xr.open_dataset(row.path, engine="h5netcdf") as nc:
        names = [SURYA_NAMES[str(c)] for c in ds.channel.values]
        assert list(nc.data_vars) == names and "aia94" in names and "hmi_bz" in names
        # What Surya's loader does with it: ds[channels].to_array() → (C, H, W).
        stack = nc[names].to_array().values
    k = int(np.flatnonzero(ds.time.values == np.datetime64(t))[0])
    np.testing.assert_array_equal(stack, ds.images[k].values)
    scalers = yaml.safe_load((out / "scalers.yaml").read_text())
    assert list(scalers) == names
    s = scalers["aia171"]
    assert s["class"] == "StandardScaler" and s["is_fitted"] is True
    assert float(s["min"]) <= float(s["mean"]) <= float(s["max"]) and float(s["std"]) > 0
    # The scaler is Surya's transform fitted on the training rows only.
    train = ds.valid.values & (ds.split.values == "train")
    x = ds.images.sel(channel="171A").values[train].astype(np.float64)
    z = np.sign(x) * np.log1p(np.abs(x))
    assert float(s["mean"]) == pytest.approx(z.mean(), rel=1e-6)
    assert float(s["std"]) == pytest.approx(z.std(), rel=1e-5)
    assert summary["train"] == int(train.sum())


def test_round_trip_reproduces_the_samples(exported, dataset, pulled, tiny_config, tmp_path):
    """Surya folder → our stores → the same build: identical samples, splits and statistics."""
    out, _ = exported
    frames = tmp_path / "frames"
    import_surya(out / "index.csv", frames)
    params = {"data": tiny_config["data"], "splits": tiny_config["splits"]}
    parts = []
    for period in partitions(params["data"]):
        part = tmp_path / f"{period}.zarr"
        build_partition(pulled, part, params, period, frames_dir=frames)
        parts.append(part)
    rebuilt = tmp_path / "rebuilt.zarr"
    merge_partitions(parts, rebuilt, params)
    a, b = open_dataset(dataset), open_dataset(rebuilt)
    np.testing.assert_array_equal(a.valid.values, b.valid.values)
    np.testing.assert_array_equal(a.split.values, b.split.values)
    np.testing.assert_allclose(a.norm_mean.values, b.norm_mean.values, rtol=1e-6)
    np.testing.assert_allclose(a.norm_std.values, b.norm_std.values, rtol=1e-6)
    np.testing.assert_allclose(a.eve.values, b.eve.values, equal_nan=True)
    x, y = SDOImages.split(dataset, "train"), SDOImages.split(rebuilt, "train")
    assert len(x) == len(y) > 0
    for i in (0, len(x) - 1):
        np.testing.assert_array_equal(x[i][0].numpy(), y[i][0].numpy())
        assert x[i][1] == y[i][1]


def test_import_refuses_a_folder_without_channels(tmp_path):
    nc = tmp_path / "20110101_0000.nc"
    xr.Dataset({"temperature": (("y", "x"), np.zeros((4, 4), np.float32))}).to_netcdf(
        nc, engine="h5netcdf"
    )
    (tmp_path / "index.csv").write_text(f"timestep,path,present\n2011-01-01T00:00,{nc},1\n")
    with pytest.raises(SdofmError, match="none of Surya's SDO channels"):
        import_surya(tmp_path / "index.csv", tmp_path / "out")
    (tmp_path / "bad.csv").write_text("time,file\n")
    with pytest.raises(SdofmError, match=r"bad\.csv line 1: not a Surya index"):
        import_surya(tmp_path / "bad.csv", tmp_path / "out")
