"""Auto-calibration: dimming draws, scores, the planted curve, the CNNs and the end-to-end task."""

import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from sdofm import SdofmError
from sdofm.benchmarks.autocalibration import (
    AIA,
    DimmingCNN,
    _batched,
    _Samples,
    calibration_scores,
    dimming_factors,
    planted_dimming,
    run,
)
from sdofm.benchmarks.common import TaskInputs
from sdofm.config import config_hash
from sdofm.dataset.loader import open_dataset
from sdofm.embeddings.extract import open_embeddings
from sdofm.io import file_sha256
from sdofm.reports.render import render_report
from sdofm.training.pretrain import load_backbone

MODELS = ("fm_head", "baseline_multichannel", "baseline_singlechannel", "climatology")
METRICS = ("frac_within_0.05", "frac_within_0.01", "mae")
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "autocalibration.ipynb"

# The tiny-fixture values of the config block (tests/configs/tiny.yaml after integration).
PARAMS = {
    "seed": 0,
    "alpha_min": 0.01,
    "train_draws": 2,
    "eval_draws": 2,
    "max_epochs": 100,
    "head_hidden": 128,
    "cnn_epochs": 10,
    "cnn_lr": 0.003,
    "cnn_filters": [16, 32],
    "cnn_filters_single": [4, 8],
    "cnn_bin": 2,
    "finetune": False,
    "finetune_epochs": 1,
    "finetune_lr": 0.0001,
    "bootstrap": 50,
}


def test_dimming_factors_reproducible_per_split():
    """Same seed and split: same draws; another split or seed: others; all in [low, 1]."""
    a = dimming_factors(40, 3, 9, seed=1, split="train", low=0.01)
    assert a.shape == (40, 3, 9)
    np.testing.assert_array_equal(a, dimming_factors(40, 3, 9, seed=1, split="train", low=0.01))
    assert not np.allclose(a, dimming_factors(40, 3, 9, seed=1, split="test", low=0.01))
    assert not np.allclose(a, dimming_factors(40, 3, 9, seed=2, split="train", low=0.01))
    assert a.min() >= 0.01 and a.max() <= 1.0
    assert abs(a.mean() - 0.505) < 0.03  # uniform on [0.01, 1]


def test_calibration_scores_by_hand():
    """Fractions within 0.05 and 0.01 and the MAE, per channel, over every leading axis."""
    truth = np.array([[[0.5, 0.2]], [[0.9, 0.1]], [[0.3, 0.6]], [[0.7, 0.4]]])  # (4, 1, 2)
    pred = truth + np.array([[[0.005, 0.1]], [[0.03, -0.002]], [[-0.2, 0.04]], [[0.0, 0.06]]])
    s = calibration_scores(pred, truth)
    np.testing.assert_allclose(s["frac_within_0.05"], [3 / 4, 2 / 4])
    np.testing.assert_allclose(s["frac_within_0.01"], [2 / 4, 1 / 4])
    np.testing.assert_allclose(
        s["mae"], [(0.005 + 0.03 + 0.2) / 4, (0.1 + 0.002 + 0.04 + 0.06) / 4]
    )


def test_planted_dimming_relative_to_reference(tmp_path):
    """The planted factor over its value at the reference, interpolated and clipped to [low, 1]."""
    days = pd.date_range("2011-01-01", periods=5, freq="D")
    pd.DataFrame(
        {"94A": [1.0, 0.9, 0.8, 0.7, 0.6], "171A": [0.5, 0.5, 0.4, 0.004, 0.004]},
        index=pd.Index(days, name="time"),
    ).to_csv(tmp_path / "degradation.csv")
    times = np.array(["2011-01-01T12", "2011-01-03", "2011-01-05"], dtype="datetime64[ns]")
    got = planted_dimming(tmp_path, times, ["94A", "171A"], np.datetime64("2011-01-02"), 0.01)
    np.testing.assert_allclose(got[:, 0], [1.0, 0.8 / 0.9, 0.6 / 0.9])  # 0.95/0.9 clipped to 1
    np.testing.assert_allclose(got[:, 1], [1.0, 0.8, 0.01])
    with pytest.raises(SdofmError, match="no column"):
        planted_dimming(tmp_path, times, ["94A", "304A"], times[0], 0.01)
    with pytest.raises(SdofmError, match="covers"):
        planted_dimming(tmp_path, times + np.timedelta64(30, "D"), ["94A"], times[0], 0.01)
    with pytest.raises(SdofmError, match="no planted degradation"):
        planted_dimming(tmp_path / "nowhere", times, ["94A"], times[0], 0.01)


def test_single_channel_cnn_sees_only_its_channel():
    """groups=C: channel j's input moves only α_j; the multi-channel model mixes channels."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    bumped = x.clone()
    bumped[:, 1] *= 3.0
    single = DimmingCNN(3, 16, groups=3, filters=(4, 8))
    multi = DimmingCNN(3, 16, filters=(4, 8))
    with torch.no_grad():
        ds, dm = single(bumped) - single(x), multi(bumped) - multi(x)
    assert single(x).shape == (2, 3) and ((single(x) > 0) & (single(x) < 1)).all()
    assert (ds[:, [0, 2]] == 0).all() and (ds[:, 1] != 0).all()
    assert (dm != 0).all()


def test_batched_handles_no_rows():
    """An empty split (e.g. no validation rows) gives an empty array of the right width."""
    lin = torch.nn.Linear(3, 2)
    assert _batched(lin, np.zeros((0, 3), np.float32)).shape == (0, 2)
    x = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(
            _batched(lin, x, 128), lin(torch.from_numpy(x)).numpy(), rtol=1e-6
        )


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory, task_inputs):
    """Run the task once on the shared tiny backbone, its embeddings and the planted truth."""
    out = tmp_path_factory.mktemp("autocalibration") / "out"
    params = dict(PARAMS)
    result = run(task_inputs, out, params)
    return {"out": out, "params": params, "result": result, "inputs": task_inputs}


def _rows(dataset):
    ds = open_dataset(dataset)
    ok = ds.valid.values
    return ds, {s: np.flatnonzero(ok & (ds.split.values == s)) for s in ("train", "val", "test")}


def test_metrics_json(benchmark, dataset):
    """Every model has every metric with a CI, per channel too; contract keys and provenance."""
    metrics = json.loads((benchmark["out"] / "metrics.json").read_text())
    assert metrics["task"] == "autocalibration"
    assert metrics["channels"] == list(AIA)
    head = metrics["headline"]
    assert head["metric"] == "frac_within_0.05" and head["higher_is_better"] is True
    for name in MODELS:
        model = metrics["models"][name]
        for m in (*METRICS, "curve_mae", "curve_mae_all_times"):
            lo, hi = model[m]["ci95"]
            assert lo <= model[m]["value"] <= hi, (name, m)
            per = model["per_channel"].get(m)
            if per is not None:
                assert list(per) == list(AIA)
                assert model[m]["value"] == pytest.approx(
                    np.mean([v["value"] for v in per.values()])
                )
        assert 0 <= model["frac_within_0.01"]["value"] <= model["frac_within_0.05"]["value"] <= 1
    diff = metrics["models"]["fm_head_minus_baseline"]
    expect = (
        metrics["models"]["fm_head"]["frac_within_0.05"]["value"]
        - metrics["models"]["baseline_multichannel"]["frac_within_0.05"]["value"]
    )
    assert diff["frac_within_0.05"]["value"] == pytest.approx(expect)
    _, rows = _rows(dataset)
    assert metrics["split"] == {s: len(r) for s, r in rows.items()}
    assert metrics["samples"]["train"] == len(rows["train"]) * PARAMS["train_draws"]
    assert metrics["samples"]["test"] == len(rows["test"]) * PARAMS["eval_draws"]
    assert "real SDO data" in metrics["published_anchor"]["source"]
    prov = metrics["provenance"]
    assert prov["config_hash"] == config_hash(benchmark["params"])
    assert prov["checkpoint_sha256"] == file_sha256(benchmark["inputs"].checkpoint)
    assert prov["embeddings_checkpoint_sha256"] == prov["checkpoint_sha256"]


def test_predictions_csv(benchmark, dataset):
    """predictions.csv: the seeded test draws, one column per model, consistent with metrics."""
    table = pd.read_csv(benchmark["out"] / "predictions.csv", parse_dates=["time"])
    assert list(table.columns[:4]) == ["time", "draw", "channel", "alpha_true"]
    assert set(table.columns[4:]) == set(MODELS)
    ds, rows = _rows(dataset)
    n_t, n_d, n_c = len(rows["test"]), PARAMS["eval_draws"], len(AIA)
    assert len(table) == n_t * n_d * n_c
    alpha = dimming_factors(n_t, n_d, n_c, seed=0, split="test", low=0.01)
    np.testing.assert_allclose(table.alpha_true.to_numpy().reshape(alpha.shape), alpha)
    times = table.time.to_numpy().reshape(n_t, n_d, n_c)[:, 0, 0]
    assert (times == ds.time.values[rows["test"]]).all()
    train = dimming_factors(
        len(rows["train"]), PARAMS["train_draws"], n_c, seed=0, split="train", low=0.01
    )
    metrics = benchmark["result"]["models"]
    for k, ch in enumerate(AIA):
        part = table[table.channel == ch]
        np.testing.assert_allclose(part.climatology, train[..., k].mean(), rtol=1e-9)
        for name in MODELS:
            err = np.abs(part[name] - part.alpha_true)
            per = metrics[name]["per_channel"]
            assert (err < 0.05).mean() == pytest.approx(per["frac_within_0.05"][ch]["value"])
            assert (err < 0.01).mean() == pytest.approx(per["frac_within_0.01"][ch]["value"])
            assert err.mean() == pytest.approx(per["mae"][ch]["value"])
            assert ((part[name] > 0) & (part[name] < 1)).all() or name == "climatology"


def test_models_beat_climatology(benchmark):
    """Even briefly trained on the tiny Sun, every model recovers α better than a constant."""
    models = benchmark["result"]["models"]
    clim = models["climatology"]
    for name in ("baseline_multichannel", "baseline_singlechannel", "fm_head"):
        assert models[name]["mae"]["value"] < clim["mae"]["value"], name
    assert models["baseline_multichannel"]["mae"]["ci95"][1] < clim["mae"]["ci95"][0]


def test_planted_curve(benchmark, dataset):
    """curve.csv: the planted curve relative to the first training step, and its MAE metrics."""
    curve = pd.read_csv(benchmark["out"] / "curve.csv", parse_dates=["time"])
    ds, rows = _rows(dataset)
    valid = np.flatnonzero(ds.valid.values)
    assert len(curve) == len(valid) * len(AIA)
    truth = benchmark["inputs"].truth
    planted = planted_dimming(
        truth, ds.time.values[valid], list(AIA), ds.time.values[rows["train"][0]], 0.01
    )
    first = curve[curve.channel == AIA[0]]
    assert first.planted.iloc[np.searchsorted(valid, rows["train"][0])] == pytest.approx(1.0)
    for k, ch in enumerate(AIA):
        part = curve[curve.channel == ch]
        np.testing.assert_allclose(part.planted, planted[:, k])
        test = part[part.split == "test"]
        for name in MODELS:
            mae = np.abs(test[name] - test.planted).mean()
            got = benchmark["result"]["models"][name]["per_channel"]["curve_mae"][ch]["value"]
            assert mae == pytest.approx(got)
    # The planted degradation only ever declines after the reference.
    assert (curve.planted <= 1.0).all() and (curve.planted < 1.0).any()


def test_undimmed_embedding_matches_store(task_inputs, dataset):
    """α = 1 through the task's normalise-and-embed path gives the stored embeddings."""
    ds, rows = _rows(dataset)
    net, _ = load_backbone(task_inputs.checkpoint)
    some = rows["test"][:5]
    samples = _Samples(ds, some, list(AIA), PARAMS)
    z = samples.embed(net, some, np.ones((len(some), 1, len(AIA))))
    stored = open_embeddings(task_inputs.embeddings).embedding.values[some]
    np.testing.assert_allclose(z, stored, rtol=1e-4, atol=1e-4)


def test_samples_file(benchmark):
    """samples.nc holds a few undimmed test images with their true and predicted α."""
    with xr.open_dataset(benchmark["out"] / "samples.nc") as ex:
        assert list(ex.channel.values) == list(AIA)
        assert set(ex.model.values) == set(MODELS)
        assert ex.images.dims == ("example", "channel", "y", "x")
        assert float(ex.alpha_true.min()) >= 0.01 and ex.attrs["arcsec_per_px"] > 0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"alpha_min": 1.5}, "alpha_min"),
        ({"train_draws": 0}, "train_draws"),
        ({"cnn_bin": 3}, "cnn_bin 3 does not divide"),
    ],
)
def test_bad_params(task_inputs, tmp_path, change, match):
    """Bad settings stop the task with a clear error and no metrics.json."""
    with pytest.raises(SdofmError, match=match):
        run(task_inputs, tmp_path / "out", {**PARAMS, **change})
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_missing_planted_curve(task_inputs, tmp_path):
    """A ground-truth folder without degradation.csv fails before any training."""
    (tmp_path / "truth").mkdir()
    inputs = TaskInputs(
        task_inputs.dataset,
        task_inputs.embeddings,
        task_inputs.checkpoint,
        None,
        tmp_path / "truth",
    )
    with pytest.raises(SdofmError, match="no planted degradation curve"):
        run(inputs, tmp_path / "out", PARAMS)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_finetune_without_truth(task_inputs, tmp_path):
    """finetune trains through the backbone; without ground truth the curve check is skipped."""
    inputs = TaskInputs(task_inputs.dataset, task_inputs.embeddings, task_inputs.checkpoint)
    params = {**PARAMS, "finetune": True, "train_draws": 1, "eval_draws": 1, "max_epochs": 5}
    params |= {"cnn_epochs": 1, "bootstrap": 10}
    result = run(inputs, tmp_path / "out", params)
    assert "curve_mae" not in result["models"]["fm_head"]
    assert result["curve_reference_time"] is None
    assert not (tmp_path / "out" / "curve.csv").exists()
    assert (tmp_path / "out" / "metrics.json").exists()
    fm = pd.read_csv(tmp_path / "out" / "predictions.csv")["fm_head"]
    assert ((fm > 0) & (fm < 1)).all()
    # The report still renders, with the curve section skipped.
    out = tmp_path / "out"
    render_report(
        NOTEBOOK,
        out / "report.ipynb",
        out / "report.html",
        {
            "metrics_path": str(out / "metrics.json"),
            "predictions_path": str(out / "predictions.csv"),
        },
    )
    assert (out / "report.html").exists()


def test_report_renders(benchmark, tmp_path):
    """The notebook runs on the task's outputs without errors and gives an HTML report."""
    out = benchmark["out"]
    render_report(
        NOTEBOOK,
        tmp_path / "report.ipynb",
        tmp_path / "report.html",
        {
            "metrics_path": str(out / "metrics.json"),
            "predictions_path": str(out / "predictions.csv"),
        },
    )
    nb = nbformat.read(tmp_path / "report.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4
    assert (tmp_path / "report.html").stat().st_size > 10_000
