"""Flare forecasting: skill scores by hand, folds, labels, saliency, the benchmark, its report."""

import copy
import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from sklearn.metrics import roc_auc_score
from torch import nn

from sdofm import SdofmError
from sdofm.benchmarks.common import TaskInputs
from sdofm.benchmarks.flare_forecast import (
    MODELS,
    FMClassifier,
    best_threshold,
    brier,
    flare_in_window,
    hss2,
    integrated_gradients,
    roc_auc,
    run,
    time_folds,
    tss,
)
from sdofm.config import config_hash
from sdofm.dataset.loader import SDOImages, open_dataset
from sdofm.io import file_sha256
from sdofm.reports.render import render_report
from sdofm.sources.events import flare_labels, read_flare_list
from sdofm.training.pretrain import load_backbone

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "flare_forecast.ipynb"
# The tiny-fixture settings (tests/configs/tiny.yaml gets the same block at integration). The
# tiny Sun has few M flares in three months, so the label here is >=C3.
PARAMS = {
    "seed": 0,
    "min_class": "C3.0",
    "horizon_hours": 24,
    "folds": 4,
    "buffer_days": 2,
    "early_stop_fraction": 0.2,
    "head": "linear",
    "max_epochs": 40,
    "finetune": False,
    "finetune_epochs": 1,
    "baseline_channels": ["Bz"],
    "baseline_width": 8,
    "baseline_epochs": 3,
    "baseline_patience": 5,
    "limb_deg": 70,
    "saliency_events": 2,
    "bootstrap": 50,
}


# --------------------------------------------------------------------------------------------
# Scores by hand


def test_tss_hss2_by_hand():
    """TP=3, FN=1, FP=2, TN=4: TSS = 3/4 − 2/6; HSS2 = 2(12 − 2) / (4·5 + 5·6)."""
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)
    yes = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0], bool)
    assert tss(y, yes) == pytest.approx(0.75 - 2 / 6)
    assert hss2(y, yes) == pytest.approx(2 * (3 * 4 - 1 * 2) / (4 * 5 + 5 * 6))
    assert tss(y, y) == 1.0 and hss2(y, y) == 1.0
    assert tss(y, ~y) == -1.0
    never = np.zeros_like(y)
    assert tss(y, never) == 0.0 and hss2(y, never) == 0.0  # climatology's forecast
    assert np.isnan(tss(np.zeros(5, bool), np.ones(5, bool)))  # no positives: undefined
    assert np.isnan(tss(np.ones(5, bool), np.ones(5, bool)))  # no negatives: undefined


def test_roc_auc_and_brier_by_hand():
    """AUC matches scikit-learn (ties included); Brier is the mean squared error."""
    rng = np.random.default_rng(0)
    y = rng.uniform(size=200) < 0.2
    p = np.round(rng.uniform(size=200) * 0.5 + 0.3 * y, 1)  # many ties
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert roc_auc(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.2, 0.3, 0.9])) == 1.0
    assert np.isnan(roc_auc(np.zeros(4, bool), np.arange(4.0)))
    assert brier(np.array([1, 0]), np.array([0.5, 0.25])) == pytest.approx((0.25 + 0.0625) / 2)


def test_best_threshold_maximises_tss():
    """The threshold between the two classes where they separate; 'never' for a constant."""
    y = np.array([0, 0, 0, 1, 0, 1, 1], bool)
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    th = best_threshold(y, p)
    assert th == pytest.approx(0.35)  # TSS 1 − 1/4 = 0.75 (vs 0.55 at 0.55)
    assert tss(y, p >= th) == pytest.approx(0.75)
    grid = np.linspace(0, 1, 1001)
    assert max(tss(y, p >= t) for t in grid) == pytest.approx(0.75)
    const = np.full(7, 0.3)
    assert best_threshold(y, const) > 0.3  # ties go to the fewest alarms: never a flare
    assert np.isnan(best_threshold(np.zeros(7, bool), p))


# --------------------------------------------------------------------------------------------
# Labels, folds, saliency


def test_flare_in_window_picks_largest_qualifying_flare():
    """Largest flare >= min_class peaking in (t, t+h], consistent with flare_labels."""
    flares = pd.DataFrame(
        {
            "peak": pd.to_datetime(["2011-01-01T06", "2011-01-01T08", "2011-01-02T12"]),
            "goes_class": ["M2.0", "X1.0", "C9.0"],
            "peak_flux": [2e-5, 1e-4, 9e-6],
            "lat": [10.0, -20.0, 5.0],
            "lon": [-80.0, 30.0, 0.0],
        }
    )
    times = pd.to_datetime(["2011-01-01T00", "2011-01-01T07", "2011-01-01T12", "2011-01-02T00"])
    h = pd.Timedelta(hours=12)
    got = flare_in_window(flares, times, h, "M1.0")
    assert list(got.goes_class) == ["X1.0", "X1.0", "", ""]
    assert list(got.lon[:2]) == [30.0, 30.0] and got.lon[2:].isna().all()
    labels = flare_labels(flares, times, horizon=h, min_class="M1.0")
    np.testing.assert_array_equal(labels, got.goes_class != "")
    only_m = flare_in_window(flares.iloc[[0, 2]], times, h, "M1.0")
    assert list(only_m.goes_class) == ["M2.0", "", "", ""]  # C9 does not qualify


def test_time_folds_partition_with_buffers():
    """Every row tested once; train and early-stopping rows kept away from the test segment."""
    times = pd.date_range("2011-01-01", periods=240, freq="12h").to_numpy()
    rows = np.setdiff1d(np.arange(240), [5, 6, 100, 101, 102])  # a few invalid steps
    buffer = pd.Timedelta(days=2)
    folds = time_folds(times, rows, folds=4, buffer=buffer, early_stop_fraction=0.25)
    assert len(folds) == 4
    tested = np.concatenate([f["test"] for f in folds])
    np.testing.assert_array_equal(np.sort(tested), rows)
    for f in folds:
        t = pd.DatetimeIndex(times)
        test, train, val = t[f["test"]], t[f["train"]], t[f["val"]]
        assert np.all(np.diff(f["test"]) > 0)
        assert set(f["test"]) == set(rows[(t[rows] >= test[0]) & (t[rows] <= test[-1])])
        for other in (train, val):
            gap = np.minimum(np.abs(other - test[0]), np.abs(other - test[-1]))
            assert (gap > buffer).all() and not ((other >= test[0]) & (other <= test[-1])).any()
        assert train.max() < val.min() - buffer  # early stopping is the last training time
        assert not set(f["train"]) & set(f["val"])
        n_cand = len(f["train"]) + len(f["val"])
        assert len(f["val"]) == pytest.approx(0.25 * n_cand, abs=6)
    with pytest.raises(SdofmError, match="fold"):
        time_folds(times, rows[:20], folds=4, buffer=pd.Timedelta(days=3), early_stop_fraction=0.2)


def test_integrated_gradients_completeness():
    """Attributions sum to f(x) − f(0) for a non-linear function of an image."""
    torch.manual_seed(0)
    f = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))
    x = torch.randn(2, 8, 8)

    def g(b):
        return f(b)[:, 0]

    attr = integrated_gradients(g, x, steps=64)
    assert attr.shape == x.shape
    with torch.no_grad():
        delta = float(g(x[None])[0] - g(torch.zeros(1, 2, 8, 8))[0])
    assert float(attr.sum()) == pytest.approx(delta, rel=0.02, abs=1e-3)


# --------------------------------------------------------------------------------------------
# The benchmark on the tiny Sun


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory, task_inputs):
    out = tmp_path_factory.mktemp("flare_forecast") / "out"
    params = copy.deepcopy(PARAMS)
    result = run(task_inputs, out, params)
    return {"out": out, "params": params, "result": result}


def _labels(task_inputs, min_class="C3.0"):
    ds = open_dataset(task_inputs.dataset)
    flares = read_flare_list(task_inputs.events / "flares.csv")
    return ds, flares, flare_labels(flares, ds.time.values, horizon="24h", min_class=min_class)


def test_metrics_contract(benchmark, task_inputs):
    """metrics.json: every model with every score and CI, folds, headline, anchor, provenance."""
    metrics = json.loads((benchmark["out"] / "metrics.json").read_text())
    assert metrics["task"] == "flare_forecast" and "true skill statistic" in metrics["metric"]
    assert metrics["headline"] == {
        "metric": "tss",
        "label": metrics["headline"]["label"],
        "higher_is_better": True,
    }
    for name in MODELS:
        for key in ("tss", "hss2", "roc_auc", "brier", "recall_near_limb", "recall_central"):
            entry = metrics["models"][name][key]
            assert set(entry) == {"value", "ci95"}, (name, key)
        for key in ("tss", "hss2", "roc_auc", "brier"):
            entry = metrics["models"][name][f"{key}_fold_mean"]
            assert {"value", "ci95", "sd", "n_folds"} <= set(entry), (name, key)
        tss_ = metrics["models"][name]["tss"]
        assert tss_["ci95"][0] <= tss_["value"] <= tss_["ci95"][1]
        assert metrics["models"][name]["tss_fold_mean"]["n_folds"] <= 4
    clim = metrics["models"]["climatology"]
    assert clim["tss"] == {"value": 0.0, "ci95": [0.0, 0.0]}
    assert clim["recall"]["value"] == 0.0
    assert clim["roc_auc_fold_mean"]["value"] == 0.5  # a constant within each fold
    diff = metrics["models"]["fm_head_minus_baseline_tss"]
    fm, base = metrics["models"]["fm_head"]["tss"], metrics["models"]["baseline"]["tss"]
    assert diff["value"] == pytest.approx(fm["value"] - base["value"])
    split = metrics["split"]
    assert split["store_split_used"] is False and "NOT" in split["scheme"]
    assert split["test"] == metrics["label"]["usable_time_steps"]
    assert split["train"] == sum(f["n_train"] for f in metrics["folds"])
    assert len(metrics["folds"]) == 4 and len(metrics["split_ranges"]) == 4
    anchor = metrics["published_anchor"]
    assert anchor["tss"] == 0.53 and anchor["hss2"] == 0.37 and "real SDO" in anchor["source"]
    prov = metrics["provenance"]
    assert prov["config_hash"] == config_hash(benchmark["params"])
    assert prov["checkpoint_sha256"] == file_sha256(task_inputs.checkpoint)
    assert prov["embeddings_checkpoint_sha256"] == prov["checkpoint_sha256"]


def test_predictions_match_labels_and_metrics(benchmark, task_inputs):
    """Each usable step once, with its label and flare; scores recomputed from the CSV agree."""
    table = pd.read_csv(benchmark["out"] / "predictions.csv", parse_dates=["time"])
    assert list(table.columns[:4]) == ["time", "fold", "label", "flare_lon"]
    assert set(MODELS) <= set(table.columns)
    ds, flares, labels = _labels(task_inputs)
    index = pd.DatetimeIndex(ds.time.values)
    rows = index.get_indexer(table.time)
    assert (rows >= 0).all() and len(set(rows)) == len(rows)
    np.testing.assert_array_equal(table.label.astype(bool), labels[rows])
    assert table.flare_lon[table.label == 1].notna().all()
    assert table.flare_lon[table.label == 0].isna().all()
    metrics = benchmark["result"]
    y = table.label.astype(bool).to_numpy()
    for name in MODELS:
        th = table.fold.map({f["fold"]: f["models"][name]["threshold"] for f in metrics["folds"]})
        yes = table[name].to_numpy() >= th.to_numpy(float)
        assert tss(y, yes) == pytest.approx(metrics["models"][name]["tss"]["value"])
        assert hss2(y, yes) == pytest.approx(metrics["models"][name]["hss2"]["value"])
        p = table[name].to_numpy()
        assert roc_auc(y, p) == pytest.approx(metrics["models"][name]["roc_auc"]["value"])
        assert brier(y, p) == pytest.approx(metrics["models"][name]["brier"]["value"])
        near = y & (table.flare_lon.abs() > 70).to_numpy()
        if near.any():
            rec = yes[near].mean()
            assert rec == pytest.approx(metrics["models"][name]["recall_near_limb"]["value"])
        for f in metrics["folds"]:
            sel = table.fold == f["fold"]
            if 0 < y[sel].sum() < sel.sum():
                assert tss(y[sel], yes[sel]) == pytest.approx(f["models"][name]["tss"])
    # Climatology forecasts each fold's training base rate and never a flare.
    for f in metrics["folds"]:
        clim = table.climatology[table.fold == f["fold"]]
        assert clim.nunique() == 1
        assert clim.iloc[0] == pytest.approx(f["n_train_positive"] / f["n_train"])
    assert table.fm_head.min() >= 0 and table.fm_head.max() <= 1


def test_saliency_samples_and_embedding_path(benchmark, task_inputs):
    """samples.nc holds flaring test events with their Bz; the saliency path is the embedding."""
    samples = xr.load_dataset(benchmark["out"] / "samples.nc")
    assert samples.sizes["event"] == PARAMS["saliency_events"]
    ds, _, labels = _labels(task_inputs)
    table = pd.read_csv(benchmark["out"] / "predictions.csv", parse_dates=["time"])
    for i in range(samples.sizes["event"]):
        ev = samples.isel(event=i)
        row = int(pd.DatetimeIndex(ds.time.values).get_loc(pd.Timestamp(ev.time.values)))
        assert labels[row]
        bz = ds.images.sel(channel="Bz").isel(time=row).values
        np.testing.assert_allclose(ev.magnetogram.values, bz)
        assert np.abs(ev.saliency.values).sum() > 0
        p = table.fm_head[table.time == pd.Timestamp(ev.time.values)].iloc[0]
        assert float(ev.p_fm_head) == pytest.approx(p)
    assert samples.attrs["arcsec_per_px"] > 0
    # FMClassifier's gradient path gives the stored embeddings.
    net, _ = load_backbone(task_inputs.checkpoint)
    emb = xr.open_zarr(task_inputs.embeddings).embedding.values
    rows = np.flatnonzero(ds.valid.values)[:3]
    x = torch.stack([SDOImages(task_inputs.dataset, rows)[i][0] for i in range(3)])
    clf = FMClassifier(net, nn.Identity(), torch.zeros(emb.shape[1]), torch.ones(emb.shape[1]))
    with torch.no_grad():
        np.testing.assert_allclose(clf.embed(x).numpy(), emb[rows], rtol=1e-4, atol=1e-4)


def test_fold_without_flares_reports_null(tmp_path, task_inputs):
    """Flares only in January: later folds have none, so their TSS is null, not a crash."""
    flares = pd.read_csv(task_inputs.events / "flares.csv")
    events = tmp_path / "events"
    events.mkdir()
    flares[flares.peak < "2011-01-20"].to_csv(events / "flares.csv", index=False)
    inputs = TaskInputs(task_inputs.dataset, task_inputs.embeddings, task_inputs.checkpoint, events)
    params = dict(PARAMS, max_epochs=3, baseline_epochs=1, bootstrap=10, saliency_events=1)
    result = run(inputs, tmp_path / "out", params)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    last = metrics["folds"][-1]
    assert last["n_test_positive"] == 0 and "no positive test samples" in last["note"]
    assert last["models"]["fm_head"]["tss"] is None
    assert last["models"]["fm_head"]["brier"] is not None
    assert metrics["models"]["fm_head"]["tss_fold_mean"]["n_folds"] < 4
    first = metrics["folds"][0]
    assert first["n_train_positive"] == 0 and "no positive training" in first["note"]
    assert result["label"]["positives"] > 0


def test_finetune_changes_the_backbone_path(tmp_path, task_inputs, benchmark):
    """finetune: true trains the backbone with the head: other FM probabilities, same contract."""
    params = dict(PARAMS, finetune=True, finetune_epochs=1, saliency_events=1, bootstrap=10)
    result = run(task_inputs, tmp_path / "out", params)
    assert result["models"]["fm_head"]["tss"]["value"] is not None
    tuned = pd.read_csv(tmp_path / "out" / "predictions.csv")
    frozen = pd.read_csv(benchmark["out"] / "predictions.csv")
    np.testing.assert_allclose(tuned.baseline, frozen.baseline)  # same seeds, same baseline
    assert not np.allclose(tuned.fm_head, frozen.fm_head)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"min_class": "X9.0"}, "no flare of class X9.0 .* from 2011-01-01"),
        ({"min_class": "Q1"}, "GOES class"),
        ({"baseline_channels": ["Bq"]}, "baseline channels"),
        ({"buffer_days": 60}, "too few for 4 folds"),
    ],
)
def test_bad_input_stops_without_metrics(tmp_path, task_inputs, change, match):
    """Bad settings raise a clear SdofmError and leave no metrics.json."""
    with pytest.raises(SdofmError, match=match):
        run(task_inputs, tmp_path / "out", dict(PARAMS, **change))
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_no_event_folder(tmp_path, task_inputs):
    inputs = TaskInputs(task_inputs.dataset, task_inputs.embeddings, task_inputs.checkpoint)
    with pytest.raises(SdofmError, match="flares.csv"):
        run(inputs, tmp_path / "out", dict(PARAMS))
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_report_renders(benchmark, tmp_path):
    """The notebook runs on the tiny results without an error and gives an HTML page."""
    out = benchmark["out"]
    executed, html = tmp_path / "report.ipynb", tmp_path / "report.html"
    render_report(
        NOTEBOOK,
        executed,
        html,
        {
            "metrics_path": str(out / "metrics.json"),
            "predictions_path": str(out / "predictions.csv"),
        },
    )
    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error"
    images = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert (
        images == 7
    )  # one per figure: folds, confusion, ROC+reliability, time, limb, map, saliency
    assert html.exists() and "Flare forecasting" in html.read_text()
