"""`sdofm events`: the flare list and F10.7 copied into one layout, cut to the data range."""

import pandas as pd
import pytest

from sdofm import SdofmError
from sdofm.sources.events import collect_events, read_f107, read_flare_list


def test_collected_files_read_back(events, synthetic_mirror, tiny_config):
    """Both files read back through the public loaders and equal the source, cut to the range."""
    start, end = (pd.Timestamp(tiny_config["data"][k]) for k in ("start", "end"))
    source = read_flare_list(synthetic_mirror / "flares.csv")
    source = source[(source.peak >= start) & (source.peak < end)].reset_index(drop=True)
    got = read_flare_list(events / "flares.csv")
    assert len(got) == len(source) > 0
    pd.testing.assert_series_equal(got.peak, source.peak)
    assert list(got.goes_class) == list(source.goes_class)
    pd.testing.assert_series_equal(got.lon, source.lon, atol=1e-9)
    f107 = read_f107(events / "f107.csv")
    assert f107.index.min() == start and f107.index.max() < end
    src = read_f107(synthetic_mirror / "f107.csv").loc[f107.index]
    pd.testing.assert_frame_equal(f107, src, atol=0.006)


def test_no_f107_in_range_writes_nothing(tmp_path, synthetic_mirror):
    out = tmp_path / "events"
    with pytest.raises(SdofmError, match="no F10.7 values between 1990"):
        collect_events(
            synthetic_mirror / "flares.csv",
            synthetic_mirror / "f107.csv",
            out,
            start="1990-01-01",
            end="1990-02-01",
        )
    assert not out.exists()
