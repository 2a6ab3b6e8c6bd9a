"""Pulling subsets of SDOML v2 stores from file:// and http:// URLs."""

import functools
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
import zarr

from sdofm import SdofmError
from sdofm.sources.sdoml import EVE_GROUP, eve_times, frame_times, pull_store

STORES = {"aia": "sdomlv2_small.zarr", "hmi": "sdomlv2_hmi.zarr", "eve": "sdomlv2_eve.zarr"}
NAMES = {"aia": ["171A", "94A"], "hmi": ["Bz"], "eve": ["Fe IX", "He II"]}
T = pd.Timestamp


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def http_root(synthetic_mirror):
    """The synthetic mirror served over HTTP on a free local port."""
    handler = functools.partial(_QuietHandler, directory=str(synthetic_mirror))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _src(synthetic_mirror, kind):
    return zarr.open_group(synthetic_mirror / STORES[kind], mode="r")


def _no_output(out):
    assert not out.exists()
    assert list(out.parent.glob("*partial*")) == []


def _arrays(group: zarr.Group, prefix=""):
    """Every array below ``group`` as {path: (values, attrs)}."""
    out = {}
    for name, arr in group.arrays():
        out[prefix + name] = (np.asarray(arr[:]), arr.attrs.asdict())
    for name, sub in group.groups():
        out.update(_arrays(sub, f"{prefix}{name}/"))
    return out


@pytest.mark.parametrize("kind", ["aia", "hmi", "eve"])
def test_file_and_http_identical(kind, synthetic_mirror, http_root, tmp_path):
    """The same pull over file:// and http:// gives identical arrays and attrs."""
    kw = dict(kind=kind, start=T("2011-01-05"), end=T("2011-01-20"), names=NAMES[kind])
    file_url = f"file://{synthetic_mirror / STORES[kind]}"
    http_url = f"{http_root}/{STORES[kind]}"
    c1 = pull_store(file_url, tmp_path / "f.zarr", **kw)
    c2 = pull_store(http_url, tmp_path / "h.zarr", **kw)
    assert c1 == c2 and c1
    g1, g2 = (zarr.open_group(tmp_path / p, mode="r") for p in ("f.zarr", "h.zarr"))
    a1, a2 = _arrays(g1), _arrays(g2)
    assert a1.keys() == a2.keys() and a1
    for key in a1:
        np.testing.assert_array_equal(a1[key][0], a2[key][0])
        assert a1[key][1] == a2[key][1], key
    assert g1.attrs["sdofm_source"] == file_url
    assert g2.attrs["sdofm_source"] == http_url


def test_time_range_selects_frames(synthetic_mirror, tmp_path):
    """[start, end) keeps exactly the source frames inside it, with their data and attrs."""
    src = _src(synthetic_mirror, "aia")["2011"]["171A"]
    start, end = T("2011-01-05"), T("2011-01-10")
    counts = pull_store(
        f"file://{synthetic_mirror / STORES['aia']}",
        tmp_path / "aia.zarr",
        kind="aia",
        start=start,
        end=end,
        names=["171A", "94A"],
    )
    times = frame_times(src)
    idx = np.flatnonzero((times >= start) & (times < end))
    assert len(idx) == 10  # two frames a day
    assert counts == {"171A": 10, "94A": 10}
    dst = zarr.open_group(tmp_path / "aia.zarr", mode="r")["2011"]["171A"]
    np.testing.assert_array_equal(dst[:], src.get_orthogonal_selection((idx,)))
    assert (frame_times(dst) == times[idx]).all()
    for key in ("T_OBS", "EXPTIME", "DEG_COR"):
        assert dst.attrs[key] == [src.attrs[key][i] for i in idx]


def test_hmi_range_is_half_open_in_utc(synthetic_mirror, tmp_path):
    """HMI T_OBS is TAI: the frame labelled 00:00:34 TAI is 00:00 UTC, inside [00:00, …)."""
    pull_store(
        f"file://{synthetic_mirror / STORES['hmi']}",
        tmp_path / "hmi.zarr",
        kind="hmi",
        start=T("2011-01-05"),
        end=T("2011-01-06"),
        names=["Bz"],
    )
    dst = zarr.open_group(tmp_path / "hmi.zarr", mode="r")["2011"]["Bz"]
    assert dst.attrs["T_OBS"] == ["2011.01.05_00:00:34_TAI", "2011.01.05_12:00:34_TAI"]


@pytest.mark.parametrize(("start", "hour"), [("2011-01-05 00:00", 0), ("2011-01-05 08:00", 12)])
def test_cadence_thinning(start, hour, synthetic_mirror, tmp_path):
    """Cadence keeps the frame nearest each step counted from ``start`` (frames are 12 h apart,
    a few seconds after 00:00 and 12:00), and records the step and the offset of each."""
    start = T(start)
    counts = pull_store(
        f"file://{synthetic_mirror / STORES['aia']}",
        tmp_path / "aia.zarr",
        kind="aia",
        start=start,
        end=start + pd.Timedelta(days=5),
        names=["171A"],
        cadence=pd.Timedelta(hours=24),
    )
    assert counts == {"171A": 5}
    dst = zarr.open_group(tmp_path / "aia.zarr", mode="r")["2011"]["171A"]
    times = frame_times(dst)
    assert list(times.floor("h")) == list(
        pd.date_range(start.normalize() + pd.Timedelta(hours=hour), periods=5, freq="D")
    )
    steps = pd.DatetimeIndex(dst.attrs["sdofm_step"])
    assert list(steps) == list(pd.date_range(start, periods=5, freq="D"))
    offsets = np.asarray(dst.attrs["sdofm_step_offset_s"])
    np.testing.assert_allclose(offsets, (times - steps).total_seconds(), atol=1e-3)
    src = _src(synthetic_mirror, "aia")["2011"]["171A"]
    idx = frame_times(src).get_indexer(times)
    np.testing.assert_array_equal(dst[:], src.get_orthogonal_selection((idx,)))


def test_eve_range_and_cadence(synthetic_mirror, tmp_path):
    """EVE rows are selected and thinned on their Time strings; values follow."""
    counts = pull_store(
        f"file://{synthetic_mirror / STORES['eve']}",
        tmp_path / "eve.zarr",
        kind="eve",
        start=T("2011-01-05"),
        end=T("2011-01-06"),
        names=["Fe IX"],
        cadence=pd.Timedelta(hours=6),
    )
    assert counts == {"Time": 4, "Fe IX": 4}
    src = _src(synthetic_mirror, "eve")[EVE_GROUP]
    dst = zarr.open_group(tmp_path / "eve.zarr", mode="r")[EVE_GROUP]
    assert sorted(dst.array_keys()) == ["Fe IX", "Time"]
    t = eve_times(dst)
    assert list(t) == list(pd.date_range("2011-01-05", periods=4, freq="6h"))
    idx = eve_times(src).get_indexer(t)
    np.testing.assert_array_equal(dst["Fe IX"][:], np.asarray(src["Fe IX"][:])[idx])


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_missing_store_raises(scheme, synthetic_mirror, http_root, tmp_path):
    """A store that is not there raises SdofmError naming the URL and writes nothing."""
    root = f"file://{synthetic_mirror}" if scheme == "file" else http_root
    url = f"{root}/no_such_store.zarr"
    out = tmp_path / "aia.zarr"
    with pytest.raises(SdofmError, match=re.escape(url)):
        pull_store(url, out, kind="aia", start=T("2011-01-05"), end=T("2011-01-10"), names=["171A"])
    _no_output(out)


@pytest.mark.parametrize("kind", ["aia", "eve"])
def test_empty_range_raises(kind, synthetic_mirror, tmp_path):
    """A time range without frames raises SdofmError and leaves no output."""
    out = tmp_path / f"{kind}.zarr"
    with pytest.raises(SdofmError, match="no .* data"):
        pull_store(
            f"file://{synthetic_mirror / STORES[kind]}",
            out,
            kind=kind,
            start=T("2015-01-01"),
            end=T("2015-02-01"),
            names=NAMES[kind],
        )
    _no_output(out)


@pytest.mark.parametrize("kind", ["aia", "eve"])
def test_a_window_without_frames_is_a_gap_unless_the_range_has_none(
    kind, synthetic_mirror, tmp_path
):
    """A month's share (``window``) with no frame in a range that has frames is an empty store
    (a gap for the build to record); in a range without any it is the same error as ever."""
    url = f"file://{synthetic_mirror / STORES[kind]}"

    def pull(name: str, start: str, end: str, window: tuple) -> dict[str, int]:
        return pull_store(
            url,
            tmp_path / name,
            kind=kind,
            start=T(start),
            end=T(end),
            names=NAMES[kind],
            window=window,
        )

    quiet = (T("2011-01-03T01:00"), T("2011-01-03T01:30"))  # between two frames and EVE samples
    assert sum(pull("gap.zarr", "2011-01-01", "2011-02-01", quiet).values()) == 0
    assert (tmp_path / "gap.zarr").exists()
    with pytest.raises(SdofmError, match="no .* data"):
        pull("none.zarr", "2015-01-01", "2015-02-01", (T("2015-01-01"), T("2015-01-02")))
    _no_output(tmp_path / "none.zarr")


@pytest.mark.parametrize(
    ("label", "utc"),
    [
        ("2011.01.01_00:00:34_TAI", "2011-01-01 00:00:00"),  # TAI − UTC = 34 s
        ("2012.07.01_00:00:35_TAI", "2012-07-01 00:00:00"),  # after the June 2012 leap second
        ("2017.01.01_00:00:37_TAI", "2017-01-01 00:00:00"),
    ],
)
def test_hmi_tai_times_follow_the_leap_seconds(label, utc):
    from sdofm.sources.sdoml import format_tai, parse_tobs

    assert parse_tobs([label])[0] == pd.Timestamp(utc)
    assert format_tai(pd.Timestamp(utc)) == label
