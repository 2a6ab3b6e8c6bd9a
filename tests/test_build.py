"""The ML-ready store: splits with a buffer, alignment, statistics and bad data."""

import copy
import shutil

import numpy as np
import pandas as pd
import pytest
import zarr

from sdofm import SdofmError
from sdofm.dataset.build import build_dataset, downsample, match_times
from sdofm.dataset.loader import open_dataset
from sdofm.dataset.splits import assign_splits, check_no_leak
from sdofm.sources.sdoml import EVE_GROUP, eve_times

HMI = ("Bx", "By", "Bz")


def _min_gap_days(a: pd.DatetimeIndex, b: pd.DatetimeIndex) -> float:
    d = np.abs(a.to_numpy()[:, None] - b.to_numpy()[None, :])
    return d.min() / np.timedelta64(1, "D")


def test_assign_splits_keeps_buffer():
    """No train row within the buffer of val/test; val keeps clear of test; test stays whole."""
    times = pd.date_range("2011-01-01", "2011-07-01", freq="6h", inclusive="left")
    val = [["2011-03-01", "2011-03-24"]]
    test = [["2011-03-25", "2011-04-10"], ["2011-06-01", "2011-06-15"]]
    labels = assign_splits(times, val=val, test=test, buffer_days=5)
    assert set(labels) == {"train", "val", "test", "buffer"}
    in_test = np.zeros(len(times), bool)
    for a, b in test:
        in_test |= (times >= a) & (times < b)
    assert (labels[in_test] == "test").all() and (labels[~in_test] != "test").all()
    train, held = times[labels == "train"], times[(labels == "val") | (labels == "test")]
    assert _min_gap_days(train, held) >= 5
    assert _min_gap_days(times[labels == "val"], times[labels == "test"]) >= 5
    # Rows outside the intervals and beyond the buffer stay in training.
    assert labels[times.get_loc(pd.Timestamp("2011-02-10"))] == "train"
    assert labels[times.get_loc(pd.Timestamp("2011-02-26"))] == "buffer"
    assert labels[times.get_loc(pd.Timestamp("2011-03-22"))] == "buffer"  # val, near test
    assert labels[times.get_loc(pd.Timestamp("2011-03-05"))] == "val"
    check_no_leak(times, labels, 5)  # the assignment itself passes the leak check


def test_assign_splits_zero_buffer_is_plain_intervals():
    """Without a buffer, labels are exactly the intervals."""
    times = pd.date_range("2011-01-01", periods=20, freq="D")
    labels = assign_splits(
        times,
        val=[["2011-01-05", "2011-01-08"]],
        test=[["2011-01-10", "2011-01-12"]],
        buffer_days=0,
    )
    expected = ["train"] * 4 + ["val"] * 3 + ["train"] * 2 + ["test"] * 2 + ["train"] * 9
    assert list(labels) == expected


def test_check_no_leak_catches_planted_leak():
    """A train row one day from a test row is a leak with a 27-day buffer."""
    times = pd.date_range("2011-01-01", periods=60, freq="D")
    labels = np.array(["train"] + ["buffer"] * 28 + ["train"] + ["test"] * 30)
    with pytest.raises(SdofmError, match="leak: train row at 2011-01-30"):
        check_no_leak(times, labels, 27)
    labels[29] = "buffer"  # the remaining train row is 30 days from the test rows
    check_no_leak(times, labels, 27)


def test_images_chunked_per_sample(dataset, tiny_config):
    """Images are (time, channel, y, x), one chunk per time step."""
    data = tiny_config["data"]
    n_ch = len(data["aia_channels"]) + len(data["hmi_components"])
    size = data["image_size"]
    images = zarr.open_array(dataset / "images", mode="r")
    assert images.chunks == (1, n_ch, size, size)
    ds = open_dataset(dataset)
    assert [str(c) for c in ds.channel.values] == [*data["aia_channels"], *data["hmi_components"]]
    assert ds.images.shape == (180, n_ch, size, size)


@pytest.fixture(scope="module")
def built(dataset):
    ds = open_dataset(dataset)
    return ds, ds.images.values.astype(np.float64), [str(c) for c in ds.channel.values]


def _stats(x: np.ndarray, channels: list[str]):
    z = np.stack(
        [x[:, c] if ch in HMI else np.log1p(x[:, c]) for c, ch in enumerate(channels)], axis=1
    )
    return z.mean(axis=(0, 2, 3)), z.std(axis=(0, 2, 3))


def test_norm_stats_from_training_rows_only(built):
    """norm_mean/std equal log1p (AIA) / linear (HMI) statistics over valid training rows."""
    ds, images, channels = built
    train = ds.valid.values & (ds.split.values == "train")
    assert 0 < train.sum() < ds.valid.values.sum()
    mean, std = _stats(images[train], channels)
    np.testing.assert_allclose(ds.norm_mean.values, mean, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ds.norm_std.values, std, rtol=1e-4)
    assert ds.attrs["norm_rows"] == int(train.sum())
    assert [str(t) for t in ds.transform.values] == [
        "linear" if c in HMI else "log1p" for c in channels
    ]


def test_held_out_rows_do_not_touch_the_statistics(pulled, tiny_config, tmp_path, built):
    """Brightening every validation/test frame 100-fold leaves the normalisation unchanged."""
    ref, _, channels = built
    sdoml = tmp_path / "sdoml"
    shutil.copytree(pulled, sdoml)
    held_out = tiny_config["splits"]["val"] + tiny_config["splits"]["test"]
    arr = zarr.open_array(sdoml / "aia.zarr" / "2011" / "171A", mode="r+")
    times = pd.to_datetime([t.rstrip("Z") for t in arr.attrs["T_OBS"]])
    inside = np.zeros(len(times), bool)
    for a, b in held_out:
        inside |= (times >= pd.Timestamp(a)) & (times < pd.Timestamp(b))
    assert inside.any()
    for i in np.flatnonzero(inside):
        arr[i] = arr[i] * 100.0
    out = tmp_path / "ds.zarr"
    build_dataset(sdoml, out, _params(tiny_config))
    ds = open_dataset(out)
    np.testing.assert_array_equal(ds.norm_mean.values, ref.norm_mean.values)
    np.testing.assert_array_equal(ds.norm_std.values, ref.norm_std.values)
    k = channels.index("171A")
    all_mean, _ = _stats(ds.images.values[ds.valid.values], channels)
    assert all_mean[k] > ds.norm_mean.values[k] + 0.5  # what a leaky build would have used


def test_eve_nan_where_source_missing(pulled, tiny_config, tmp_path):
    """EVE values are copied at the matched times, NaN where the source was negative."""
    sdoml = tmp_path / "sdoml"
    shutil.copytree(pulled, sdoml)
    g = zarr.open_group(sdoml / "eve.zarr", mode="r+")[EVE_GROUP]
    out = tmp_path / "ds.zarr"
    grid = pd.date_range(
        tiny_config["data"]["start"], tiny_config["data"]["end"], freq="720min", inclusive="left"
    )
    tol = pd.Timedelta(minutes=tiny_config["data"]["eve_tolerance_minutes"])
    pos = pd.Index(eve_times(g)).get_indexer(grid, method="nearest", tolerance=tol)
    assert (pos >= 0).all()
    planted = g["Fe IX"][:]
    planted[pos[[3, 50, 100]]] = -1.0  # dropouts at three matched times
    g["Fe IX"][:] = planted
    build_dataset(sdoml, out, _params(tiny_config))
    ds = open_dataset(out)
    for k, line in enumerate(tiny_config["data"]["eve_lines"]):
        src = np.asarray(g[line][:])[pos]
        got = ds.eve.values[:, k]
        missing = src < 0
        assert np.isnan(got[missing]).all(), line
        np.testing.assert_array_equal(got[~missing], src[~missing])
    k = tiny_config["data"]["eve_lines"].index("Fe IX")
    assert np.isnan(ds.eve.values[[3, 50, 100], k]).all()


def test_match_times_tolerance():
    """Nearest frame within the tolerance, -1 outside it; positions index the input order."""
    grid = pd.date_range("2011-01-01", periods=4, freq="h")
    times = pd.DatetimeIndex(
        ["2011-01-01 02:04", "2011-01-01 00:05", "2011-01-01 00:09", "2011-01-01 01:20"]
    )
    pos = match_times(grid, times, pd.Timedelta(minutes=10))
    # 00:00 -> 00:05 (pos 1); 01:00 -> 01:20 is too far; 02:00 -> 02:04 (pos 0); 03:00 none.
    assert list(pos) == [1, -1, 0, -1]
    assert list(match_times(grid, times, pd.Timedelta(minutes=30))) == [1, 3, 0, -1]
    assert list(match_times(grid, pd.DatetimeIndex([]), pd.Timedelta(minutes=10))) == [-1] * 4


def test_downsample_block_means():
    """Mean of f x f blocks over the last two axes; identity at the same size."""
    x = np.arange(2 * 16, dtype=np.float64).reshape(2, 4, 4)
    out = downsample(x, 2)
    assert out.shape == (2, 2, 2)
    assert out[0, 0, 0] == np.mean([0, 1, 4, 5])
    assert out[1, 1, 1] == np.mean([26, 27, 30, 31])
    np.testing.assert_array_equal(downsample(x, 4), x)
    np.testing.assert_allclose(downsample(x, 1)[:, 0, 0], x.mean(axis=(1, 2)))


@pytest.mark.parametrize("shape", [(6, 6), (4, 8)])
def test_downsample_rejects_bad_sizes(shape):
    """A size that does not divide the frame (or a non-square frame) is an SdofmError."""
    with pytest.raises(SdofmError, match="downsample"):
        downsample(np.zeros(shape), 4)


def _params(tiny_config, **data):
    params = {"data": copy.deepcopy(tiny_config["data"]), "splits": tiny_config["splits"]}
    params["data"].update(data)
    return params


def test_build_without_frames_raises(pulled, tiny_config, tmp_path):
    """A data range with no frame for a channel raises SdofmError and writes nothing."""
    out = tmp_path / "ds.zarr"
    params = _params(tiny_config, start="2012-01-01", end="2012-04-01")
    with pytest.raises(SdofmError, match="channel 94A has no frame"):
        build_dataset(pulled, out, params)
    assert not out.exists()


def test_build_missing_channel_raises(pulled, tiny_config, tmp_path):
    """A channel absent from the pulled store is named in the error."""
    sdoml = tmp_path / "sdoml"
    shutil.copytree(pulled, sdoml)
    shutil.rmtree(sdoml / "hmi.zarr" / "2011" / "Bz")
    with pytest.raises(SdofmError, match="Bz"):
        build_dataset(sdoml, tmp_path / "ds.zarr", _params(tiny_config))


def test_nan_frame_marks_row_invalid(pulled, tiny_config, tmp_path, built):
    """A NaN frame in one channel makes its row invalid and keeps it out of the statistics."""
    ref, _, _ = built
    sdoml = tmp_path / "sdoml"
    shutil.copytree(pulled, sdoml)
    arr = zarr.open_array(sdoml / "aia.zarr" / "2011" / "171A", mode="r+")
    row = 10  # 2011-01-06 00:00, a training row
    frame = arr[row]
    frame[:4] = np.nan
    arr[row] = frame
    out = tmp_path / "ds.zarr"
    summary = build_dataset(sdoml, out, _params(tiny_config))
    ds = open_dataset(out)
    assert ref.valid.values[row] and ref.split.values[row] == "train"
    assert not ds.valid.values[row]
    expected = ref.valid.values.copy()
    expected[row] = False
    np.testing.assert_array_equal(ds.valid.values, expected)
    assert np.isnan(ds.images.values[row]).all()
    assert ds.attrs["norm_rows"] == ref.attrs["norm_rows"] - 1
    assert summary["train"] == ref.attrs["norm_rows"] - 1
    assert np.isfinite(ds.norm_mean.values).all() and np.isfinite(ds.norm_std.values).all()


def test_open_dataset_requires_zmetadata(dataset, tmp_path):
    """A folder without consolidated metadata (e.g. a killed build) is refused."""
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    with pytest.raises(SdofmError, match="not a complete"):
        open_dataset(empty)
    broken = tmp_path / "broken.zarr"
    shutil.copytree(dataset, broken)
    (broken / ".zmetadata").unlink()
    with pytest.raises(SdofmError):
        open_dataset(broken)
    assert open_dataset(dataset).sizes["time"] == 180
