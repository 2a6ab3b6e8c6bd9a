"""Label efficiency: metrics, subsets, the vectorised bootstrap and the end-to-end benchmark."""

import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from sdofm import SdofmError
from sdofm.benchmarks.common import TaskInputs
from sdofm.benchmarks.label_efficiency import (
    CURVES,
    HEADLINE,
    MODELS,
    _counts,
    _resampled,
    best_threshold,
    median_rae,
    roc_auc,
    run,
    training_subset,
    true_skill_statistic,
)
from sdofm.config import config_hash
from sdofm.dataset.loader import open_dataset
from sdofm.io import file_sha256
from sdofm.reports.render import render_report
from sdofm.sources.events import flare_labels, read_flare_list

ROOT = Path(__file__).resolve().parents[1]

# The tiny-fixture values proposed for tests/configs/tiny.yaml.
PARAMS = {
    "seed": 0,
    "fractions_percent": [1, 30, 100],
    "repeats": 2,
    "subset": "contiguous",
    "min_class": "C1.0",
    "horizon": "24h",
    "head": "mlp",
    "head_steps": 60,
    "cnn_width": 4,
    "cnn_pool": 2,
    "cnn_steps": 30,
    "cnn_batch_size": 16,
    "cnn_lr": 3e-3,
    "eval_every": 10,
    "patience": 2,
    "finetune": False,
    "finetune_lr": 1e-4,
    "bootstrap": 50,
}


def test_median_rae_by_hand():
    """Mean relative error per line in percent, then the median over lines."""
    truth = np.array([[1.0, 10.0, 2.0], [2.0, 20.0, 2.0]])
    pred = np.array([[1.1, 9.0, 2.0], [2.0, 22.0, 3.0]])
    # per line: (10 + 0) / 2 = 5, (10 + 10) / 2 = 10, (0 + 50) / 2 = 25
    assert median_rae(pred, truth) == pytest.approx(10.0)


def test_tss_auc_threshold_by_hand():
    labels = np.array([1, 1, 0, 0, 0], bool)
    scores = np.array([0.9, 0.4, 0.5, 0.1, 0.2])
    # threshold 0.45: hits 1/2, false alarms 1/3
    assert true_skill_statistic(scores, labels, 0.45) == pytest.approx(0.5 - 1 / 3)
    # 5 of the 6 (positive, negative) pairs are ordered correctly
    assert roc_auc(scores, labels) == pytest.approx(5 / 6)
    rng = np.random.default_rng(1)
    y, s = rng.random(200) < 0.3, rng.integers(0, 10, 200).astype(float)  # with ties
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s))
    # A separating threshold exists: the best one reaches TSS 1.
    sep = np.array([0.1, 0.2, 0.6, 0.8])
    thr = best_threshold(sep, np.array([0, 0, 1, 1], bool))
    assert 0.2 < thr < 0.6
    assert true_skill_statistic(sep, np.array([0, 0, 1, 1], bool), thr) == 1.0
    # Undefined without both classes; a constant forecast has no skill.
    assert np.isnan(true_skill_statistic(scores, np.zeros(5, bool), 0.5))
    assert np.isnan(roc_auc(scores, np.ones(5, bool)))
    assert best_threshold(scores, np.zeros(5, bool)) == 0.5
    assert true_skill_statistic(np.full(5, 0.4), labels, 0.5) == 0.0
    assert roc_auc(np.full(5, 0.4), labels) == 0.5


def test_training_subsets():
    """Contiguous blocks of the right size, in different slices per repeat; stratified spreads."""
    n, repeats = 300, 3
    blocks = [training_subset(n, 10, r, repeats) for r in range(repeats)]
    for r, b in enumerate(blocks):
        assert len(b) == 30 and (np.diff(b) == 1).all() and b[0] >= 0 and b[-1] < n
        # the start lies in the r-th third of the possible starts
        assert r * 271 // 3 <= b[0] < (r + 1) * 271 // 3
    np.testing.assert_array_equal(blocks[1], training_subset(n, 10, 1, repeats))  # reproducible
    np.testing.assert_array_equal(training_subset(n, 100, 2, repeats), np.arange(n))
    assert len(training_subset(n, 0.1, 0, repeats)) == 1  # never empty
    strat = training_subset(n, 10, 0, repeats, how="stratified")
    assert len(strat) == 30 and len(set(strat)) == 30
    assert ((strat // 10) == np.arange(30)).all()  # one step from each slice of 10
    with pytest.raises(SdofmError, match="stratified"):
        training_subset(n, 10, 0, repeats, how="random")


def test_vectorised_bootstrap_matches_the_metrics():
    """With every row once, the resampled metric is the metric; resamples are bootstrap draws."""
    rng = np.random.default_rng(0)
    truth = rng.uniform(1, 2, (40, 3))
    pred = truth * rng.uniform(0.8, 1.2, (40, 3))
    ones = np.ones((1, 40))
    assert _resampled("median_rae", {"pred": pred}, truth, ones)[0] == pytest.approx(
        median_rae(pred, truth)
    )
    y = (rng.random(40) < 0.4).astype(float)
    s = np.round(rng.random(40), 1)
    entry = {"pred": s, "threshold": 0.5}
    assert _resampled("tss", entry, y, ones)[0] == pytest.approx(
        true_skill_statistic(s, y > 0, 0.5)
    )
    assert _resampled("roc_auc", entry, y, ones)[0] == pytest.approx(roc_auc(s, y > 0))
    w = _counts(40, 20, seed=3)
    assert w.shape == (20, 40) and (w.sum(axis=1) == 40).all()
    # A resample with multiplicities equals the metric on the repeated rows.
    rows = np.repeat(np.arange(40), w[0])
    assert _resampled("roc_auc", entry, y, w[:1])[0] == pytest.approx(roc_auc(s[rows], y[rows] > 0))
    assert _resampled("median_rae", {"pred": pred}, truth, w[:1])[0] == pytest.approx(
        median_rae(pred[rows], truth[rows])
    )


def test_step_trainer_keeps_the_best_validation_weights():
    """Validation every few steps, stop after `patience`, restore the best; no val: last weights."""
    import torch

    from sdofm.benchmarks.label_efficiency import _train

    g = torch.Generator().manual_seed(0)
    x, xv = torch.randn(8, 1, generator=g), torch.randn(64, 1, generator=g)
    kw = dict(loss_fn=torch.nn.functional.mse_loss, lr=0.05, weight_decay=0.0, batch_size=4)
    kw |= dict(eval_every=5, patience=3, seed=0)
    # Training pulls the weight towards 2; validation is best at 1.
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    model, best = _train(model, (x, 2 * x), (xv, xv), steps=2000, **kw)
    assert best % 5 == 0 and best < 2000 - 5 * 3
    assert abs(model.weight.item() - 1.0) < 0.15 and not model.training
    model = torch.nn.Linear(1, 1, bias=False)
    model, best = _train(model, (x, 2 * x), (xv[:0], xv[:0]), steps=300, **kw)
    assert best == 300 and abs(model.weight.item() - 2.0) < 0.05


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory, task_inputs):
    out = tmp_path_factory.mktemp("label_efficiency") / "out"
    result = run(task_inputs, out, dict(PARAMS))
    return {"out": out, "result": result}


def _rows(dataset):
    ds = open_dataset(dataset)
    eve = ds.eve.values
    usable = ds.valid.values & np.isfinite(eve).all(axis=1) & (eve > 0).all(axis=1)
    return ds, {
        s: np.flatnonzero(usable & (ds.split.values == s)) for s in ("train", "val", "test")
    }


def test_metrics_json_contract(benchmark, task_inputs):
    metrics = json.loads((benchmark["out"] / "metrics.json").read_text())
    assert metrics["task"] == "label_efficiency"
    assert metrics["headline"]["metric"] == HEADLINE
    assert metrics["headline"]["higher_is_better"] is False
    for name in MODELS:
        model = metrics["models"][name]
        assert set(CURVES) <= set(model)
        head = model[HEADLINE]
        assert head["ci95"][0] <= head["value"] <= head["ci95"][1], name
        # "models" is the 100 % point of the curves
        assert head["value"] == metrics["curves"][HEADLINE][name]["100"]["value"]
    diff = metrics["models"]["fm_head_minus_baseline"][HEADLINE]
    models = metrics["models"]
    assert diff["value"] == pytest.approx(
        models["fm_head"][HEADLINE]["value"] - models["baseline_from_scratch"][HEADLINE]["value"]
    )
    _, rows = _rows(task_inputs.dataset)
    assert metrics["split"] == {s: len(r) for s, r in rows.items()}
    assert metrics["published_anchor"] is None
    prov = metrics["provenance"]
    assert prov["config_hash"] == config_hash(PARAMS)
    assert prov["checkpoint_sha256"] == file_sha256(task_inputs.checkpoint)
    assert prov["embeddings_checkpoint_sha256"] == prov["checkpoint_sha256"]


def test_curves(benchmark):
    """Every curve has every model and fraction; the 1 % subset is too small and says why."""
    metrics = json.loads((benchmark["out"] / "metrics.json").read_text())
    n_train = metrics["split"]["train"]
    for key, curve in metrics["curves"].items():
        assert set(curve) == set(MODELS)
        for model, points in curve.items():
            assert list(points) == ["1", "30", "100"]
            assert points["30"]["n_train"] == round(0.3 * n_train) or key.startswith("class")
            assert points["100"]["n_train"] >= points["30"]["n_train"] > points["1"]["n_train"]
            p = points["100"]
            assert p["ci95"][0] <= p["value"] <= p["ci95"][1], (key, model)
            assert p["ci95_test_bootstrap"][0] <= p["value"] <= p["ci95_test_bootstrap"][1]
            assert p["n_repeats"] == 2 and np.mean(p["repeats"]) == pytest.approx(p["value"])
            if model != "climatology":
                # about 95 training rows: 1 % is one time step
                assert points["1"]["value"] is None and "at least 2" in points["1"]["reason"]
    # The constant base-rate forecast has no skill.
    clim = metrics["curves"]["classification_tss"]["climatology"]["100"]
    assert clim["value"] == 0.0
    auc = metrics["curves"]["classification_roc_auc"]["climatology"]["100"]
    assert auc["value"] == 0.5
    cross = metrics["fm_head_matches_baseline_at_percent"]
    assert set(cross) == set(CURVES)
    for key, at in cross.items():
        target = metrics["curves"][key]["baseline_from_scratch"]["100"]["value"]
        fm = {float(f): p["value"] for f, p in metrics["curves"][key]["fm_head"].items()}
        lower = CURVES[key][2]
        good = [
            f for f, v in fm.items() if v is not None and (v <= target if lower else v >= target)
        ]
        assert at == (min(good) if good else None)
        since = metrics["fm_head_matches_baseline_from_percent"][key]
        assert since is None or (since >= (at or 0) and 100 in good)


def test_crossover_by_hand():
    """First fraction matching the from-scratch 100 % score, and the one from which it holds."""
    from sdofm.benchmarks.label_efficiency import _crossover

    def curve(fm, cnn100):
        points = dict(zip(["1", "10", "100"], fm, strict=True))
        return {
            "classification_tss": {
                "fm_head": {f: {"value": v} for f, v in points.items()},
                "baseline_from_scratch": {"100": {"value": cnn100}},
            }
        }

    c = curve([0.3, 0.1, 0.25], 0.2)  # higher is better: 1 % matches, 10 % does not
    assert _crossover(c, "classification_tss", [1.0, 10.0, 100.0]) == 1.0
    assert _crossover(c, "classification_tss", [1.0, 10.0, 100.0], sustained=True) == 100.0
    c = curve([float("nan"), 0.1, 0.15], 0.2)
    assert _crossover(c, "classification_tss", [1.0, 10.0, 100.0]) is None
    assert _crossover(c, "classification_tss", [1.0, 10.0, 100.0], sustained=True) is None


def test_predictions_csv(benchmark, task_inputs):
    """One row per (task, model, fraction, repeat); the curves are the means of its metrics."""
    table = pd.read_csv(benchmark["out"] / "predictions.csv")
    assert len(table) == 2 * len(MODELS) * 3 * 2
    assert not table.duplicated(["task", "model", "fraction_percent", "repeat"]).any()
    curves = benchmark["result"]["curves"]
    for key, (task, metric, _, _) in CURVES.items():
        for (model, p), part in table[table.task == task].groupby(["model", "fraction_percent"]):
            value = curves[key][model][f"{p:g}"]["value"]
            expected = part[metric].mean()
            if np.isnan(expected):
                assert np.isnan(value)
            else:
                assert value == pytest.approx(expected)
    # Climatology at 100 %: the training mean irradiance, scored by hand.
    ds, rows = _rows(task_inputs.dataset)
    eve = ds.eve.values.astype(np.float64)
    clim = np.tile(eve[rows["train"]].mean(axis=0), (len(rows["test"]), 1))
    row = table[(table.task == "regression") & (table.model == "climatology")]
    row = row[row.fraction_percent == 100].iloc[0]
    assert row.median_rae == pytest.approx(median_rae(clim, eve[rows["test"]]))
    # The flare labels of each subset come from the event list.
    flares = read_flare_list(task_inputs.event_file("flares.csv"))
    labels = flare_labels(flares, ds.time.values, min_class="C1.0")
    cls = table[(table.task == "classification") & (table.model == "fm_head")]
    for _, r in cls.iterrows():
        t = ds.time.values
        sub = (t >= np.datetime64(r.train_start)) & (t <= np.datetime64(r.train_end))
        sub &= ds.valid.values & (ds.split.values == "train")
        assert sub.sum() == r.n_train and labels[sub].sum() == r.n_positive
    # labels.csv (for the report's timeline) holds the same labels.
    timeline = pd.read_csv(benchmark["out"] / "labels.csv")
    assert len(timeline) == ds.sizes["time"]
    known = timeline.flare.notna().to_numpy()
    np.testing.assert_array_equal(timeline.flare[known], labels[known])


def test_finetune_and_no_positives(tmp_path, task_inputs):
    """Fine-tuning the backbone runs; a class no flare reaches gives nulls with reasons."""
    params = dict(PARAMS, fractions_percent=[100], repeats=1, finetune=True, cnn_steps=2)
    params["min_class"] = "X9.0"
    result = run(task_inputs, tmp_path, params)
    assert result["models"]["fm_head"][HEADLINE]["value"] > 0
    for model in ("fm_head", "baseline_from_scratch"):
        point = result["curves"]["classification_tss"][model]["100"]
        assert point["value"] is None or np.isnan(point["value"])
        assert "no flare" in point["reason"]
    assert np.isnan(result["curves"]["classification_tss"]["climatology"]["100"]["value"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["curves"]["classification_tss"]["climatology"]["100"]["value"] is None
    assert metrics["fm_head_matches_baseline_at_percent"]["classification_tss"] is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"fractions_percent": [0, 100]}, "in \\(0, 100\\]"),
        ({"fractions_percent": [10, 10]}, "duplicates"),
        ({"repeats": 0}, "at least 1"),
        ({"subset": "random"}, "contiguous"),
        ({"min_class": "Q1"}, "GOES class"),
        ({"horizon": "soon"}, "horizon"),
    ],
)
def test_bad_parameters(tmp_path, task_inputs, change, message):
    with pytest.raises(SdofmError, match=message):
        run(task_inputs, tmp_path, dict(PARAMS, **change))
    assert not (tmp_path / "metrics.json").exists()


def test_needs_the_flare_list(tmp_path, task_inputs):
    inputs = TaskInputs(task_inputs.dataset, task_inputs.embeddings, task_inputs.checkpoint)
    with pytest.raises(SdofmError, match="flares.csv"):
        run(inputs, tmp_path, dict(PARAMS))
    assert not (tmp_path / "metrics.json").exists()


def test_report_renders(benchmark, tmp_path):
    out = benchmark["out"]
    executed, html = tmp_path / "report.ipynb", tmp_path / "report.html"
    render_report(
        ROOT / "notebooks" / "label_efficiency.ipynb",
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
            assert output.get("output_type") != "error"
    text = html.read_text()
    assert html.exists() and "<img" in text and "Traceback" not in text
