"""Missing channel: the metrics by hand, flare times, the networks, and the end-to-end task."""

import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from sdofm import SdofmError
from sdofm.benchmarks.common import TaskInputs
from sdofm.benchmarks.missing_channel import (
    METRICS,
    TokenDecoder,
    UNet,
    flaring_times,
    image_metrics,
    run,
)
from sdofm.config import config_hash
from sdofm.dataset.loader import disk_mask, open_dataset
from sdofm.io import file_sha256
from sdofm.reports.render import render_report

MODELS = ("fm_head", "baseline", "climatology")
ROOT = Path(__file__).resolve().parents[1]

# The tiny overrides of the task's config block (tests/configs/tiny.yaml after integration).
PARAMS = {
    "seed": 0,
    "target": "211A",
    "finetune": False,
    "head_skip": True,
    "head_width": 8,
    "unet_width": 8,
    "unet_levels": 2,
    "max_epochs": 15,
    "lr": 3e-3,
    "batch_size": 8,
    "patience": 5,
    "min_flare_class": "C1.0",
    "n_samples": 3,
    "bootstrap": 50,
}


def test_image_metrics_by_hand():
    """ppe10/ppe50, Pearson r, RMSE and flux differences over the masked pixels only."""
    mask = np.array([[True, True], [True, False]])
    truth = np.array([[[10.0, 20.0], [40.0, 1e6]], [[1.0, 2.0], [3.0, 5.0]]])
    pred = np.array([[[10.5, 30.0], [40.0, 0.0]], [[1.0, 2.0], [3.0, 7.0]]])
    m = image_metrics(pred, truth, mask)
    assert m.shape == (2, len(METRICS))
    # Image 0 on the disk: truth (10, 20, 40), pred (10.5, 30, 40); relative errors 5 %, 50 %, 0.
    t, p = np.array([10.0, 20.0, 40.0]), np.array([10.5, 30.0, 40.0])
    expected = [
        2 / 3,
        2 / 3,  # 50 % is not below 50 %
        np.corrcoef(p, t)[0, 1],
        np.sqrt(np.mean((p - t) ** 2)),
        (p.sum() - t.sum()) / t.sum(),
        abs(p.sum() - t.sum()) / t.sum(),
    ]
    np.testing.assert_allclose(m[0], expected)
    # Image 1 is perfect on the disk; the off-disk pixel (5 vs 7) does not count.
    np.testing.assert_allclose(m[1], [1, 1, 1, 0, 0, 0], atol=1e-12)
    # A constant prediction has no correlation (NaN), and a zero truth pixel is a miss.
    flat = image_metrics(np.ones((1, 2, 2)), np.array([[[0.0, 1.0], [2.0, 3.0]]]), mask)
    assert np.isnan(flat[0, METRICS.index("correlation")])
    assert flat[0, METRICS.index("ppe50")] == pytest.approx(1 / 3)


def test_flaring_times():
    """A time counts when inside [start, end] of a flare of at least the minimum class."""
    flares = pd.DataFrame(
        {
            "start": pd.to_datetime(["2011-01-01T10:00", "2011-01-02T10:00", "2011-01-03T10:00"]),
            "end": pd.to_datetime(["2011-01-01T11:00", "2011-01-02T11:00", "2011-01-03T11:00"]),
            "goes_class": ["C1.0", "B9.9", ""],
            "peak_flux": [1e-6, 9.9e-7, 2e-5],  # the last has no class: its flux (M2) counts
        }
    )
    times = pd.to_datetime(
        [
            "2011-01-01T10:00",  # at the start of the C1.0
            "2011-01-01T11:00",  # at its end
            "2011-01-01T11:01",  # after it
            "2011-01-02T10:30",  # inside the B9.9 only
            "2011-01-03T10:30",  # inside the unclassified M2
        ]
    )
    got = flaring_times(times, flares, "C1.0")
    np.testing.assert_array_equal(got, [True, True, False, False, True])
    assert not flaring_times(times, flares, "X1.0").any()
    assert not flaring_times(times, flares.iloc[:0], "C1.0").any()


def test_networks_keep_the_image_size():
    """The U-Net and the token decoder both return one full-resolution image."""
    x = torch.randn(2, 5, 32, 32)
    assert UNet(5, width=4, levels=3)(x).shape == (2, 1, 32, 32)
    tokens = torch.randn(2, 24, 4, 4)
    assert TokenDecoder(24, 8, width=4)(tokens).shape == (2, 1, 32, 32)
    assert TokenDecoder(24, 8, width=4, skip_chans=5)(tokens, x).shape == (2, 1, 32, 32)


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory, task_inputs):
    """Run the task once on the shared tiny backbone."""
    out = tmp_path_factory.mktemp("missing_channel") / "out"
    result = run(task_inputs, out, dict(PARAMS))
    return {"out": out, "result": result}


def _rows(dataset):
    ds = open_dataset(dataset)
    split = ds.split.values
    return ds, {s: np.flatnonzero(ds.valid.values & (split == s)) for s in ("train", "val", "test")}


def test_metrics_json(benchmark, dataset, task_inputs):
    """The contract: splits, every model with every metric and CIs, headline, anchor, provenance."""
    metrics = json.loads((benchmark["out"] / "metrics.json").read_text())
    _, rows = _rows(dataset)
    assert metrics["task"] == "missing_channel" and metrics["target"] == "211A"
    assert "211A" not in metrics["inputs"] and len(metrics["inputs"]) == 8
    assert metrics["split"] == {s: len(r) for s, r in rows.items()}
    assert set(metrics["split_ranges"]) == {"train", "val", "test"}
    head = metrics["headline"]
    assert head["metric"] == "correlation" and head["higher_is_better"] is True
    assert set(metrics["models"]) == set(MODELS)
    for name in MODELS:
        assert list(metrics["models"][name]) == list(METRICS)
        for key, entry in metrics["models"][name].items():
            lo, hi = entry["ci95"]
            assert lo <= hi, (name, key)
        corr = metrics["models"][name]["correlation"]
        assert corr["ci95"][0] <= corr["value"] <= corr["ci95"][1]
        assert -1 <= corr["value"] <= 1
    diff = metrics["fm_head_minus_baseline"]["correlation"]
    fm, base = (metrics["models"][m]["correlation"]["value"] for m in ("fm_head", "baseline"))
    assert diff["value"] == pytest.approx(fm - base)
    assert "real SDO data" in metrics["published_anchor"]["source"]
    prov = metrics["provenance"]
    assert prov["config_hash"] == config_hash(PARAMS)
    assert prov["checkpoint_sha256"] == file_sha256(task_inputs.checkpoint)
    assert prov["embeddings_checkpoint_sha256"] == prov["checkpoint_sha256"]


def test_predictions_match_metrics(benchmark, dataset):
    """predictions.csv: one row per test time and model whose means are the reported metrics."""
    table = pd.read_csv(benchmark["out"] / "predictions.csv", parse_dates=["time"])
    assert list(table.columns) == ["time", "model", *METRICS, "flaring"]
    ds, rows = _rows(dataset)
    models = benchmark["result"]["models"]
    for name in MODELS:
        part = table[table.model == name]
        assert (part.time.to_numpy() == ds.time.values[rows["test"]]).all()
        for key in METRICS:
            assert part[key].mean() == pytest.approx(models[name][key]["value"], rel=1e-9)
    flares = benchmark["result"]["flare_times"]
    assert flares["count"] == int(table[table.model == "fm_head"].flaring.sum())
    assert (flares["models"] is None) == (flares["count"] == 0)


def test_climatology_recomputed_from_the_store(benchmark, dataset):
    """The climatology row, recomputed from the physical images and the disk mask by hand."""
    ds, rows = _rows(dataset)
    images = ds.images.sel(channel="211A").values.astype(np.float64)
    clim = images[rows["train"]].mean(axis=0)
    mask = disk_mask(images.shape[-1], ds.attrs.get("rsun_px"))
    truth = images[rows["test"]]
    r = [np.corrcoef(clim[mask], t[mask])[0, 1] for t in truth]
    rmse = [np.sqrt(np.mean((clim[mask] - t[mask]) ** 2)) for t in truth]
    table = pd.read_csv(benchmark["out"] / "predictions.csv")
    part = table[table.model == "climatology"]
    np.testing.assert_allclose(part.correlation, r, rtol=1e-6)
    np.testing.assert_allclose(part.rmse, rmse, rtol=1e-6)
    # On the synthetic Sun the images carry the target channel's structure: the learned models
    # must reconstruct it better than the mean image, even after a few epochs.
    models = benchmark["result"]["models"]
    best = max(
        models["baseline"]["correlation"]["value"], models["fm_head"]["correlation"]["value"]
    )
    assert best > models["climatology"]["correlation"]["value"]


def test_samples_file(benchmark, dataset):
    """samples.nc: test images in DN/s, each model's prediction, and pixel histograms."""
    ds, rows = _rows(dataset)
    with xr.open_dataset(benchmark["out"] / "samples.nc") as s:
        s = s.load()
    assert list(s.model.values) == list(MODELS)
    assert 1 <= s.sizes["sample"] <= PARAMS["n_samples"]
    times = ds.time.values[rows["test"]]
    k = np.searchsorted(times, s.time.values)
    np.testing.assert_array_equal(times[k], s.time.values)
    truth = ds.images.sel(channel="211A").values[rows["test"]][k]
    np.testing.assert_allclose(s.truth.values, truth, rtol=1e-6)
    clim = ds.images.sel(channel="211A").values[rows["train"]].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(s.prediction.sel(model="climatology").values[0], clim, rtol=1e-5)
    mask = disk_mask(truth.shape[-1], s.attrs["rsun_px"])
    n_disk = int(mask.sum()) * len(rows["test"])
    assert (s.hist.sum(dim=("true_bin", "pred_bin")).values == n_disk).all()
    assert s.attrs["channel"] == "211A" and s.attrs["units"] == "DN/s"


@pytest.mark.parametrize("target", ["Bz", "999A"])
def test_bad_target_is_a_clear_error(tmp_path, task_inputs, target):
    """A target that is not an AIA channel of the store stops before anything is written."""
    with pytest.raises(SdofmError, match="not an AIA channel"):
        run(task_inputs, tmp_path / "out", dict(PARAMS, target=target))
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_missing_flare_list_is_a_clear_error(tmp_path, task_inputs):
    """An event folder without flares.csv stops the task before training, nothing written."""
    events = tmp_path / "events"
    events.mkdir()
    inputs = TaskInputs(task_inputs.dataset, task_inputs.embeddings, task_inputs.checkpoint, events)
    with pytest.raises(SdofmError, match="no flares.csv"):
        run(inputs, tmp_path / "out", dict(PARAMS))
    assert not (tmp_path / "out").exists()


def test_finetune_and_flare_times(tmp_path, task_inputs, dataset):
    """Fine-tuning changes the FM head; a listed C flare over the test period is counted."""
    ds, rows = _rows(dataset)
    test_times = ds.time.values[rows["test"]]
    events = tmp_path / "events"
    shutil.copytree(task_inputs.events, events)
    flares = pd.DataFrame(
        {
            "start": [pd.Timestamp(test_times[0]) - pd.Timedelta("1h")],
            "peak": [pd.Timestamp(test_times[0])],
            "end": [pd.Timestamp(test_times[2]) + pd.Timedelta("1h")],  # three test frames
            "goes_class": ["C5.0"],
            "peak_flux": [5e-6],
            "lat": [np.nan],
            "lon": [np.nan],
            "noaa_ar": [0],
        }
    )
    flares.to_csv(events / "flares.csv", index=False)
    inputs = TaskInputs(
        task_inputs.dataset, task_inputs.embeddings, task_inputs.checkpoint, events, None
    )
    params = dict(PARAMS, finetune=True, max_epochs=1, bootstrap=10)
    result = run(inputs, tmp_path / "out", params)
    assert result["flare_times"]["count"] == 3
    fl = result["flare_times"]["models"]
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    part = table[(table.model == "baseline") & table.flaring]
    assert len(part) == 3
    assert fl["baseline"]["correlation"]["value"] == pytest.approx(part.correlation.mean())
    frozen = run(inputs, tmp_path / "frozen", dict(params, finetune=False))
    assert (
        result["models"]["fm_head"]["rmse"]["value"] != frozen["models"]["fm_head"]["rmse"]["value"]
    )
    # The baseline does not depend on the backbone: identical either way.
    assert result["models"]["baseline"] == frozen["models"]["baseline"]


def test_report_renders(benchmark, tmp_path):
    """The notebook runs on the tiny outputs without an error and gives an HTML page."""
    executed, html = tmp_path / "report.ipynb", tmp_path / "report.html"
    render_report(
        ROOT / "notebooks" / "missing_channel.ipynb",
        executed,
        html,
        {
            "metrics_path": str(benchmark["out"] / "metrics.json"),
            "predictions_path": str(benchmark["out"] / "predictions.csv"),
        },
    )
    nb = nbformat.read(executed, as_version=4)
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
    assert html.exists() and html.stat().st_size > 10_000
