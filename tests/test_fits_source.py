"""Level-1 FITS as a workflow source: a month ingested, then the same build; HMI as Blos."""

from __future__ import annotations

import copy
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
import zarr

from sdofm import SdofmError
from sdofm.dataset.build import build_partition, merge_partitions
from sdofm.dataset.loader import SDOImages, open_dataset
from sdofm.sources.fitsfolder import (
    MIRROR,
    MIRROR_TABLE,
    fits_files,
    ingest_period,
    period_window,
    resolve_fits_sources,
)
from sdofm.sources.sdoml import AIA_CHANNELS, frame_times
from tests.conftest import ROOT, TINY, snakemake_command

T = pd.Timestamp


def _params(tiny_config) -> dict:
    """The tiny run cut to the FITS window (two 12-hourly steps), HMI line-of-sight only."""
    data = copy.deepcopy(tiny_config["data"])
    data.update(start="2011-02-01", end="2011-02-02", hmi_components=["Blos"])
    splits = {"val": [], "test": [["2011-02-01T12:00", "2011-02-02"]], "buffer_days": 0}
    return {"data": data, "splits": splits}


def _ingest_mirror(out, mirror, data, period, **kwargs) -> dict:
    """`ingest_period` on the synthetic mirror's level-1 files."""
    aia, hmi = (fits_files(mirror / MIRROR[k]) for k in ("aia", "hmi"))
    return ingest_period(out, data=data, period=period, aia=aia, hmi=hmi, **kwargs)


@pytest.fixture(scope="module")
def month(tmp_path_factory, synthetic_mirror, tiny_config):
    params = _params(tiny_config)
    out = tmp_path_factory.mktemp("fits") / "2011-02"
    table = synthetic_mirror / MIRROR_TABLE
    summary = _ingest_mirror(
        out, synthetic_mirror, params["data"], "2011-02", correction_table=table
    )
    return out, summary, params


def test_period_window_is_the_month_in_range_plus_tolerance():
    data = {"start": "2011-01-15", "end": "2011-03-01", "tolerance_minutes": 6}
    assert period_window(data, "2011-01") == (T("2011-01-14T23:54"), T("2011-02-01T00:06"))
    assert period_window(data, "2011-02") == (T("2011-01-31T23:54"), T("2011-03-01T00:06"))
    with pytest.raises(SdofmError, match="outside the data range"):
        period_window(data, "2011-04")


def test_month_of_fits_becomes_sdoml_stores(month, synthetic_mirror):
    out, summary, _ = month
    assert summary["aia"] == dict.fromkeys(AIA_CHANNELS, 2) and summary["hmi"] == {"Blos": 2}
    aia = zarr.open_group(out / "aia.zarr", mode="r")["2011"]
    ref = zarr.open_group(synthetic_mirror / "sdomlv2_small.zarr", mode="r")["2011"]
    times = frame_times(aia["171A"])
    assert times.normalize().unique().tolist() == [T("2011-02-01")]
    k = ref["171A"].attrs["T_OBS"].index(aia["171A"].attrs["T_OBS"][0])
    # Calibrated like the store: DN/s corrected with the mirror's degradation table.
    assert aia["171A"].attrs["DEG_COR"][0] == pytest.approx(ref["171A"].attrs["DEG_COR"][k], 1e-5)
    hmi = zarr.open_group(out / "hmi.zarr", mode="r")["2011"]
    assert list(hmi.array_keys()) == ["Blos"] and hmi["Blos"].shape == (2, 32, 32)


def test_build_reads_the_months_frames_and_blos_reaches_the_loader(month, pulled, tmp_path):
    frames, _, params = month
    part = tmp_path / "2011-02.zarr"
    summary = build_partition(pulled, part, params, "2011-02", frames_dir=frames)
    assert summary == {"period": "2011-02", "steps": 2, "valid": 2}
    store = tmp_path / "dataset.zarr"
    merge_partitions([part], store, params)
    ds = open_dataset(store)
    assert list(ds.channel.values) == [*AIA_CHANNELS, "Blos"]
    assert str(ds.transform.sel(channel="Blos").values) == "linear"  # signed field, no log
    blos = zarr.open_group(frames / "hmi.zarr", mode="r")["2011"]["Blos"][:]
    np.testing.assert_allclose(ds.images.sel(channel="Blos").values, blos)
    assert np.isfinite(ds.eve.values).any()  # EVE from the pull, as for SDOML stores
    train = SDOImages.split(store, "train")
    x, row = train[0]
    assert tuple(x.shape) == (len(AIA_CHANNELS) + 1, 32, 32) and row == 0
    mean, std = (float(ds[v].sel(channel="Blos").values) for v in ("norm_mean", "norm_std"))
    z = (blos[0] - mean) / std
    np.testing.assert_allclose(x[-1].numpy(), z, rtol=1e-4, atol=1e-4)


def test_a_month_without_files_is_all_gaps(synthetic_mirror, pulled, tiny_config, tmp_path):
    params = _params(tiny_config)
    params["data"].update(start="2011-02-01", end="2011-03-02")
    out = tmp_path / "2011-03"
    summary = _ingest_mirror(out, synthetic_mirror, params["data"], "2011-03")
    assert summary["aia"] == {} and summary["hmi"] == {}
    part = tmp_path / "2011-03.zarr"
    assert build_partition(pulled, part, params, "2011-03", frames_dir=out)["valid"] == 0


@pytest.mark.parametrize(
    ("fits", "hmi", "synthetic", "match"),
    [
        ({"aia": "x/*.fits", "hmi": "y/*.fits"}, ["Bz"], False, r"line-of-sight .* not \['Bz'\]"),
        ({"aia": "x/*.fits"}, ["Blos"], False, "no HMI files"),
        ({"hmi": "y/*.fits"}, ["Blos"], False, "need AIA files"),
        ({}, ["Bx", "By", "Bz"], True, "use \\[Blos\\]"),
    ],
)
def test_fits_config_errors(fits, hmi, synthetic, match):
    with pytest.raises(SdofmError, match=match):
        resolve_fits_sources(fits, {"hmi_components": hmi}, synthetic=synthetic)


@pytest.mark.workflow
def test_workflow_builds_from_fits(tmp_path):
    """`snakemake results/data/dataset.zarr` with sources.fits: ingest_fits per month, then the
    same partitions and merge; the QC of the ingest lies beside its stores."""
    config = yaml.safe_load(TINY.read_text())
    config["sources"] = {"fits": {}}
    config["data"].update(start="2011-02-01", end="2011-02-02", hmi_components=["Blos"])
    config["splits"] = {"val": [], "test": [["2011-02-01T12:00", "2011-02-02"]], "buffer_days": 0}
    path = tmp_path / "fits.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd, env = snakemake_command(
        tmp_path,
        "-s",
        str(ROOT / "workflow" / "Snakefile"),
        "--configfile",
        str(path),
        "--cores",
        "2",
        "results/data/dataset.zarr",
    )
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    results = tmp_path / "results"
    assert (results / "data" / "fits" / "2011-02" / "aia.zarr.qc.csv").exists()
    assert (results / "benchmarks" / "ingest_fits" / "2011-02.tsv").exists()
    pulled = zarr.open_group(results / "data" / "sdoml" / "2011-02" / "eve.zarr", mode="r")
    assert "MEGS-A" in pulled and not (results / "data" / "sdoml" / "2011-02" / "aia.zarr").exists()
    ds = open_dataset(results / "data" / "dataset.zarr")
    assert ds.channel.values[-1] == "Blos" and int(ds.valid.sum()) == 2
