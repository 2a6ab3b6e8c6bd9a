"""Bad input in the build: duplicates, off-cadence frames, dark and NaN frames, missing years."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import zarr

from sdofm.dataset.build import build_dataset, qc_path
from sdofm.dataset.loader import open_dataset


@pytest.fixture(scope="module")
def planted(pulled, tiny_config, tmp_path_factory):
    """A pulled store with one of each problem planted, and the store built from it."""
    root = tmp_path_factory.mktemp("qc")
    sdoml = root / "sdoml"
    shutil.copytree(pulled, sdoml)
    aia = zarr.open_group(sdoml / "aia.zarr", mode="r+")
    a171, a193 = aia["2011/171A"], aia["2011/193A"]
    tobs = list(a171.attrs["T_OBS"])
    tobs[5] = tobs[4]  # a duplicate timestamp
    shifted = pd.Timestamp(tobs[20].rstrip("Z")) + pd.Timedelta(hours=3)
    tobs[20] = shifted.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-4] + "Z"  # off the 12-h cadence
    a171.attrs["T_OBS"] = tobs
    a171[30] = -np.linspace(1, 2, a171.shape[1] * a171.shape[2], dtype=np.float32).reshape(
        a171.shape[1:]
    )  # a dark (negative, not constant) frame
    frame = a193[40]
    frame[0, 0] = np.nan
    a193[40] = frame  # a NaN pixel
    out = root / "dataset.zarr"
    summary = build_dataset(
        sdoml, out, {"data": tiny_config["data"], "splits": tiny_config["splits"]}
    )
    return out, summary, pd.read_csv(qc_path(out), parse_dates=["time"])


def _rows(qc, issue, channel):
    return qc[(qc["issue"] == issue) & (qc["channel"] == channel)]


def test_each_problem_is_quarantined_with_a_reason(planted):
    out, summary, qc = planted
    assert len(_rows(qc, "duplicate", "171A")) == 1
    assert len(_rows(qc, "off-cadence", "171A")) == 1
    dark = _rows(qc, "no positive signal", "171A")
    nan = _rows(qc, "non-finite pixels", "193A")
    assert len(dark) == 1 and len(nan) == 1
    # The step whose frame was moved away and the duplicate's own step now have gaps.
    gaps = _rows(qc, "gap", "171A")
    assert len(gaps) == 2
    ds = open_dataset(out)
    times = pd.DatetimeIndex(ds.time.values)
    for t in list(dark["time"]) + list(nan["time"]) + list(gaps["time"]):
        assert not ds.valid.values[times.get_loc(t)]
    assert summary["qc"] == json.loads(ds.attrs["qc_counts"])
    assert summary["valid"] == int(ds.valid.values.sum()) == len(times) - 4


def test_good_rows_are_untouched(planted, dataset):
    out, _, _ = planted
    ds, ref = open_dataset(out), open_dataset(dataset)
    good = ds.valid.values
    assert good.sum() > 0.9 * ref.valid.values.sum()
    k = list(ds.channel.values).index("94A")
    rows = np.flatnonzero(good)[:5]
    np.testing.assert_array_equal(ds.images.values[rows, k], ref.images.values[rows, k])


def test_a_channel_missing_for_a_year_leaves_gaps(pulled, tiny_config, tmp_path):
    """Frames of 304A only up to mid-February: the later steps are gaps, not errors."""
    sdoml = tmp_path / "sdoml"
    shutil.copytree(pulled, sdoml)
    arr = zarr.open_group(sdoml / "aia.zarr", mode="r+")["2011/304A"]
    keep = 90
    data, attrs = arr[:keep], {k: v[:keep] for k, v in arr.attrs.asdict().items()}
    arr.resize((keep, *arr.shape[1:]))
    arr[:] = data
    arr.attrs.update(attrs)
    out = tmp_path / "ds.zarr"
    summary = build_dataset(
        sdoml, out, {"data": tiny_config["data"], "splits": tiny_config["splits"]}
    )
    assert summary["qc"]["gap"] == 180 - keep
    ds = open_dataset(out)
    assert not ds.valid.values[keep:].any() and ds.valid.values[:keep].all()
