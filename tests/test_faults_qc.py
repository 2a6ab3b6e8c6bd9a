"""Fault injection on the frames: what a solar physicist would reject must be quarantined.

Planted in a copy of the pulled stores, built through the CLI in one 3-month partition (so
the problems in its second and third months test that QC reports a whole block): an absurd
AIA and HMI frame, QUALITY ≠ 0 (AIA and HMI), an all-zero HMI and a constant AIA frame, and a
duplicate HMI timestamp. Each must be one QC row with its reason, its time step not valid, and
nothing of it in the normalisation statistics.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from sdofm.cli import main
from sdofm.dataset.build import qc_path

# (store, array, frame index): planted problems; 12-h frames from 2011-01-01, so index 10 is
# 2011-01-06 00:00 (a training row), 70 is 2011-02-05, 110 is 2011-02-25 (validation).
ABSURD_AIA = ("aia", "2011/171A", 10)
ABSURD_HMI = ("hmi", "2011/Bz", 12)
FLAGGED_AIA = ("aia", "2011/193A", 70)  # in the block's second month
FLAGGED_HMI = ("hmi", "2011/By", 16)
ZERO_HMI = ("hmi", "2011/Bx", 18)
CONSTANT_AIA = ("aia", "2011/211A", 110)
DUPLICATE_HMI = ("hmi", "2011/Bz", 75)  # repeats frame 74's time, in the second month


def _array(sdoml, where) -> tuple[zarr.Array, int]:
    store, path, index = where
    return zarr.open_group(sdoml / f"{store}.zarr", mode="r+")[path], index


def _time(pulled, where) -> pd.Timestamp:
    """The time step a planted frame belongs to (its T_OBS rounded to the 12-h grid)."""
    arr, index = _array(pulled, where)
    from sdofm.sources.sdoml import frame_times

    return frame_times(arr)[index].round("12h")


@pytest.fixture(scope="module")
def planted(pulled, tiny_config, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults_qc")
    sdoml = root / "sdoml"
    shutil.copytree(pulled, sdoml)
    for where, scale in ((ABSURD_AIA, 1e27), (ABSURD_HMI, 1e26)):
        arr, i = _array(sdoml, where)
        arr[i] = arr[i] * np.float32(scale)  # finite, structured, absurd (~1e30)
    for where, flag in ((FLAGGED_AIA, 1 << 12), (FLAGGED_HMI, 0x00000400)):
        arr, i = _array(sdoml, where)
        quality = list(arr.attrs["QUALITY"])
        quality[i] = flag
        arr.attrs["QUALITY"] = quality
    arr, i = _array(sdoml, ZERO_HMI)
    arr[i] = np.zeros(arr.shape[1:], np.float32)
    arr, i = _array(sdoml, CONSTANT_AIA)
    arr[i] = np.full(arr.shape[1:], 5.0, np.float32)
    arr, i = _array(sdoml, DUPLICATE_HMI)
    tobs = list(arr.attrs["T_OBS"])
    tobs[i] = tobs[i - 1]
    arr.attrs["T_OBS"] = tobs
    data = {**tiny_config["data"], "partition_months": 3}
    out = root / "dataset.zarr"
    params = json.dumps({"data": data, "splits": tiny_config["splits"]})
    assert main(["build", "--sdoml", str(sdoml), "--out", str(out), "--params", params]) == 0
    ds = xr.open_zarr(out, consolidated=True, drop_variables=["images"]).load()
    return ds, pd.read_csv(qc_path(out), parse_dates=["time"])


def _issue(qc, issue, channel) -> pd.DataFrame:
    return qc[(qc["issue"] == issue) & (qc["channel"] == channel)]


def _invalid(ds, time) -> bool:
    return not bool(ds.valid.sel(time=time).values)


def test_absurd_frames_are_quarantined_and_leave_normalisation_alone(planted, pulled, dataset):
    ds, qc = planted
    for where, channel in ((ABSURD_AIA, "171A"), (ABSURD_HMI, "Bz")):
        rows = _issue(qc, "out of range", channel)
        assert list(rows["time"]) == [_time(pulled, where)]
        assert "outside the physical" in rows["detail"].iloc[0]
        assert _invalid(ds, _time(pulled, where))
        assert ds.split.sel(time=_time(pulled, where)).item() == "train"
    ref = xr.open_zarr(dataset, consolidated=True)
    # A few training rows fewer; nothing else moves the statistics (1e30 made 171A's std ×10).
    np.testing.assert_allclose(ds.norm_std.values, ref.norm_std.values, rtol=0.03)
    np.testing.assert_allclose(ds.norm_mean.values, ref.norm_mean.values, rtol=0.03, atol=0.02)


def test_quality_flagged_frames_are_quarantined_with_the_reason(planted, pulled):
    ds, qc = planted
    aia = _issue(qc, "quality", "193A")
    assert len(aia) == 1 and aia["detail"].iloc[0].startswith("2011/193A[70] QUALITY 0x00001000")
    assert "not in science pointing mode" in aia["detail"].iloc[0]  # bit 12, decoded by aiapy
    hmi = _issue(qc, "quality", "By")
    assert len(hmi) == 1 and "QUALITY 0x00000400" in hmi["detail"].iloc[0]
    for where in (FLAGGED_AIA, FLAGGED_HMI):
        assert _invalid(ds, _time(pulled, where))


def test_constant_frames_of_any_instrument_are_quarantined(planted, pulled):
    ds, qc = planted
    zero = _issue(qc, "constant frame", "Bx")
    assert list(zero["time"]) == [_time(pulled, ZERO_HMI)]
    assert "every pixel is 0 G" in zero["detail"].iloc[0]
    flat = _issue(qc, "constant frame", "211A")
    assert list(flat["time"]) == [_time(pulled, CONSTANT_AIA)]
    for where in (ZERO_HMI, CONSTANT_AIA):
        assert _invalid(ds, _time(pulled, where))


def test_duplicate_timestamps_are_recorded_in_every_month_of_a_block(planted):
    _, qc = planted
    dup = _issue(qc, "duplicate", "Bz")
    assert len(dup) == 1 and dup["detail"].iloc[0] == "2011/Bz[75] repeats a time"
    assert dup["time"].iloc[0].month == 2  # the block's second month


def test_qc_counts_attr_matches_the_table(planted):
    ds, qc = planted
    counts = json.loads(ds.attrs["qc_counts"])
    assert counts == qc["issue"].value_counts().to_dict()
    for issue in ("out of range", "quality", "constant frame", "duplicate"):
        assert counts[issue] >= 1


def test_an_impossible_physical_range_is_one_line(pulled, tiny_config, tmp_path, capsys):
    data = {**tiny_config["data"], "physical_range": {"94A": [10, 1]}}
    params = json.dumps({"data": data, "splits": tiny_config["splits"]})
    out = tmp_path / "p.zarr"
    args = ["build", "--sdoml", str(pulled), "--out", str(out), "--period", "2011-01"]
    assert main([*args, "--params", params]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.endswith("data.physical_range.94A is [10, 1]: the minimum must be below it")
    assert not out.exists()
