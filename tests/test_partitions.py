"""The work as monthly partitions (one cluster job each): the pull, the build and the
embeddings of each month, merged, equal the work done in one piece."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from sdofm import SdofmError
from sdofm.cli import main
from sdofm.dataset.build import build_partition, merge_partitions, partitions, qc_path
from sdofm.dataset.loader import open_dataset
from sdofm.embeddings.extract import extract_embeddings, merge_embeddings


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


def test_partitions_of_several_months(
    pulled, tiny_config, dataset, checkpoint, embeddings, tmp_path
):
    """`data.partition_months: 2`: blocks counted from the first month, the last one short;
    built, merged and embedded block by block, they give the one-piece store and embeddings."""
    data = tiny_config["data"] | {"partition_months": 2}
    assert partitions(data) == ["2011-01", "2011-03"]
    params = {"data": data, "splits": tiny_config["splits"]}
    paths = [tmp_path / f"{p}.zarr" for p in partitions(data)]
    for period, path in zip(partitions(data), paths, strict=True):
        build_partition(pulled, path, params, period)
    with pytest.raises(SdofmError, match="no time step"):  # not the first month of a block
        build_partition(pulled, tmp_path / "feb.zarr", params, "2011-02")
    merge_partitions(paths, tmp_path / "merged.zarr", params)
    merged, ref = open_dataset(tmp_path / "merged.zarr"), open_dataset(dataset)
    np.testing.assert_array_equal(merged.images.values, ref.images.values)
    assert merged.attrs["partition_months"] == 2
    parts = [tmp_path / f"emb-{p}" for p in partitions(data)]
    for period, part in zip(partitions(data), parts, strict=True):
        extract_embeddings(
            tmp_path / "merged.zarr", checkpoint, part, tiny_config["embed"], period=period
        )
    merge_embeddings(parts, tmp_path / "merged.zarr", tmp_path / "emb.zarr")
    np.testing.assert_array_equal(
        xr.open_zarr(tmp_path / "emb.zarr").embedding.values,
        xr.open_zarr(embeddings).embedding.values,
    )


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


@pytest.fixture(scope="module")
def monthly_pulls(tiny_config, synthetic_mirror, tmp_path_factory):
    """`sdofm pull --period` for each month: only what that month's build reads."""
    root = tmp_path_factory.mktemp("monthly_pulls")
    settings = json.dumps({"sources": tiny_config["sources"], "data": tiny_config["data"]})
    for period in partitions(tiny_config["data"]):
        args = ["pull", "--params", settings, "--source", str(synthetic_mirror)]
        assert main([*args, "--out", str(root / period), "--period", period]) == 0
    return root


def _frames(pull_dir, kind: str = "aia", name: str = "171A") -> pd.DatetimeIndex:
    from sdofm.sources.sdoml import frame_times

    store = zarr.open_group(pull_dir / f"{kind}.zarr", mode="r")
    times = [frame_times(store[y][name]) for y in sorted(store.group_keys()) if name in store[y]]
    return times[0].append(times[1:]) if times else pd.DatetimeIndex([])


def test_monthly_pulls_build_the_one_piece_store(
    monthly_pulls, pulled, dataset, tiny_config, tmp_path
):
    """Each month's pull holds the whole pull's frames of that month and a margin (cadence
    bins within the tolerance); built and merged, the months give the store of the whole pull,
    bit for bit, QC table included."""
    whole = _frames(pulled)
    months = [_frames(monthly_pulls / p) for p in partitions(tiny_config["data"])]
    assert sum(len(m) for m in months) < 1.2 * len(whole)  # a margin, not the whole range
    assert sorted(set().union(*months)) == list(whole)  # every frame in some month
    params = {"data": tiny_config["data"], "splits": tiny_config["splits"]}
    parts = []
    for period in partitions(tiny_config["data"]):
        parts.append(tmp_path / f"{period}.zarr")
        build_partition(monthly_pulls / period, parts[-1], params, period)
    out = tmp_path / "merged.zarr"
    merge_partitions(parts, out, params)
    merged, ref = open_dataset(out), open_dataset(dataset)
    for name in ("valid", "split", "norm_mean", "norm_std", "frame_time", "eve", "images"):
        np.testing.assert_array_equal(merged[name].values, ref[name].values, err_msg=name)
    pd.testing.assert_frame_equal(pd.read_csv(qc_path(out)), pd.read_csv(qc_path(dataset)))


def test_monthly_embeddings_merge_to_the_one_piece_store(
    dataset, checkpoint, embeddings, tiny_config, tmp_path
):
    params = dict(tiny_config["embed"])
    parts = []
    for period in reversed(partitions(tiny_config["data"])):  # any order
        parts.append(tmp_path / f"{period}.zarr")
        extract_embeddings(dataset, checkpoint, parts[-1], params, period=period)
        assert len(xr.open_zarr(parts[-1]).time) < len(open_dataset(dataset).time)
    out = tmp_path / "merged.zarr"
    merge_embeddings(parts, dataset, out)
    merged, ref = xr.open_zarr(out).load(), xr.open_zarr(embeddings).load()
    xr.testing.assert_identical(merged, ref)
    with pytest.raises(SdofmError, match="do not cover the time steps"):
        merge_embeddings(parts[:-1], dataset, tmp_path / "short.zarr")
