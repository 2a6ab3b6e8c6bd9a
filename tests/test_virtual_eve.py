"""Virtual EVE: the metric, bootstrap CIs, early stopping and the end-to-end benchmark."""

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from sdofm.benchmarks.common import bootstrap_ci, fit
from sdofm.benchmarks.virtual_eve import relative_absolute_error, run
from sdofm.config import config_hash
from sdofm.dataset.loader import open_dataset
from sdofm.io import file_sha256

MODELS = ("fm_head", "baseline", "baseline_linear", "climatology")


def test_relative_absolute_error_by_hand():
    """Mean of |pred - truth| / |truth| per line, in percent."""
    truth = np.array([[1.0, 10.0], [2.0, 20.0], [4.0, 5.0]])
    pred = np.array([[1.1, 9.0], [2.0, 22.0], [3.0, 5.0]])
    # line 0: (0.1 + 0 + 0.25) / 3; line 1: (0.1 + 0.1 + 0) / 3
    expected = 100.0 * np.array([0.35 / 3, 0.2 / 3])
    np.testing.assert_allclose(relative_absolute_error(pred, truth), expected)


def test_bootstrap_ci_contains_point():
    """Point value is the statistic on all rows and lies inside a non-empty interval."""
    data = np.random.default_rng(0).normal(5.0, 2.0, size=(300, 2)) * [1.0, 3.0]

    def stat(i):
        return data[i].mean(axis=0)

    point, lo, hi = bootstrap_ci(stat, len(data), resamples=200, seed=1)
    np.testing.assert_allclose(point, data.mean(axis=0))
    assert point.shape == lo.shape == hi.shape == (2,)
    assert (lo < point).all() and (point < hi).all()
    se = data.std(axis=0) / math.sqrt(len(data))  # ±1.96 standard errors, roughly
    np.testing.assert_allclose(hi - lo, 2 * 1.96 * se, rtol=0.3)
    again = bootstrap_ci(stat, len(data), resamples=200, seed=1)
    np.testing.assert_array_equal(again[1], lo)


class _Recorder(nn.Linear):
    """A 1-to-1 linear map that remembers its weight at every validation pass."""

    def __init__(self):
        super().__init__(1, 1, bias=False)
        nn.init.zeros_(self.weight)
        self.seen = []

    def forward(self, x):
        if not self.training:
            self.seen.append(self.weight.item())
        return super().forward(x)


def test_fit_early_stops_with_best_weights():
    """Training past the validation optimum stops after `patience` and restores the best."""
    g = torch.Generator().manual_seed(0)
    x, xv = torch.randn(64, 1, generator=g), torch.randn(64, 1, generator=g)
    # Training pulls the weight towards 2; validation is best at 1.
    model = _Recorder()
    patience = 4
    kw = dict(epochs=300, lr=0.05, weight_decay=0.0, batch_size=64, patience=patience)
    fit(model, (x, 2 * x), (xv, xv), **kw)
    seen = np.array(model.seen)
    val_loss = ((seen[:, None] - 1.0) ** 2 * (xv.numpy().ravel() ** 2)).mean(axis=1)
    best = int(np.argmin(val_loss))
    assert len(seen) == best + patience + 2 < 300  # stopped early
    assert model.weight.item() == seen[best]
    assert abs(seen[best] - 1.0) < 0.1 and seen[-1] > seen[best]
    assert not model.training


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory, tiny_config, task_inputs):
    """Run the benchmark once on the shared tiny backbone and its embeddings."""
    out = tmp_path_factory.mktemp("virtual_eve") / "out"
    params = copy.deepcopy(tiny_config["benchmarks"]["virtual_eve"])
    result = run(task_inputs, out, params)
    return {"out": out, "ckpt": task_inputs.checkpoint, "params": params, "result": result}


def _usable_rows(dataset):
    ds = open_dataset(dataset)
    eve = ds.eve.values
    usable = ds.valid.values & np.isfinite(eve).all(axis=1)
    return ds, {
        s: np.flatnonzero(usable & (ds.split.values == s)) for s in ("train", "val", "test")
    }


def test_metrics_json(benchmark, tiny_config, dataset):
    """metrics.json has every model, every line, CIs around the medians, splits, provenance."""
    metrics = json.loads((benchmark["out"] / "metrics.json").read_text())
    lines = tiny_config["data"]["eve_lines"]
    assert metrics["lines"] == lines and len(lines) == 14
    for name in MODELS:
        model = metrics["models"][name]
        assert list(model["per_line"]) == lines
        for line in lines:
            entry = model["per_line"][line]
            lo, hi = entry["ci95"]
            assert entry["value"] > 0 and lo <= hi, (name, line)
        med = model["median"]
        assert med["ci95"][0] <= med["value"] <= med["ci95"][1], name
        values = [model["per_line"][k]["value"] for k in lines]
        assert med["value"] == pytest.approx(np.median(values))
        assert model["max"]["value"] == pytest.approx(max(values))
    _, rows = _usable_rows(dataset)
    assert metrics["split"] == {s: len(r) for s, r in rows.items()}
    assert min(metrics["split"].values()) > 0
    prov = metrics["provenance"]
    assert prov["config_hash"] == config_hash(benchmark["params"])
    assert prov["checkpoint_sha256"] == file_sha256(benchmark["ckpt"])
    assert prov["embeddings_checkpoint_sha256"] == prov["checkpoint_sha256"]
    assert {"sdofm", "torch", "numpy"} <= set(prov["packages"])


def test_predictions_csv(benchmark, dataset, tiny_config):
    """predictions.csv holds the test truth and one column per model, matching the metrics."""
    table = pd.read_csv(benchmark["out"] / "predictions.csv", parse_dates=["time"])
    assert list(table.columns[:3]) == ["time", "line", "truth"]
    assert set(table.columns[3:]) == set(MODELS)
    ds, rows = _usable_rows(dataset)
    lines = tiny_config["data"]["eve_lines"]
    assert len(table) == len(rows["test"]) * len(lines)
    metrics = benchmark["result"]["models"]
    for k, line in enumerate(lines):
        part = table[table.line == line]
        assert (part.time.to_numpy() == ds.time.values[rows["test"]]).all()
        np.testing.assert_allclose(part.truth, ds.eve.values[rows["test"], k], rtol=1e-6)
        # Climatology is the training mean of the line.
        np.testing.assert_allclose(
            part.climatology, ds.eve.values[rows["train"], k].astype(np.float64).mean(), rtol=1e-6
        )
        for name in MODELS:
            rae = 100 * np.mean(np.abs(part[name] - part.truth) / part.truth)
            assert rae == pytest.approx(metrics[name]["per_line"][line]["value"], rel=1e-6)


def test_baseline_beats_climatology(benchmark):
    """The synthetic lines are driven by AIA emission, so the AIA baseline beats climatology."""
    models = benchmark["result"]["models"]
    assert models["baseline"]["median"]["value"] < models["climatology"]["median"]["value"]
    assert models["baseline_linear"]["median"]["value"] < models["climatology"]["median"]["value"]


def test_virtual_instrument_after_megsa(benchmark, dataset, synthetic_mirror):
    """After MEGS-A ends (2011-03-25 in the tiny Sun) every later valid step is predicted, and
    scored against the lines the synthetic Sun would have had MEGS-A measured them."""
    after = benchmark["result"]["after_megsa"]
    ds = open_dataset(dataset)
    eve = ds.eve.values
    last = np.flatnonzero(np.isfinite(eve).all(axis=1))[-1]
    later = np.flatnonzero(ds.valid.values)
    later = later[later > last]
    assert after["steps"] == len(later) > 4
    assert pd.Timestamp(after["start"]) >= pd.Timestamp("2011-03-25")
    assert after["scored_steps"] == len(later)
    table = pd.read_csv(benchmark["out"] / "predictions_after_megsa.csv", parse_dates=["time"])
    assert len(table) == len(later) * 14
    truth = pd.read_csv(
        synthetic_mirror / "ground_truth" / "eve_after_megsa.csv", parse_dates=["time"]
    )
    truth = truth.set_index("time")
    part = table[table.line == "Fe IX"].set_index("time")
    ref = truth["Fe IX"].reindex(part.index, method="nearest", tolerance=pd.Timedelta("1h"))
    np.testing.assert_allclose(part["truth"], ref, rtol=1e-6)
    rae = 100 * np.mean(np.abs(part["fm_head"] - ref) / ref)
    med = after["models"]["fm_head"]["median"]
    assert med["ci95"][0] <= med["value"] <= med["ci95"][1]
    assert rae == pytest.approx(after["models"]["fm_head"]["per_line"]["Fe IX"]["value"], rel=1e-5)
