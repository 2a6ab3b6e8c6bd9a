"""Event data for real runs: malformed files, NOAA JSON, GOES-derived flares, HEK/LISIRD, config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sdofm import SdofmError
from sdofm.sources import eventsources
from sdofm.sources.events import collect_events, read_f107, read_flare_list, read_goes_xrs
from sdofm.sources.goes import detect_flares, goes_class_to_flux

T = pd.Timestamp


def _sunpy_file(name: str) -> Path:
    from sunpy.data.test import get_test_filepath

    return Path(get_test_filepath(name))


HEK = (
    "event_starttime,event_peaktime,event_endtime,fl_goescls,hgs_x,hgs_y,ar_noaanum\n"
    "2011-01-03T10:00:00,2011-01-03T10:10:00,2011-01-03T10:30:00,M1.2,20.5,-14.0,11140\n"
    "2011-01-04T10:00:00,2011-01-04T10:10:00,2011-01-04T10:30:00,C3.0,,,\n"
)
PENTICTON = (
    "fluxdate    fluxtime    fluxjulian    fluxcarrington  fluxobsflux  fluxadjflux  fluxursi\n"
    "----------  ----------  ------------  --------------  -----------  -----------  --------\n"
    "20110101    200000      02455563.331  002105.423      000084.3     000081.5     000073.3\n"
    "20110102    200000      02455564.331  002105.460      000085.0     000082.0     000073.8\n"
)
NOAA_DAILY = [
    {"time_tag": "2011-01-01T20:00:00", "frequency": 2800, "flux": 84.3, "ninety_day_mean": 80},
    {"time_tag": "2011-01-01T20:00:00", "frequency": 1415, "flux": 60.0, "ninety_day_mean": 55},
    {"time_tag": "2011-01-03T20:00:00", "frequency": 2800, "flux": 91.0, "ninety_day_mean": 81},
]

# (file name, content, the message expected: the file, the line and what was expected)
MALFORMED = {
    "flares": [
        ("ragged.csv", HEK + "2011-01-05T10:00:00,x,y,z,1,2,3,4,5\n", r"ragged\.csv.*line 4"),
        ("time.csv", HEK.replace("2011-01-04T10:10:00", "yesterday"), r"line 3: .*'yesterday'"),
        ("class.csv", HEK.replace("C3.0", "Q3"), r"line 3: GOES class 'Q3'"),
        ("lon.csv", HEK.replace("20.5", "west"), r"line 2: hgs_x .*'west' is not a number"),
        ("empty.csv", "", r"empty\.csv is empty"),
        ("binary.csv", "\x00\x01\x02", r"binary\.csv is a binary file"),
        ("header.csv", "a,b\n1,2\n", r"header\.csv line 1: not a known flare list"),
        ("noclass.csv", HEK.replace("C3.0", ""), r"line 3: no GOES class and no peak flux"),
        (
            "swpc.csv",
            "event_date,start,max,end,goes_class,location\n20110309,2313,2323,2329,X1.5,N08Q11\n",
            r"swpc\.csv line 2: location 'N08Q11'",
        ),
        (
            "swpc_date.csv",
            "event_date,start,max,end,goes_class\n2011-03-09,2313,2323,2329,X1.5\n",
            r"swpc_date\.csv line 2: cannot read the event date \(YYYYMMDD\)",
        ),
    ],
    "f107": [
        (
            "json_syntax.json",
            '[\n {"time_tag": "2011-01-01", "flux": 80},\n {"time_tag": }\n]',
            r"json_syntax\.json line 3: expected a JSON value",
        ),
        (
            "json_keys.json",
            '[\n {"time_tag": "2011-01-01", "flux": 80},\n {"date": "x"}\n]',
            r"line 3: expected a record with a time",
        ),
        (
            "json_flux.json",
            '[\n {"time_tag": "2011-01-01", "flux": "high"}\n]',
            r"line 2: flux 'high' is not a number",
        ),
        ("json_object.json", '{"time_tag": "2011-01-01"}', r"line 1: expected a JSON array"),
        (
            "csv_time.csv",
            "time,observed_flux\n2011-01-01,80\nsoon,81\n",
            r"csv_time\.csv line 3: cannot read time 'soon'",
        ),
        (
            "csv_flux.csv",
            "time,observed_flux\n2011-01-01,80\n2011-01-02,lots\n",
            r"line 3: observed_flux 'lots' is not a number",
        ),
        ("short.txt", PENTICTON + "20110103    200000\n", r"short\.txt line 5: expected 7 columns"),
        (
            "pdate.txt",
            PENTICTON.replace("20110102", "2011x102"),
            r"pdate\.txt line 4: cannot read time",
        ),
        ("other.csv", "a,b\n1,2\n", r"other\.csv line 1: not an F10.7 file"),
    ],
    "goes": [
        (
            "goes_time.csv",
            "time,xrsb_flux\n2011-01-01T00:00,1e-6\nnever,2e-6\n",
            r"goes_time\.csv line 3: cannot read time 'never'",
        ),
        (
            "goes_flux.csv",
            "time,xrsb_flux\n2011-01-01T00:00,1e-6\n2011-01-01T00:01,big\n",
            r"line 3: xrsb_flux 'big' is not a number",
        ),
        (
            "goes_cols.csv",
            "time,flux\n2011-01-01T00:00,1e-6\n",
            r"goes_cols\.csv line 1: not a GOES XRS CSV",
        ),
    ],
}
READERS = {"flares": read_flare_list, "f107": read_f107, "goes": read_goes_xrs}


@pytest.mark.parametrize(
    ("kind", "name", "content", "match"),
    [(k, *case) for k, cases in MALFORMED.items() for case in cases],
    ids=[case[0] for cases in MALFORMED.values() for case in cases],
)
def test_malformed_file_is_one_line_naming_file_and_line(tmp_path, kind, name, content, match):
    path = tmp_path / name
    path.write_text(content) if "\x00" not in content else path.write_bytes(content.encode())
    with pytest.raises(SdofmError) as err:
        READERS[kind](path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text
    assert re.search(match, text), text


def test_noaa_daily_json(tmp_path):
    path = tmp_path / "f107_cm_flux.json"
    path.write_text(json.dumps(NOAA_DAILY, indent=1))
    f107 = read_f107(path)
    assert f107.attrs["cadence"] == "daily"
    assert list(f107.index) == list(pd.date_range("2011-01-01", "2011-01-03"))
    assert f107["observed_flux"].tolist()[::2] == [84.3, 91.0]  # 2800 MHz only
    assert f107.loc["2011-01-02"].isna().all()


def test_noaa_solar_cycle_json_from_sunpy_is_monthly_and_refused_for_the_tasks(tmp_path):
    path = _sunpy_file("observed-solar-cycle-indices-truncated.json")
    raw = json.loads(path.read_text())
    f107 = read_f107(path)
    assert f107.attrs["cadence"] == "monthly"
    assert list(f107.index) == list(pd.to_datetime([r["time-tag"] for r in raw]))
    np.testing.assert_allclose(f107["observed_flux"], [r["f10.7"] for r in raw])
    flares = tmp_path / "flares.csv"
    flares.write_text(HEK)
    with pytest.raises(SdofmError, match=r"monthly F10.7 means.*daily") as err:
        collect_events(flares, path, tmp_path / "out", start="2012-09-01", end="2013-01-01")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def test_predicted_solar_cycle_json_is_refused_in_one_line():
    path = _sunpy_file("predicted-solar-cycle-truncated.json")
    with pytest.raises(SdofmError, match=r"line 2: expected a record with a time .* and a flux"):
        read_f107(path)


def test_flares_from_real_goes_fits_match_swpc():
    """sunpy's GOES-15 file of 2011-06-07: SWPC lists M2.5, start 06:16, max 06:41, end 06:59."""
    flares = detect_flares(read_goes_xrs(_sunpy_file("go1520110607.fits")), min_class="C1.0")
    m = flares[flares.goes_class.str[0] == "M"]
    assert len(m) == 1
    row = m.iloc[0]
    assert (row.start, row.peak, row.end) == (
        T("2011-06-07T06:16"),
        T("2011-06-07T06:41"),
        T("2011-06-07T06:59"),
    )
    assert row.goes_class == "M2.5"


def test_flares_from_synthetic_goes_match_the_planted_ones(synthetic_mirror):
    """Every planted flare of C5 and above is found within 5 minutes of its peak, class +-30 %."""
    xrs = read_goes_xrs(synthetic_mirror / "goes_xrs.csv")
    found = detect_flares(xrs, min_class="C1.0")
    planted = read_flare_list(synthetic_mirror / "flares.csv")
    big = planted[planted.peak_flux >= 5e-6]
    assert len(big) >= 3
    for row in big.itertuples():
        near = found[(found.peak - row.peak).abs() <= pd.Timedelta("5min")]
        assert len(near) == 1, row
        assert near.peak_flux.iloc[0] == pytest.approx(row.peak_flux, rel=0.3)
    # Nothing is invented: each detection above C5 is a planted flare (or overlapping ones).
    for row in found[found.peak_flux >= 5e-6].itertuples():
        assert ((planted.peak - row.peak).abs() <= pd.Timedelta("30min")).any(), row


def test_collect_events_with_goes(tmp_path, synthetic_mirror, tiny_config):
    out = tmp_path / "events"
    start, end = "2011-02-01", "2011-03-01"
    counts = collect_events(
        "goes",
        synthetic_mirror / "f107.csv",
        out,
        start=start,
        end=end,
        goes=synthetic_mirror / "goes_xrs.csv",
    )
    assert sorted(p.name for p in out.iterdir()) == ["f107.csv", "flares.csv", "goes_xrs.csv"]
    goes = read_goes_xrs(out / "goes_xrs.csv")
    assert goes.index.min() == T(start) and goes.index.max() < T(end)
    src = read_goes_xrs(synthetic_mirror / "goes_xrs.csv").loc[goes.index, "xrsb"]
    np.testing.assert_allclose(goes["xrsb"], src, rtol=1e-6)
    assert pd.read_csv(out / "goes_xrs.csv").columns.tolist() == ["time", "xrsb_flux"]
    flares = read_flare_list(out / "flares.csv")
    assert len(flares) == counts["flares"] > 0
    assert flares.peak.between(T(start), T(end)).all()
    assert (flares.peak_flux >= goes_class_to_flux("B1.0")).all()
    assert counts["goes_samples"] == len(goes)


def test_collect_events_goes_without_series_fails_before_writing(tmp_path, synthetic_mirror):
    with pytest.raises(SdofmError, match="no GOES XRS file is given"):
        collect_events(
            "goes",
            synthetic_mirror / "f107.csv",
            tmp_path / "e",
            start="2011-01-01",
            end="2011-02-01",
        )
    assert not (tmp_path / "e").exists()


def test_goes_glob_joins_daily_files(tmp_path):
    for day, flux in (("01", 1e-6), ("02", 2e-6)):
        (tmp_path / f"goes_201101{day}.csv").write_text(
            f"time,xrsb_flux\n2011-01-{day}T00:00:00,{flux}\n2011-01-{day}T00:01:00,{flux}\n"
        )
    goes = read_goes_xrs(tmp_path / "goes_*.csv")
    assert len(goes) == 4 and goes.index.is_monotonic_increasing
    with pytest.raises(SdofmError, match="no GOES XRS file matches"):
        read_goes_xrs(tmp_path / "nothing_*.nc")


# Online sources, with the network call replaced by what the service returns ------------------


def test_hek_fetch_through_sunpy_client(tmp_path, monkeypatch):
    from astropy.table import Table
    from sunpy.net import hek

    rows = Table(
        {
            "event_starttime": ["2011-02-15T01:44:00", "2011-03-09T23:13:00"],
            "event_peaktime": ["2011-02-15T01:56:00", "2011-03-09T23:23:00"],
            "event_endtime": ["2011-02-15T02:06:00", "2011-03-09T23:29:00"],
            "fl_goescls": ["X2.2", "X1.5"],
            "hgs_x": [10.0, 11.0],
            "hgs_y": [-20.0, 8.0],
            "ar_noaanum": [11158, 11166],
            "frm_name": ["SWPC", "SWPC"],
            "event_type": ["FL", "FL"],
            "event_coord1": [10.0, 11.0],
            "event_coord2": [-20.0, 8.0],
            "event_coord3": [None, None],
            "event_coordunit": ["degrees", "degrees"],
            "event_coordsys": ["UTC-HGS-TOPO", "UTC-HGS-TOPO"],
        }
    )
    asked = []

    def download(self, data):
        asked.append(data)
        return rows

    monkeypatch.setattr(hek.HEKClient, "_download", download)
    out = tmp_path / "flares.csv"
    n = eventsources.fetch_event("flares", out, start="2011-02-01", end="2011-03-01")
    assert n == 1 and asked and asked[0]["event_type"] == "FL"
    flares = read_flare_list(out)
    assert flares.goes_class.tolist() == ["X2.2"] and flares.noaa_ar.tolist() == [11158]
    assert flares.peak.tolist() == [T("2011-02-15T01:56")] and flares.lat.tolist() == [-20.0]


def test_online_fetch_failure_is_one_line(tmp_path, monkeypatch):
    import requests

    def offline(*args, **kwargs):
        raise requests.ConnectionError("Name or service not known")

    monkeypatch.setattr(requests, "get", offline)
    with pytest.raises(SdofmError, match=r"LISIRD F10.7 download failed \(offline\?\)"):
        eventsources.fetch_event(
            "f107", tmp_path / "f107.csv", start="2011-01-01", end="2011-02-01"
        )
    assert not (tmp_path / "f107.csv").exists()


def test_lisird_fetch_reads_the_served_csv(tmp_path, monkeypatch):
    import requests

    body = (
        "time (yyyy-MM-dd'T'HH:mm:ss.SSS),observed_flux (solar flux unit (SFU)),"
        "adjusted_flux (solar flux unit (SFU))\n"
        "2011-01-01T20:00:00.000,84.3,81.5\n2011-01-02T20:00:00.000,85.0,82.0\n"
    )

    class Response:
        content = body.encode()

        def raise_for_status(self):
            return None

    seen = []
    monkeypatch.setattr(requests, "get", lambda url, timeout: seen.append(url) or Response())
    n = eventsources.fetch_event(
        "f107", tmp_path / "f107.csv", start="2011-01-01", end="2011-01-03"
    )
    assert n == 2 and "time>=2011-01-01T00:00:00Z" in seen[0]
    assert read_f107(tmp_path / "f107.csv")["adjusted_flux"].tolist() == [81.5, 82.0]


# Config: which files a run reads ------------------------------------------------------------


def test_relative_event_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    cfg_dir = tmp_path / "cfg"
    (cfg_dir / "ev").mkdir(parents=True)
    for name in ("f.csv", "g1.nc", "g2.nc"):
        (cfg_dir / "ev" / name).write_text("x")
    cfg = cfg_dir / "real.yaml"
    events = {"flares": "goes", "f107": "ev/f.csv", "goes": "ev/g*.nc"}
    cfg.write_text(json.dumps({"sources": {"events": events}}))
    monkeypatch.chdir(tmp_path)
    resolved = eventsources.resolve_event_sources(events, synthetic=False, config_files=[cfg])
    assert resolved["f107"] == str(cfg_dir / "ev" / "f.csv")
    inputs = eventsources.event_inputs(resolved, tmp_path / "downloads")
    assert inputs == {
        "f107": str(cfg_dir / "ev" / "f.csv"),
        "goes": [str(cfg_dir / "ev" / "g1.nc"), str(cfg_dir / "ev" / "g2.nc")],
    }
    fetched = eventsources.event_inputs({"flares": "hek", "f107": "lisird", "goes": None}, "dl")
    assert fetched == {"flares": "dl/flares.csv", "f107": "dl/f107.csv"}


@pytest.mark.parametrize(
    ("events", "match"),
    [
        ({"flares": None, "f107": "f.csv"}, r"'sources.events.flares': real data .* needs a HEK"),
        ({"flares": "x.csv", "f107": None}, r"'sources.events.f107': real data .* daily F10.7"),
        ({"flares": "goes", "f107": "f.csv", "goes": None}, r"'goes' needs sources.events.goes"),
    ],
)
def test_real_data_without_event_sources_is_a_config_error(events, match):
    with pytest.raises(SdofmError, match=match):
        eventsources.resolve_event_sources(events, synthetic=False)


# The README's real-data configuration ------------------------------------------------------


def readme_real_config() -> dict:
    """The YAML block under "Real data" in the README, as a user copies it."""
    from perf.realdata_run import readme_config

    config = readme_config("s3://gov-nasa-hdrl-data1/contrib/fdl-sdoml/fdl-sdoml-v2/")
    return config


def test_readme_real_config_events_run_offline_from_real_files(tmp_path, monkeypatch, capsys):
    """`sdofm events --config` on the README's real-data YAML, with the event files it names
    placed beside it: GOES-15 FITS from sunpy, F10.7 as NOAA's daily JSON; run elsewhere."""
    import shutil

    import yaml

    from sdofm.cli import main
    from tests.conftest import ROOT, _merge

    # As Snakemake does with --configfile: the README's block over the default config.
    config = _merge(
        yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), readme_real_config()
    )
    events = config["sources"]["events"]
    assert events["flares"] == "goes"
    config["data"].update(start="2011-06-06", end="2011-06-09")
    config["splits"] = {"test": [["2011-06-08", "2011-06-09"]], "buffer_days": 0}
    here = tmp_path / "project"
    goes = here / Path(events["goes"]).parent / "go1520110607.fits"
    goes.parent.mkdir(parents=True)
    shutil.copy(_sunpy_file("go1520110607.fits"), goes)
    f107 = here / events["f107"]
    f107.parent.mkdir(parents=True, exist_ok=True)
    days = pd.date_range("2011-06-06", "2011-06-08")
    f107.write_text(
        json.dumps(
            [{"time_tag": f"{d:%Y-%m-%d}T20:00:00", "flux": 90 + i} for i, d in enumerate(days)]
        )
    )
    (here / "real.yaml").write_text(yaml.safe_dump(config))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "events"
    code = main(["events", "--config", str(here / "real.yaml"), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    flares = read_flare_list(out / "flares.csv")
    assert flares.goes_class.tolist()[-1:] and "M2.5" in flares.goes_class.tolist()
    assert read_f107(out / "f107.csv")["observed_flux"].tolist() == [90.0, 91.0, 92.0]
    goes_out = read_goes_xrs(out / "goes_xrs.csv")
    assert len(goes_out) == 42177 and goes_out.index.min() >= T("2011-06-06T23:59")
    assert goes_out["xrsb"].max() == pytest.approx(2.5e-5, rel=0.05)


def test_real_config_without_events_stops_the_workflow_before_anything_runs(tmp_path):
    import subprocess

    import yaml

    from tests.conftest import ROOT, snakemake_command

    config = readme_real_config()
    del config["sources"]["events"]
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd, env = snakemake_command(
        tmp_path, "-s", str(ROOT / "workflow" / "Snakefile"), "--configfile", str(path), "-n"
    )
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode != 0
    assert "Invalid configuration: config key 'sources.events.flares': real data" in run.stderr


def test_workflow_reads_event_files_relative_to_the_config_file(tmp_path):
    """A dry run from another directory: collect_events gets the files beside the config."""
    import subprocess

    import yaml

    from tests.conftest import ROOT, snakemake_command

    here = tmp_path / "project"
    (here / "events" / "goes").mkdir(parents=True)
    (here / "events" / "goes" / "day1.nc").write_text("x")
    (here / "events" / "f107.json").write_text("[]")
    (here / "real.yaml").write_text(yaml.safe_dump(readme_real_config()))
    workdir = tmp_path / "work"
    workdir.mkdir()
    cmd, env = snakemake_command(
        workdir,
        "-s",
        str(ROOT / "workflow" / "Snakefile"),
        "--configfile",
        "../project/real.yaml",
        "-n",
        "-p",
        "results/data/events",
    )
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=workdir)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"--flares goes --f107 {here / 'events' / 'f107.json'}" in run.stdout
    assert f"--goes {here / 'events' / 'goes' / 'day1.nc'}" in run.stdout


def test_synthetic_goes_as_nascom_fits_reads_back_through_sunpy(tmp_path, synthetic_mirror):
    """The mirror's GOES series written as daily NASCOM files (what the real-data CI reads):
    sunpy's XRSTimeSeries and our reader both give the series back."""
    from sdofm.sources.goes import _read_goes_sunpy
    from sdofm.sources.synthetic.mirror import write_goes_fits

    xrs = read_goes_xrs(synthetic_mirror / "goes_xrs.csv").loc["2011-02-01":"2011-02-02"]
    paths = write_goes_fits(xrs, tmp_path)
    assert [p.name for p in paths] == ["go1520110201.fits", "go1520110202.fits"]
    back = read_goes_xrs(tmp_path / "go15*.fits")
    np.testing.assert_allclose(back["xrsb"], xrs["xrsb"], rtol=1e-6)
    assert (back.index == xrs.index).all()
    via_sunpy = _read_goes_sunpy(paths[0])
    np.testing.assert_allclose(via_sunpy["xrsb"], xrs.loc["2011-02-01", "xrsb"], rtol=1e-6)
