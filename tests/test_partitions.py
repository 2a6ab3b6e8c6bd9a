"""The build as monthly partitions (one cluster job each) merged into one store."""

from __future__ import annotations

import numpy as np
import pytest

from sdofm import SdofmError
from sdofm.dataset.build import build_partition, merge_partitions, partitions
from sdofm.dataset.loader import open_dataset


@pytest.fixture(scope="module")
def parts(pulled, tiny_config, tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    params = {"data": tiny_config["data"], "splits": tiny_config["splits"]}
    out = []
    for period in partitions(tiny_config["data"]):
        build_partition(pulled, root / f"{period}.zarr", params, period)
        out.append(root / f"{period}.zarr")
    return params, out


def test_months_of_the_range(tiny_config):
    assert partitions(tiny_config["data"]) == ["2011-01", "2011-02", "2011-03"]


def test_merged_partitions_equal_the_one_step_build(parts, dataset, tmp_path):
    params, paths = parts
    out = tmp_path / "merged.zarr"
    merge_partitions(list(reversed(paths)), out, params)  # order given does not matter
    merged, ref = open_dataset(out), open_dataset(dataset)
    for name in ("valid", "split", "norm_mean", "norm_std", "frame_time"):
        np.testing.assert_array_equal(merged[name].values, ref[name].values)
    np.testing.assert_array_equal(merged.images.values, ref.images.values)
    # Chunks are linked, not copied: the partitions' files and the store's are the same inode.
    chunk = out / "images" / "0.0.0.0"
    assert chunk.stat().st_ino == (paths[0] / "images" / "0.0.0.0").stat().st_ino


def test_a_missing_month_is_refused(parts, tmp_path):
    params, paths = parts
    with pytest.raises(SdofmError, match="do not cover the configured time range"):
        merge_partitions(paths[:-1], tmp_path / "merged.zarr", params)
    assert not (tmp_path / "merged.zarr").exists()


def test_a_period_outside_the_range_is_refused(pulled, parts, tmp_path):
    params, _ = parts
    with pytest.raises(SdofmError, match="no time step"):
        build_partition(pulled, tmp_path / "p.zarr", params, "2012-06")
