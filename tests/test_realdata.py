"""The README's real-data configuration, only its URL changed, runs the workflow on a 512²
SDOML v2 mirror served over loopback HTTP, with event data from real-format files (GOES XRS
as NASCOM FITS, F10.7 as NOAA JSON) beside the config (merged with a short-window override)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
import zarr

from perf.realdata_run import prepare, readme_config, run
from sdofm.config import TRUTH_TASKS
from sdofm.dataset.loader import open_dataset
from sdofm.sources.events import read_flare_list, read_goes_xrs
from tests.conftest import ROOT

pytestmark = pytest.mark.workflow

TASKS = sorted(
    set(yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["benchmarks"])
    - set(TRUTH_TASKS)  # they need the synthetic Sun's ground truth
)


@pytest.fixture(scope="module")
def realdata_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("realdata")
    served, project, ci = prepare(work, days=12)  # 24 steps of 512²: minutes
    table = run(work, served, project, ci, ["all"])
    return work / "run" / "results", table


def test_the_readme_config_changed_only_in_its_url(tmp_path):
    a, b = readme_config("s3://bucket/"), readme_config("http://127.0.0.1:1/")
    assert a["sources"].pop("sdoml") != b["sources"].pop("sdoml")
    assert a == b and a["sources"]["storage_options"] == {"anon": True}


def test_readme_real_data_runs_all_from_the_loopback_mirror(realdata_run):
    results, table = realdata_run
    assert table.attrs["requests"] > 50  # the stores were read over HTTP
    pulled = zarr.open_group(results / "data" / "sdoml" / "2011-02" / "aia.zarr", mode="r")
    assert pulled["2011"]["171A"].shape[1:] == (512, 512)  # pulled at SDOML's 512²
    assert pulled.attrs["sdofm_source"].startswith("http://127.0.0.1:")
    ds = open_dataset(results / "data" / "dataset.zarr")
    assert ds.sizes["x"] == 64 and int(ds.valid.sum()) >= 20
    for task in TASKS:  # `all`: every task's result and report, and the summary
        assert (results / task / "metrics.json").exists(), task
        assert (results / task / "report.html").exists(), task
    assert (results / "summary" / "report.html").exists()
    jobs = set(table["job"])
    for rule in (
        "pull_sdoml/2011-02",
        "collect_events",
        "build_dataset",
        "pretrain_backbone/mae_tiny",
    ):
        assert rule in jobs, sorted(jobs)


def test_events_come_from_the_real_format_files(realdata_run):
    results, _ = realdata_run
    events = results / "data" / "events"
    goes = read_goes_xrs(events / "goes_xrs.csv")
    assert goes.index.min() >= pd.Timestamp("2011-02-01") and len(goes) > 12 * 1400
    flares = read_flare_list(events / "flares.csv")  # derived from the GOES FITS
    assert len(flares) > 0 and flares.peak.min() >= pd.Timestamp("2011-02-01")
