"""F10.7 on the runner: days as samples, past-only persistence, choices on validation only."""

import copy
import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from sdofm import SdofmError
from sdofm.benchmarks.baselines import disk_features
from sdofm.benchmarks.f107 import F107, planted_f107
from sdofm.benchmarks.inputs import Context
from sdofm.benchmarks.result import validate_result
from sdofm.benchmarks.runner import Fit, TaskInputs, run_task
from sdofm.config import validate_block
from sdofm.dataset.loader import disk_mask, open_dataset
from sdofm.reports.render import render_report
from sdofm.sources.events import read_f107

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "f107.ipynb"
KINDS = {
    "fm_head": "fm",
    "random_init": "control",
    "paper": "paper",
    "persistence": "persistence",
    "climatology": "trivial",
    "oracle": "oracle",
}
NOISE_SFU = 3.0  # the planted observation noise of the synthetic F10.7 (generate._write_f107)


def _params(tiny_config, **change):
    block = validate_block(
        copy.deepcopy(tiny_config["benchmarks"]["f107"]) | change, "benchmarks", "f107"
    )
    return block | {"protocol": tiny_config["protocol"]}


def _task(task_inputs, tiny_config, events):
    inputs = TaskInputs(task_inputs.dataset, task_inputs.embeddings, task_inputs.checkpoint, events)
    task = F107(Context.open(inputs, _params(tiny_config)))
    return task, task.samples()


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_config, task_inputs):
    out = tmp_path_factory.mktemp("f107") / "out"
    result = run_task(F107, task_inputs, out, _params(tiny_config))  # with the ground truth
    return {
        "out": out,
        "result": result,
        "pred": pd.read_csv(out / "predictions.csv", parse_dates=["time"]),
    }


def test_metrics_json_has_every_arm(run):
    metrics = json.loads((run["out"] / "metrics.json").read_text())
    validate_result(metrics)
    assert {a: v["kind"] for a, v in metrics["arms"].items()} == KINDS
    assert metrics["headline"] == {
        "metric": "rmse",
        "label": "RMSE (sfu)",
        "higher_is_better": False,
    }
    assert (
        metrics["split"]["unit"] == "days"
        and min(metrics["split"][s] for s in ("train", "val", "test")) > 5
    )
    assert all(a["seeds"] == 1 for a in metrics["arms"].values())  # ridge heads are closed-form
    assert set(metrics["extra"]["ridge_alpha"]) == {"pretrained", "random-init", "paper"}
    assert metrics["arms"]["oracle"]["seeds"] == 1
    assert metrics["differences"]["climatology"]["rmse"]["verdict"] in {
        "FM better",
        "FM worse",
        "not distinguishable",
    }


def test_samples_are_days_wholly_inside_their_split(run, task_inputs):
    """Every scored day is a calendar day all of whose store steps are in its split; its truth is
    that day's observed F10.7."""
    pred = run["pred"][(run["pred"].arm == "fm_head")]
    assert (pred.time == pred.time.dt.floor("D")).all()
    ds = open_dataset(task_inputs.dataset)
    steps = pd.Series(ds.split.values, index=pd.DatetimeIndex(ds.time.values).floor("D"))
    for day, split in zip(pred.time, pred.split, strict=True):
        assert set(steps.loc[day]) == {split}, day
    f107 = read_f107(task_inputs.events / "f107.csv")["observed_flux"]
    f107.index = f107.index.floor("D")
    np.testing.assert_allclose(pred.y_true, f107.reindex(pred.time).to_numpy())


def test_persistence_is_the_previous_measurement(run, task_inputs):
    f107 = read_f107(task_inputs.events / "f107.csv")["observed_flux"].dropna()
    f107.index = f107.index.floor("D")
    p = run["pred"][run["pred"].arm == "persistence"]
    expected = [f107[f107.index < day].iloc[-1] for day in p.time]
    np.testing.assert_allclose(p.y_pred, expected)


def test_planted_value_and_day_means(tmp_path, tiny_config, task_inputs):
    """A planted F10.7 on a test day is its target and the next day's persistence, never its
    own; a day's input is the mean over its valid steps; test targets never reach a choice."""
    events = tmp_path / "events"
    shutil.copytree(task_inputs.events, events)
    task, s = _task(task_inputs, tiny_config, events)
    d = int(s.where("test")[3])
    table = pd.read_csv(events / "f107.csv", parse_dates=["time"])
    table.loc[table.time.dt.floor("D") == s.times[d], "observed_flux"] = 500.0
    table.to_csv(events / "f107.csv", index=False)
    planted, s2 = _task(task_inputs, tiny_config, events)
    assert s2.y[d] == 500.0 and s.y[d] != 500.0
    pers = [t.arms(x)["persistence"].train(None) for t, x in ((task, s), (planted, s2))]
    assert pers[1](np.array([d]))[0] == pers[0](np.array([d]))[0] != 500.0
    assert pers[1](np.array([d + 1]))[0] == 500.0
    # The day's input: the mean embedding over the day's valid steps.
    emb = task.ctx.pretrained.embeddings
    day_steps = np.flatnonzero(task.usable & (task.day == s.times[d]))
    np.testing.assert_allclose(task._daily(emb)[d], emb[day_steps].mean(axis=0))
    # The FM ridge and the paper ridge are unchanged by the test target: choices use train/val.
    fits = [_fit(x) for x in (s, s2)]
    for name in ("paper",):
        a, b = (
            t.arms(x)[name].train(f) for t, x, f in ((task, s, fits[0]), (planted, s2, fits[1]))
        )
        np.testing.assert_allclose(a(s.where("test")), b(s.where("test")))
    a, b = (t.fm_arm(t.ctx.pretrained).train(f) for t, f in ((task, fits[0]), (planted, fits[1])))
    np.testing.assert_allclose(a(s.where("test")), b(s.where("test")))
    task.params["head"] = "mlp"  # the MLP head: seeded, grid-tuned, one prediction per day
    arm = task.fm_arm(task.ctx.pretrained)
    pred = arm.train(fits[0])(s.where("test"))
    assert arm.seeded and arm.tuned and pred.shape == (len(s.where("test")),)
    assert np.isfinite(pred).all() and abs(pred.mean() - s.y[s.where("train")].mean()) < 50


def test_oracle_is_the_noise_floor_and_needs_the_truth(run, task_inputs, tiny_config):
    """With the ground truth the oracle scores the planted noise (3 sfu) and no arm beats it
    by more than chance; without it (real data) there is no oracle arm."""
    arms = {a: v["metrics"]["rmse"]["value"] for a, v in run["result"]["arms"].items()}
    assert 0.6 * NOISE_SFU < arms["oracle"] < 1.4 * NOISE_SFU
    assert arms["oracle"] <= min(arms.values()) + 0.5
    assert arms["oracle"] < 0.5 * arms["climatology"]
    task, s = _task(task_inputs, tiny_config, task_inputs.events)  # no --truth
    assert "oracle" not in task.arms(s)


@pytest.mark.parametrize("observed", [True, False])
def test_planted_f107_is_the_series_without_its_noise(task_inputs, observed):
    """A line through the planted flux leaves the planted noise over every day of the tiny Sun,
    at 1 AU and as observed; the flux of days shifted by four days leaves far more."""
    f107 = read_f107(task_inputs.events / "f107.csv")
    days = f107.index.floor("D")
    y = f107["observed_flux" if observed else "adjusted_flux"].to_numpy()
    factor = y / f107["adjusted_flux"].to_numpy()

    def residual(shift_days):
        flux = planted_f107(task_inputs.truth, days + pd.Timedelta(days=shift_days))
        ok = np.isfinite(flux)
        assert ok.mean() > 0.9
        fit = np.polyfit(flux[ok], (y / factor)[ok], 1)
        return np.std(y[ok] - np.polyval(fit, flux[ok]) * factor[ok])

    assert residual(0) == pytest.approx(NOISE_SFU, rel=0.25)
    assert residual(4) > 2 * NOISE_SFU


def test_disk_features_by_hand():
    """A uniform 100 DN/s disk gives log10 100 = 2; a uniform radial 10 G field gives 10 G
    times the area of the visible cap with mu > 0.1, 2 pi R^2 (1 - 0.1)."""
    size, rsun = 128, 50.0
    disk = disk_mask(size, rsun)
    images = np.zeros((1, 4, size, size))
    images[0, 0][disk] = 100.0
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    mu = np.sqrt(np.clip(1 - (yy**2 + xx**2) / rsun**2, 0, 1))
    images[0, 3] = 10.0 * mu  # Bz of a radial field seen at the disk centre direction
    f = disk_features(images, ["171A", "Bx", "By", "Bz"], rsun, field="bz")
    assert f[0, 0] == pytest.approx(2.0)
    cm_per_px = 976.0 / rsun * 725.27e5
    hemisphere = 2 * np.pi * (rsun * cm_per_px) ** 2 * (1 - 0.1)
    assert f[0, 1] == pytest.approx(10.0 * hemisphere, rel=0.05)


def test_image_features_beat_climatology(run):
    """The synthetic F10.7 is driven by the unsigned flux: the classical ridge must track it,
    on the tiny config's held-out Sun too (22 test days of a Sun its 46 training days never
    showed: r about 0.48, where the oracle reaches 0.91), with an interval that excludes 0."""
    arms = run["result"]["arms"]
    assert (
        arms["paper"]["metrics"]["rmse"]["value"] < arms["climatology"]["metrics"]["rmse"]["value"]
    )
    r = arms["paper"]["metrics"]["pearson_r"]
    assert r["value"] > 0.3 and r["ci"][0] > 0, r


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"target": "flux"}, r"f107\.target': 'flux' is not one of"),
        ({"head": "lasso"}, r"f107\.head': 'lasso' is not one of"),
        ({"hmi_field": "los"}, r"f107\.hmi_field': 'los' is not one of"),
        ({"max_epochs": 0}, r"f107\.max_epochs': 0 is less than the minimum"),
    ],
)
def test_bad_config_is_refused_by_the_schema(tiny_config, change, match):
    with pytest.raises(SdofmError, match=match) as err:
        _params(tiny_config, **change)
    assert "\n" not in str(err.value)


def test_missing_or_foreign_f107_stops_before_work(tmp_path, tiny_config, task_inputs):
    events = tmp_path / "events"
    events.mkdir()
    shutil.copy(task_inputs.events / "flares.csv", events / "flares.csv")
    inputs = TaskInputs(task_inputs.dataset, task_inputs.embeddings, task_inputs.checkpoint, events)
    with pytest.raises(SdofmError, match=r"no f107\.csv in the event folder"):
        run_task(F107, inputs, tmp_path / "a", _params(tiny_config))
    (events / "f107.csv").write_text(
        "time,observed_flux,adjusted_flux\n1990-01-01T20:00:00,150,150\n"
    )
    with pytest.raises(SdofmError, match="no observed_flux value on any day of the store"):
        run_task(F107, inputs, tmp_path / "b", _params(tiny_config))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_report_renders(run, tmp_path):
    out = run["out"]
    names = {"metrics": "metrics.json", "predictions": "predictions.csv", "samples": "samples.nc"}
    params = {f"{k}_path": str(out / f) for k, f in names.items()}
    render_report(NOTEBOOK, tmp_path / "report.ipynb", tmp_path / "report.html", params)
    nb = nbformat.read(tmp_path / "report.ipynb", as_version=4)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3
    assert "persistence" in (tmp_path / "report.html").read_text()


def _fit(samples, seed=0):
    """What the runner hands an arm's train: training and validation rows, targets, seed."""
    rows = {k: samples.where(k) for k in ("train", "val")}
    return Fit(rows, samples.y, seed, torch.device("cpu"))
