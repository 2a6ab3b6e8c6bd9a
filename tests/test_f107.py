"""F10.7 task: metrics, ridge, the daily table, the end-to-end benchmark and its report."""

import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from sdofm import SdofmError
from sdofm.benchmarks.common import TaskInputs
from sdofm.benchmarks.f107 import daily_table, mape, pearson_r, ridge_fit, rmse, run
from sdofm.config import config_hash
from sdofm.io import file_sha256
from sdofm.reports.render import render_report
from sdofm.sources.events import read_f107

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "f107.ipynb"
MODELS = ("fm_head", "baseline_ridge", "persistence", "climatology")
PARAMS = {
    "seed": 0,
    "target": "observed_flux",
    "head": "ridge",
    "hidden": 32,
    "max_epochs": 30,
    "finetune": False,
    "finetune_epochs": 1,
    "finetune_lr": 1e-4,
    "hmi_field": "b",
    "bootstrap": 50,
}


def test_metrics_by_hand():
    truth = np.array([100.0, 80.0, 120.0, 90.0])
    pred = np.array([110.0, 80.0, 114.0, 99.0])
    # errors 10, 0, -6, 9: squares 100, 0, 36, 81
    assert rmse(pred, truth) == pytest.approx(np.sqrt(217 / 4))
    assert mape(pred, truth) == pytest.approx(100 * (0.1 + 0 + 0.05 + 0.1) / 4)
    assert pearson_r(pred, truth) == pytest.approx(np.corrcoef(pred, truth)[0, 1])
    assert pearson_r(2 * truth + 1, truth) == pytest.approx(1.0)
    assert np.isnan(pearson_r(np.full(4, 97.3), truth))  # climatology has no correlation


def test_ridge_matches_normal_equations():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 7.0 + rng.normal(0, 0.1, 40)
    (w0, b0), (w1, b1) = ridge_fit(x, y, np.array([0.0, 0.3]))
    xc, yc = x - x.mean(0), y - y.mean()
    np.testing.assert_allclose(w0, np.linalg.lstsq(xc, yc, rcond=None)[0], atol=1e-10)
    expected = np.linalg.solve(xc.T @ xc + 40 * 0.3 * np.eye(5), xc.T @ yc)
    np.testing.assert_allclose(w1, expected, atol=1e-10)
    assert b1 == pytest.approx(y.mean() - x.mean(0) @ w1)
    assert np.linalg.norm(w1) < np.linalg.norm(w0)


def test_daily_table_splits_and_averaging():
    times = pd.date_range("2011-01-01", periods=10, freq="12h").values  # 5 days, 2 steps each
    split = np.array(["train"] * 3 + ["val"] * 3 + ["buffer"] * 2 + ["test"] * 2)
    usable = np.ones(10, bool)
    usable[[8, 9]] = False  # day 5 has no usable step
    usable[4] = False  # day 3 keeps one step
    series = pd.Series(
        [70.0, np.nan, 90.0, 95.0, 99.0, 60.0],
        index=pd.date_range("2010-12-31T20:00", periods=6, freq="D"),
    )
    days, w = daily_table(times, split, usable, series)
    assert list(days.split) == ["train", "mixed", "val", "buffer", "test"]
    assert list(days.n_steps) == [2, 2, 1, 2, 0]
    np.testing.assert_array_equal(days.truth, [np.nan, 90.0, 95.0, 99.0, 60.0])
    np.testing.assert_array_equal(days.previous, [70.0, np.nan, 90.0, 95.0, 99.0])
    x = np.arange(10.0)
    np.testing.assert_allclose(w @ x, [0.5, 2.5, 5.0, 6.5, 0.0])


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory, task_inputs):
    out = tmp_path_factory.mktemp("f107") / "out"
    result = run(task_inputs, out, dict(PARAMS))
    return {"out": out, "result": result}


def test_metrics_contract(benchmark, task_inputs):
    metrics = json.loads((benchmark["out"] / "metrics.json").read_text())
    assert metrics["task"] == "f107" and "RMSE" in metrics["metric"]
    assert metrics["headline"] == {
        "metric": "rmse",
        "label": "RMSE (sfu)",
        "higher_is_better": False,
    }
    assert metrics["published_anchor"] is None
    assert set(metrics["split"]) == {"train", "val", "test"} and min(metrics["split"].values()) > 1
    for name, model in metrics["models"].items():
        assert "rmse" in model, name
    for name in MODELS:
        for key in ("rmse", "mape", "pearson_r"):
            entry = metrics["models"][name][key]
            if name == "climatology" and key == "pearson_r":
                assert entry["value"] is None  # constant prediction: undefined, stored as null
                continue
            lo, hi = entry["ci95"]
            assert lo <= entry["value"] <= hi, (name, key)
    diff = metrics["models"]["fm_head_minus_baseline"]["rmse"]
    rm = {m: metrics["models"][m]["rmse"]["value"] for m in MODELS}
    assert diff["value"] == pytest.approx(rm["fm_head"] - rm["baseline_ridge"])
    prov = metrics["provenance"]
    assert prov["config_hash"] == config_hash(PARAMS)
    assert prov["checkpoint_sha256"] == file_sha256(task_inputs.checkpoint)
    assert prov["embeddings_checkpoint_sha256"] == prov["checkpoint_sha256"]
    assert (benchmark["out"] / "samples.nc").exists()


def test_predictions_match_metrics(benchmark, task_inputs):
    table = pd.read_csv(benchmark["out"] / "predictions.csv", parse_dates=["date"])
    assert list(table.columns) == ["date", "split", "truth", *MODELS]
    assert table.date.is_monotonic_increasing and table.date.dt.hour.eq(0).all()
    assert {"train", "val", "test"} <= set(table.split)
    metrics = benchmark["result"]
    scored = table[(table.split == "test") & table[["truth", *MODELS]].notna().all(axis=1)]
    assert len(scored) == metrics["split"]["test"]
    for m in MODELS:
        assert rmse(scored[m].to_numpy(), scored.truth.to_numpy()) == pytest.approx(
            metrics["models"][m]["rmse"]["value"], rel=1e-9
        )
        assert mape(scored[m].to_numpy(), scored.truth.to_numpy()) == pytest.approx(
            metrics["models"][m]["mape"]["value"], rel=1e-9
        )
    # Truth is the day's observed flux; persistence the day before's; climatology the train mean.
    f107 = read_f107(task_inputs.event_file("f107.csv"))["observed_flux"]
    f107.index = f107.index.floor("D")
    np.testing.assert_allclose(table.truth, f107.reindex(table.date).to_numpy(), equal_nan=True)
    prev = f107.reindex(table.date - pd.Timedelta(days=1)).to_numpy()
    np.testing.assert_allclose(table.persistence, prev, equal_nan=True)
    train = table[(table.split == "train") & table.fm_head.notna() & table.truth.notna()]
    assert len(train) == metrics["split"]["train"]
    np.testing.assert_allclose(table.climatology, train.truth.mean())


def test_image_features_beat_climatology(benchmark):
    """The synthetic F10.7 is driven by the unsigned flux, so the feature ridge must track it."""
    models = benchmark["result"]["models"]
    assert models["baseline_ridge"]["rmse"]["value"] < models["climatology"]["rmse"]["value"]
    assert models["baseline_ridge"]["pearson_r"]["value"] > 0.5


@pytest.mark.parametrize("change", [{"head": "mlp"}, {"finetune": True, "target": "adjusted_flux"}])
def test_other_heads_run(tmp_path, task_inputs, change):
    result = run(task_inputs, tmp_path, {**PARAMS, **change})
    assert result["fm_head"]["finetune"] == bool(change.get("finetune"))
    if change.get("finetune"):  # starts from the head fitted on frozen embeddings
        assert {"alpha", "frozen_val_rmse", "finetuned_val_rmse"} <= set(result["fm_head"])
    assert result["target"] == change.get("target", "observed_flux")
    assert np.isfinite(result["models"]["fm_head"]["rmse"]["value"])
    table = pd.read_csv(tmp_path / "predictions.csv")
    assert table.loc[table.split == "test", "fm_head"].notna().all()


def test_bad_inputs_raise_without_metrics(tmp_path, task_inputs):
    with pytest.raises(SdofmError, match="target must be one of"):
        run(task_inputs, tmp_path / "a", {**PARAMS, "target": "flux"})
    assert not (tmp_path / "a" / "metrics.json").exists()
    empty = tmp_path / "events"
    empty.mkdir()
    shutil.copy(task_inputs.events / "flares.csv", empty / "flares.csv")
    no_f107 = TaskInputs(
        task_inputs.dataset, task_inputs.embeddings, task_inputs.checkpoint, empty, None
    )
    with pytest.raises(SdofmError, match=r"no f107\.csv"):
        run(no_f107, tmp_path / "b", dict(PARAMS))
    assert not (tmp_path / "b" / "metrics.json").exists()
    # F10.7 from another year: no day of the data set has a value.
    (empty / "f107.csv").write_text(
        "time,observed_flux,adjusted_flux\n1990-01-01T20:00:00,150,150\n1990-01-02T20:00:00,151,151\n"
    )
    with pytest.raises(SdofmError, match="no observed_flux value on any day"):
        run(no_f107, tmp_path / "c", dict(PARAMS))
    assert not (tmp_path / "c").exists() or not (tmp_path / "c" / "metrics.json").exists()


def test_report_renders(benchmark, tmp_path):
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
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in errors if o.get("output_type") == "error"]
    assert html.exists() and html.stat().st_size > 10_000
    assert "persistence" in html.read_text()
