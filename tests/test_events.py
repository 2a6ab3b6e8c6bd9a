"""Loaders for EVE, flare lists, F10.7 and GOES XRS on synthetic and real public files."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from sdofm import SdofmError
from sdofm.sources.events import (
    flare_labels,
    flux_to_goes_class,
    goes_class_to_flux,
    read_eve,
    read_f107,
    read_flare_list,
    read_goes_xrs,
)
from sdofm.sources.goes import _read_goes_sunpy
from sdofm.sources.sdoml import EVE_GROUP
from sdofm.sources.synthetic import SyntheticSun, generate

T = pd.Timestamp


@pytest.fixture(scope="module")
def sun(tmp_path_factory) -> Path:
    """A month of a tiny synthetic Sun (daily frames, 10-minute GOES)."""
    out = tmp_path_factory.mktemp("events") / "sun"
    settings = SyntheticSun(
        start="2011-01-01",
        end="2011-02-01",
        cadence_minutes=1440,
        image_size=16,
        regions_per_day=1.0,
        goes_cadence_minutes=10,
    )
    generate(settings, out)
    return out


def _sunpy_test_file(name: str) -> Path:
    pytest.importorskip("sunpy.data.test")
    from sunpy.data.test import get_test_filepath

    path = Path(get_test_filepath(name))
    if not path.exists():
        pytest.skip(f"sunpy test file {name} is not installed")
    return path


# EVE ------------------------------------------------------------------------------------------


def test_read_eve_round_trip(sun):
    raw = zarr.open_group(sun / "sdomlv2_eve.zarr", mode="r")[EVE_GROUP]
    df = read_eve(sun / "sdomlv2_eve.zarr")
    assert isinstance(df.index, pd.DatetimeIndex) and df.index.is_monotonic_increasing
    assert len(df) == 31 * 24 and df.index[0] == T("2011-01-01")
    assert set(df.columns) == set(raw.array_keys()) - {"Time"}
    for line in ("Fe IX", "He II"):
        values = np.asarray(raw[line][:], np.float64)
        assert (values < 0).any()  # the synthetic store has gaps written as -1
        assert df[line].isna().sum() == (values < 0).sum()
        ok = values >= 0
        np.testing.assert_allclose(df[line].to_numpy()[ok], values[ok])


def test_read_eve_subset_and_url(sun):
    url = f"file://{sun / 'sdomlv2_eve.zarr'}"
    df = read_eve(url, lines=["He II", "Fe IX"], start="2011-01-10", end="2011-01-11")
    assert list(df.columns) == ["He II", "Fe IX"]
    assert len(df) == 24 and df.index[0] == T("2011-01-10") and df.index[-1] < T("2011-01-11")


def test_read_eve_unknown_line(sun):
    with pytest.raises(SdofmError, match=r"'Fe XXX'.*available.*Fe IX"):
        read_eve(sun / "sdomlv2_eve.zarr", lines=["Fe XXX"])
    with pytest.raises(SdofmError, match="does not exist"):
        read_eve(sun / "missing.zarr")


# Flare lists ----------------------------------------------------------------------------------


def test_read_flare_list_hek_matches_truth(sun):
    flares = read_flare_list(sun / "flares.csv")
    truth = pd.read_csv(sun / "ground_truth" / "flares.csv")
    front = truth[truth["front_side"]].sort_values("peak_time").reset_index(drop=True)
    assert len(flares) == len(front) > 0
    assert list(flares.columns) == [
        "start",
        "peak",
        "end",
        "goes_class",
        "peak_flux",
        "lat",
        "lon",
        "noaa_ar",
    ]
    assert (flares["peak"].to_numpy() == pd.to_datetime(front["peak_time"]).to_numpy()).all()
    assert (flares["start"] < flares["peak"]).all() and (flares["peak"] < flares["end"]).all()
    assert list(flares["goes_class"]) == list(front["goes_class"])
    np.testing.assert_allclose(flares["peak_flux"], front["peak_flux"])
    np.testing.assert_allclose(flares["lat"], front["latitude_deg"], atol=0.01)
    np.testing.assert_allclose(flares["lon"], front["longitude_deg"], atol=0.01)
    assert list(flares["noaa_ar"]) == list(front["noaa_number"])
    # Counts per class letter agree with the truth catalogue's front-side rows.
    assert (
        flares["goes_class"].str[0].value_counts().to_dict()
        == front["goes_class"].str[0].value_counts().to_dict()
    )
    assert [flux_to_goes_class(f) for f in front["peak_flux"]] == list(front["goes_class"])


SWPC_ISO = """start_time,peak_time,end_time,goes_class,noaa_active_region
2011-06-07T06:16:00,2011-06-07T06:41:00,2011-06-07T06:59:00,M2.5,11226
2011-02-15T01:44:00,2011-02-15T01:56:00,2011-02-15T02:06:00,x2.2,11158
2011-03-09T23:13:00,2011-03-09T23:23:00,2011-03-09T23:29:00,X1.5,
"""

SWPC_HHMM = """event_date,start,max,end,goes_class,noaa_active_region,location
20110309,2313,2323,2329,X1.5,11166,N08W11
20110607,0616,0641,0659,M2.5,11226,S21W54
20111231,2351,0005,0012,c4,0,
20120101,B0401,0412,////,M1,11389,S22E34
"""


def test_read_flare_list_swpc_iso(tmp_path):
    path = tmp_path / "swpc.csv"
    path.write_text(SWPC_ISO)
    flares = read_flare_list(path)
    assert list(flares["goes_class"]) == ["X2.2", "X1.5", "M2.5"]  # sorted by peak
    np.testing.assert_allclose(flares["peak_flux"], [2.2e-4, 1.5e-4, 2.5e-5])
    assert flares["peak"].iloc[0] == T("2011-02-15T01:56")
    assert flares["lat"].isna().all() and flares["lon"].isna().all()
    assert flares["noaa_ar"].iloc[0] == 11158 and pd.isna(flares["noaa_ar"].iloc[1])


def test_read_flare_list_swpc_hhmm(tmp_path):
    path = tmp_path / "swpc_events.csv"
    path.write_text(SWPC_HHMM)
    flares = read_flare_list(path)
    assert list(flares["goes_class"]) == ["X1.5", "M2.5", "C4.0", "M1.0"]
    x, m, c, m1 = (flares.iloc[i] for i in range(4))
    assert (x["start"], x["peak"], x["end"]) == (
        T("2011-03-09T23:13"),
        T("2011-03-09T23:23"),
        T("2011-03-09T23:29"),
    )
    assert (x["lat"], x["lon"]) == (8.0, 11.0) and (m["lat"], m["lon"]) == (-21.0, 54.0)
    assert m1["lon"] == -34.0 and pd.isna(c["noaa_ar"]) and m1["noaa_ar"] == 11389
    # Past midnight: the peak and end are on the next day.
    assert c["start"] == T("2011-12-31T23:51") and c["peak"] == T("2012-01-01T00:05")
    assert c["end"] == T("2012-01-01T00:12")
    assert m1["start"] == T("2012-01-01T04:01") and pd.isna(m1["end"])
    assert m1["peak_flux"] == pytest.approx(1e-5)


def test_read_flare_list_garbage_class_names_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(SWPC_ISO.replace("x2.2", "Q2.2"))
    with pytest.raises(SdofmError, match=r"bad\.csv line 3: .*'Q2\.2'"):
        read_flare_list(path)


def test_read_flare_list_rejects_unknown_layout(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(SdofmError, match="not a known flare list"):
        read_flare_list(path)


# GOES classes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "flux"),
    [
        ("A1.0", 1e-8),
        ("B5.5", 5.5e-7),
        ("C3.2", 3.2e-6),
        ("c3.2", 3.2e-6),
        ("M1", 1e-5),
        ("m1.0", 1e-5),
        ("X10", 1e-3),
        (" X2.2 ", 2.2e-4),
        ("X28", 2.8e-3),
    ],
)
def test_goes_class_to_flux(cls, flux):
    assert goes_class_to_flux(cls) == pytest.approx(flux)


@pytest.mark.parametrize("cls", ["", "Q1.0", "M", "1.5", "M1.5X", "M-1", "M0", "nan", "M1.2.3"])
def test_goes_class_garbage(cls):
    with pytest.raises(SdofmError, match="GOES class"):
        goes_class_to_flux(cls)


@pytest.mark.parametrize(
    ("flux", "cls"),
    [
        (3.2e-6, "C3.2"),
        (1e-5, "M1.0"),
        (9.96e-6, "M1.0"),
        (2.5554e-5, "M2.6"),
        (1e-3, "X10.0"),
        (2.8e-3, "X28.0"),
        (5e-9, "A0.5"),
        (1.0e-8, "A1.0"),
    ],
)
def test_flux_to_goes_class(flux, cls):
    assert flux_to_goes_class(flux) == cls


@pytest.mark.parametrize("flux", [0.0, -1e-6, float("nan"), float("inf")])
def test_flux_to_goes_class_rejects(flux):
    with pytest.raises(SdofmError, match="positive"):
        flux_to_goes_class(flux)


# Labels ---------------------------------------------------------------------------------------


def test_flare_labels_edges():
    flares = pd.DataFrame(
        {
            "peak": pd.to_datetime(["2011-01-02 00:00", "2011-01-05 12:00", "2011-01-08 00:00"]),
            "goes_class": ["M1.0", "C9.9", "X1.0"],
            "peak_flux": [1e-5, 9.9e-6, 1e-4],
        }
    )
    times = pd.to_datetime(
        [
            "2011-01-01 00:00:00",  # M1.0 exactly at t + 24 h: included
            "2011-01-02 00:00:00",  # M1.0 exactly at t: excluded
            "2011-01-05 00:00:00",  # only the C9.9 ahead: ignored
            "2011-01-07 00:00:00",  # X1.0 at t + 24 h
            "2011-01-07 00:00:01",  # X1.0 23:59:59 ahead
            "2011-01-08 00:00:00",  # X1.0 at t
        ]
    )
    labels = flare_labels(flares, times)
    assert labels.dtype == bool
    assert labels.tolist() == [True, False, False, True, True, False]
    assert flare_labels(flares, times, min_class="C1.0").tolist()[2]
    only_x = [False, False, False, True, True, False]
    assert flare_labels(flares, times, min_class="X1.0").tolist() == only_x
    assert not flare_labels(flares, times, horizon="12h")[0]
    assert flare_labels(flares.iloc[:0], times).tolist() == [False] * 6


def test_flare_labels_on_synthetic_list(sun):
    flares = read_flare_list(sun / "flares.csv")
    times = pd.date_range("2011-01-01", "2011-02-01", freq="1h")
    labels = flare_labels(flares, times, min_class="C1.0")
    expected = [
        ((flares["peak"] > t) & (flares["peak"] <= t + pd.Timedelta("24h"))).any() for t in times
    ]
    assert labels.tolist() == expected


# F10.7 ----------------------------------------------------------------------------------------


def test_read_f107_synthetic(sun):
    f107 = read_f107(sun / "f107.csv")
    raw = pd.read_csv(sun / "f107.csv")
    assert isinstance(f107.index, pd.DatetimeIndex) and f107.index.freqstr == "D"
    assert f107.index[0] == T("2011-01-01") and len(f107) == 31
    np.testing.assert_allclose(f107["adjusted_flux"], raw["adjusted_flux"])
    np.testing.assert_allclose(f107["observed_flux"], raw["observed_flux"])


def test_read_f107_penticton_text(tmp_path):
    path = tmp_path / "fluxtable.txt"
    path.write_text(
        "fluxdate    fluxtime    fluxjulian    fluxcarrington  fluxobsflux  fluxadjflux  fluxursi\n"
        "----------  ----------  ------------  --------------  -----------  -----------  --------\n"
        "20110101    170000      02455563.206  002105.418      000083.8     000081.0     000072.9\n"
        "20110101    200000      02455563.331  002105.423      000084.3     000081.5     000073.3\n"
        "20110101    230000      02455563.456  002105.427      000084.0     000081.2     000073.1\n"
        "20110102    200000      02455564.331  002105.460      000999.9     000000.0     000000.0\n"
        "20110104    200000      02455566.331  002105.530      000090.1     000087.1     000078.4\n"
    )
    f107 = read_f107(path)
    assert list(f107.index) == list(pd.date_range("2011-01-01", "2011-01-04"))
    assert f107.loc["2011-01-01", "observed_flux"] == pytest.approx(84.3)  # the 20 UT value
    assert f107.loc["2011-01-02"].isna().all()  # fill values
    assert f107.loc["2011-01-03"].isna().all()  # missing day
    assert f107.loc["2011-01-04", "adjusted_flux"] == pytest.approx(87.1)


def test_read_f107_rejects_other_csv(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(SdofmError, match="not an F10.7 file"):
        read_f107(path)


# GOES XRS -------------------------------------------------------------------------------------


def test_read_goes_xrs_synthetic_csv(sun):
    goes = read_goes_xrs(sun / "goes_xrs.csv")
    raw = pd.read_csv(sun / "goes_xrs.csv")
    assert list(goes.columns) == ["xrsb", "xrsa"] and goes["xrsa"].isna().all()
    assert len(goes) == 31 * 24 * 6 and goes.index[0] == T("2011-01-01")
    np.testing.assert_allclose(goes["xrsb"], raw["xrsb_flux"])
    # The brightest flare in the list shows in the light curve.
    flares = read_flare_list(sun / "flares.csv")
    assert goes["xrsb"].max() == pytest.approx(flares["peak_flux"].max(), rel=0.2)


def test_read_goes_xrs_csv_with_xrsa_and_fills(tmp_path):
    path = tmp_path / "goes.csv"
    path.write_text(
        "time,xrsb_flux,xrsa_flux\n"
        "2011-01-01 00:01:00,2e-6,1e-7\n"
        "2011-01-01 00:00:00,-99999,-1e-9\n"
    )
    goes = read_goes_xrs(path)
    assert goes.index[0] == T("2011-01-01") and goes.iloc[0].isna().all()
    assert goes.iloc[1].tolist() == [2e-6, 1e-7]


@pytest.mark.parametrize(
    ("name", "day", "peak"),
    [("go1520110607.fits", "2011-06-07", "M2.6"), ("go1520120601.fits.gz", "2012-06-01", "C3.4")],
)
def test_read_goes_xrs_sunpy_fits(name, day, peak):
    path = _sunpy_test_file(name)
    goes = read_goes_xrs(path)
    assert isinstance(goes.index, pd.DatetimeIndex) and goes.index.is_monotonic_increasing
    assert len(goes) > 40_000
    assert (goes.index.normalize() == T(day)).mean() > 0.99  # first sample is 1 s before midnight
    assert (goes[["xrsb", "xrsa"]].dropna() > 0).all().all() and goes.notna().all().all()
    assert (goes["xrsb"] > goes["xrsa"]).mean() > 0.99
    assert flux_to_goes_class(goes["xrsb"].max()) == peak
    # Our direct FITS reader gives the frame sunpy's XRSTimeSeries gives.
    ref = _read_goes_sunpy(path)
    np.testing.assert_allclose(goes.to_numpy(), ref.to_numpy())
    assert np.abs(ref.index.as_unit("ns").asi8 - goes.index.as_unit("ns").asi8).max() <= 1


@pytest.mark.parametrize(
    ("name", "day"),
    [
        ("sci_gxrs-l2-irrad_g15_d20131028_truncated.nc", "2013-10-28"),
        ("sci_xrsf-l2-avg1m_g16_d20210101_truncated.nc", "2021-01-01"),
        ("sci_xrsf-l2-flx1s_g17_d20201016_truncated.nc", "2020-10-16"),
    ],
)
def test_read_goes_xrs_sunpy_netcdf(name, day):
    pytest.importorskip("h5netcdf", reason="GOES netCDF needs sunpy[timeseries]")
    goes = read_goes_xrs(_sunpy_test_file(name))
    assert isinstance(goes.index, pd.DatetimeIndex) and len(goes) > 0
    assert (goes.index.normalize() == T(day)).all()
    assert (goes["xrsb"] > 0).all()


def test_read_goes_xrs_missing(tmp_path):
    with pytest.raises(SdofmError, match="no GOES XRS file"):
        read_goes_xrs(tmp_path / "nope.csv")
