"""Flare forecasting on the runner: arms, labels, past-only persistence, choices on validation."""

import copy
import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from sdofm import SdofmError
from sdofm.benchmarks.baselines import flare_persistence, goes_persistence
from sdofm.benchmarks.flare_forecast import (
    FlareForecast,
    integrated_gradients,
    planted_flare_rate,
)
from sdofm.benchmarks.heads import pooled
from sdofm.benchmarks.inputs import Context
from sdofm.benchmarks.metrics import best_threshold, tss
from sdofm.benchmarks.protocol import LeakError, check_choice_rows
from sdofm.benchmarks.result import validate_result
from sdofm.benchmarks.runner import Fit, TaskInputs, run_task
from sdofm.config import validate_block
from sdofm.dataset.loader import open_dataset
from sdofm.reports.render import render_report
from sdofm.sources.events import flare_labels, read_flare_list, read_goes_xrs
from sdofm.sources.synthetic.flares import FLARE_INDEX

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "flare_forecast.ipynb"
KINDS = {
    "fm_head": "fm",
    "random_init": "control",
    "paper": "paper",
    "persistence_flares": "persistence",
    "persistence_goes": "persistence",
    "climatology": "trivial",
    "oracle": "oracle",
}
H = pd.Timedelta(hours=24)


def _params(tiny_config, **change):
    block = copy.deepcopy(tiny_config["benchmarks"]["flare_forecast"]) | change
    return validate_block(block, "benchmarks", "flare_forecast") | {
        "protocol": tiny_config["protocol"]
    }


def _inputs(task_inputs, events):
    t = task_inputs
    return TaskInputs(t.dataset, t.embeddings, t.checkpoint, events, t.truth)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_config, task_inputs):
    out = tmp_path_factory.mktemp("flare_forecast") / "out"
    assert (task_inputs.events / "goes_xrs.csv").exists()  # `sdofm events` copies GOES 1-8 Å
    result = run_task(FlareForecast, task_inputs, out, _params(tiny_config))
    pred = pd.read_csv(out / "predictions.csv", parse_dates=["time"])
    return {"out": out, "result": result, "pred": pred}


def test_metrics_json_has_every_arm_and_nested_folds(run):
    metrics = json.loads((run["out"] / "metrics.json").read_text())
    validate_result(metrics)
    assert {a: v["kind"] for a, v in metrics["arms"].items()} == KINDS
    assert metrics["headline"]["metric"] == "tss" and metrics["protocol"]["folds"] == 4
    for name, arm in metrics["arms"].items():
        assert set(arm["folds"]) == {"fold1", "fold2", "fold3", "fold4"}, name
        assert arm["seeds"] == (3 if KINDS[name] in ("fm", "control", "paper") else 1)
    assert set(metrics["differences"]) == set(KINDS) - {"fm_head"}
    assert metrics["published_anchor"]["values"]["tss"] == 0.53
    assert metrics["extra"]["label"]["min_class"] == "C1.0"
    assert "goes_xrs.csv" in metrics["extra"]["goes_persistence"]


def test_oracle_from_the_planted_rates_and_only_with_the_truth(run, task_inputs, tiny_config):
    """The oracle ranks the test rows at least as well as any arm; without --truth it is absent."""
    auc = {a: v["metrics"]["roc_auc"]["value"] for a, v in run["result"]["arms"].items()}
    assert auc["oracle"] >= max(auc.values()) - 0.05 and auc["oracle"] > 0.6
    t = task_inputs
    ctx = Context.open(
        TaskInputs(t.dataset, t.embeddings, t.checkpoint, t.events), _params(tiny_config)
    )
    task = FlareForecast(ctx)
    assert "oracle" not in task.arms(task.samples())


def test_planted_flare_rate_is_the_generators(task_inputs, synthetic_mirror, tiny_config):
    """The expected count over the tiny Sun is its catalogue's (a Poisson draw); the rate ranks
    the labels far better than the rate of a week later (a shifted truth: its regions have
    turned by a quarter of the disk; on the tiny Sun AUC 0.87 against 0.62, and 0.73 five days
    later, too close to tell apart reliably on one Sun's 180 labels)."""
    start, end = (pd.Timestamp(tiny_config["synthetic"][k]) for k in ("start", "end"))
    catalogue = pd.read_csv(synthetic_mirror / "ground_truth" / "flares.csv", parse_dates=[0])
    front = catalogue[catalogue.front_side & (catalogue.peak_time > start)]
    expected = planted_flare_rate(task_inputs.truth, [start], end - start, "C1.0")[0]
    assert abs(len(front) - expected) < 3 * np.sqrt(expected) + 2
    m1 = planted_flare_rate(task_inputs.truth, [start], end - start, "M1.0")[0]
    assert m1 == pytest.approx(expected * 10.0 ** (1 - FLARE_INDEX))  # power law above C1
    times = pd.date_range(start, end - 2 * H, freq="12h")
    y = flare_labels(read_flare_list(task_inputs.events / "flares.csv"), times, H, "C1.0")
    auc = [
        roc_auc_score(y, planted_flare_rate(task_inputs.truth, times + d * H, H, "C1.0"))
        for d in (0, 7)
    ]
    assert auc[0] > 0.65 and auc[0] > auc[1] + 0.15


def test_scored_rows_are_the_stores_test_split(run, task_inputs):
    """The folds cut the store's test split: every scored row is a store test row, every
    training and choice row a train or val row of the store."""
    ds = open_dataset(task_inputs.dataset)
    store = pd.Series(ds.split.values, index=pd.DatetimeIndex(ds.time.values))
    pred = run["pred"]
    np.testing.assert_array_equal(store.reindex(pred.time).to_numpy(), pred.split.to_numpy())
    assert set(pred.split) == {"val", "test"}


def test_labels_and_persistence_match_the_event_lists(run, task_inputs):
    """y is flare_labels; persistence is brute-force 'a flare in (t - 24 h, t]' and the
    ranking of the brute-force GOES maximum over (t - 24 h, t]."""
    flares = read_flare_list(task_inputs.events / "flares.csv")
    p = run["pred"][run["pred"].seed == 0]
    one = p[p.arm == "persistence_flares"]
    t = pd.DatetimeIndex(one.time)
    np.testing.assert_array_equal(one.y_true, flare_labels(flares, t, H, "C1.0"))
    big = flares[flares.peak_flux >= 1e-6 * (1 - 1e-9)].peak
    past = [((big > ti - H) & (big <= ti)).any() for ti in t]
    np.testing.assert_array_equal(one.y_pred, np.array(past, float))
    xrs = read_goes_xrs(task_inputs.events / "goes_xrs.csv").xrsb
    brute = [xrs[(xrs.index > ti - H) & (xrs.index <= ti)].max() for ti in t]
    goes = p[p.arm == "persistence_goes"].y_pred.to_numpy()
    assert spearmanr(goes, brute).statistic > 0.999
    assert (goes >= 0).all() and (goes <= 1).all()


def test_planted_persistence_sees_only_the_past():
    """A flare right after t is invisible to persistence at t; one right before t is seen."""
    t = pd.DatetimeIndex(["2011-03-15T12:00"])
    minute = pd.Timedelta(minutes=1)
    for peak, seen in [(t[0] + minute, 0.0), (t[0] - minute, 1.0), (t[0] - H, 0.0), (t[0], 1.0)]:
        flares = pd.DataFrame({"peak": [peak], "goes_class": ["M2.0"], "peak_flux": [2e-5]})
        assert flare_persistence(flares, t, H, "M1.0")[0] == seen, peak
        assert flare_labels(flares, t, H, "M1.0")[0] == (peak > t[0]), peak  # the label looks ahead
    idx = pd.date_range(t[0] - 2 * H, t[0] + H, freq="min")
    xrs = pd.DataFrame({"xrsb": np.full(len(idx), 1e-7)}, index=idx)
    base = goes_persistence(xrs, t, H)[0]
    xrs.loc[t[0] + minute, "xrsb"] = 1e-4
    assert goes_persistence(xrs, t, H)[0] == base == 1e-7
    xrs.loc[t[0] - minute, "xrsb"] = 5e-5
    assert goes_persistence(xrs, t, H)[0] == 5e-5


def test_planted_flares_through_the_task_arms(tmp_path, tiny_config, task_inputs):
    """The task's own persistence arms, on an event folder with a planted M5 flare and GOES spike
    one minute after a time step: unchanged at that step, seen at the next one."""
    events = tmp_path / "events"
    shutil.copytree(task_inputs.events, events)
    ctx = Context.open(_inputs(task_inputs, events), _params(tiny_config))
    before = FlareForecast(ctx)
    s = before.samples()
    arms0 = before.arms(s)
    test = s.where("test")
    quiet = arms0["persistence_flares"].train(None)(test[:-1]) == 0
    r = int(test[:-1][np.flatnonzero(quiet)[0]])
    t = pd.Timestamp(s.times[r])
    flares = pd.read_csv(events / "flares.csv")
    row = {"start": t, "peak": t + pd.Timedelta(minutes=1), "end": t + pd.Timedelta(minutes=9)}
    row |= {"goes_class": "M5.0", "peak_flux": 5e-5, "lat": 10.0, "lon": 0.0, "noaa_ar": 1}
    pd.concat([flares, pd.DataFrame([row])]).to_csv(events / "flares.csv", index=False)
    goes = pd.read_csv(events / "goes_xrs.csv")
    goes.loc[pd.to_datetime(goes.time) == t + pd.Timedelta(minutes=1), "xrsb_flux"] = 5e-5
    goes.to_csv(events / "goes_xrs.csv", index=False)
    after = FlareForecast(ctx)
    s2 = after.samples()
    arms1 = after.arms(s2)
    assert s2.y[r] == 1  # the label sees the planted flare ahead
    rows = np.array([r, r + 1])
    persist = [a["persistence_flares"].train(None)(rows) for a in (arms0, arms1)]
    assert persist[1][0] == persist[0][0] == 0 and persist[1][1] == 1
    goes0, goes1 = (a["persistence_goes"].train(_fit(s)) for a in (arms0, arms1))
    assert goes1(rows[:1])[0] == pytest.approx(goes0(rows[:1])[0], rel=1e-9)
    assert goes1(rows[1:])[0] > goes0(rows[1:])[0]


def test_thresholds_are_chosen_on_validation_and_test_choices_are_refused(run):
    """Each arm's threshold is the best-TSS one on the validation rows; choosing on test rows
    is refused by the protocol guard."""
    pred = run["pred"]
    for (arm, seed), g in pred.groupby(["arm", "seed"]):
        val = g[g.split == "val"]
        expected = best_threshold(val.y_true.to_numpy(), val.y_pred.to_numpy(), tss)
        assert g.threshold.iloc[0] == pytest.approx(expected), (arm, seed)
        assert g.threshold.nunique() == 1
    split = np.array(["train", "val", "val", "test", "test"])
    check_choice_rows(np.array([1, 2]), split, "the tss threshold")
    with pytest.raises(LeakError, match="threshold chosen on test rows"):
        check_choice_rows(np.array([2, 3, 4]), split, "the tss threshold")


def test_near_limb_recall_is_recomputed_from_predictions(run):
    extra = run["result"]["extra"]["recall"]
    test_pos = run["pred"][(run["pred"].split == "test") & (run["pred"].arm == "fm_head")]
    n_pos = int(test_pos[test_pos.seed == 0].y_true.sum())
    assert extra["n_near_limb"] + extra["n_central"] == n_pos > 0
    samples = xr.load_dataset(run["out"] / "samples.nc")
    lon = np.abs(samples.flare_lon.to_series())
    for arm, g in run["pred"][run["pred"].split == "test"].groupby("arm"):
        near = []
        for _, s in g.groupby("seed"):
            s = s.set_index("time")
            hit = (s.y_pred >= s.threshold)[(s.y_true == 1) & (lon.reindex(s.index) > 70)]
            near.append(hit.mean())
        assert extra[arm]["near_limb"] == pytest.approx(np.mean(near)), arm


def test_saliency_events_are_flaring_test_steps(run, task_inputs):
    samples = xr.load_dataset(run["out"] / "samples.nc")
    assert samples.sizes["event"] == 2
    ds = open_dataset(task_inputs.dataset)
    y = run["pred"][(run["pred"].arm == "fm_head") & (run["pred"].seed == 0)].set_index("time")
    for i in range(2):
        ev = samples.isel(event=i)
        t = pd.Timestamp(ev.event_time.values)
        assert y.loc[t, "y_true"] == 1 and y.loc[t, "split"] == "test"
        bz = ds.images.sel(channel="Bz", time=t).values
        np.testing.assert_allclose(ev.magnetogram.values, bz)
        assert np.abs(ev.saliency.values).sum() > 0
    assert len(set(samples.event_class.values.tolist())) >= 1 and samples.attrs["arcsec_per_px"] > 0


def test_integrated_gradients_completeness():
    torch.manual_seed(0)
    f = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Tanh(), torch.nn.Flatten())
    g = torch.nn.Linear(4 * 6 * 6, 1)
    x = torch.randn(2, 8, 8)

    def fn(b):
        return g(f(b))[:, 0]

    attr = integrated_gradients(fn, x, steps=64)
    with torch.no_grad():
        delta = float(fn(x[None])[0] - fn(torch.zeros(1, 2, 8, 8))[0])
    assert float(attr.sum()) == pytest.approx(delta, rel=0.02, abs=1e-3)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"min_class": "Q1"}, r"flare_forecast\.min_class': 'Q1' is not a GOES X-ray class"),
        ({"min_class": "M0"}, r"min_class': 'M0' is not a GOES X-ray class"),
        ({"horizon_hours": -1}, r"horizon_hours': -1 is less than or equal to the minimum"),
        ({"baseline_channels": ["Bq"]}, r"baseline_channels.0': 'Bq' is not one of"),
        ({"head": "svm"}, r"flare_forecast\.head': 'svm' is not one of"),
    ],
)
def test_bad_config_is_refused_by_the_schema(tiny_config, change, match):
    with pytest.raises(SdofmError, match=match) as err:
        _params(tiny_config, **change)
    assert "\n" not in str(err.value)


def test_baseline_channels_are_checked_against_the_store_before_training(
    tmp_path, tiny_config, task_inputs
):
    """A hand-written --params block is checked against the store's HMI components (the tiny
    store holds the vector field, no line-of-sight Blos) before anything trains; unset, the
    CNN gets Bz."""
    with pytest.raises(SdofmError, match=r"'Blos' is not an HMI component of the data set") as e:
        run_task(
            FlareForecast,
            task_inputs,
            tmp_path / "out",
            _params(tiny_config, baseline_channels=["Blos"]),
        )
    assert "valid: ['Bx', 'By', 'Bz']" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()
    task = FlareForecast(Context.open(task_inputs, _params(tiny_config, baseline_channels=None)))
    task.samples()
    assert task.params["baseline_channels"] == ["Bz"]


def test_no_flare_to_learn_from_or_no_goes_file(tmp_path, tiny_config, task_inputs):
    """A class no training/validation row reaches stops before any training and writes nothing;
    without goes_xrs.csv the GOES arm is left out and extra says why."""
    events = tmp_path / "events"
    shutil.copytree(task_inputs.events, events, ignore=shutil.ignore_patterns("goes_xrs.csv"))
    inputs = _inputs(task_inputs, events)
    with pytest.raises(SdofmError, match=r"no flare >= X9\.0 within 24 h of a train row"):
        run_task(FlareForecast, inputs, tmp_path / "out", _params(tiny_config, min_class="X9.0"))
    assert not (tmp_path / "out").exists()
    task = FlareForecast(Context.open(inputs, _params(tiny_config)))
    arms = task.arms(task.samples())
    assert "persistence_goes" not in arms and "no goes_xrs.csv" in task.goes_note
    # Saliency differentiates the same embedding the head was trained on (`sdofm embed`'s).
    rows = task.samples().where("test")[:3]
    with torch.no_grad():
        z = pooled(task.ctx.pretrained.net, torch.from_numpy(task.ctx.normalised(rows)))
    np.testing.assert_allclose(
        z.numpy(), task.ctx.pretrained.embeddings[rows], rtol=1e-4, atol=1e-4
    )


def test_report_renders(run, tmp_path):
    out = run["out"]
    executed, html = tmp_path / "report.ipynb", tmp_path / "report.html"
    params = {
        f"{k}_path": str(out / f)
        for k, f in [
            ("metrics", "metrics.json"),
            ("predictions", "predictions.csv"),
            ("samples", "samples.nc"),
        ]
    }
    render_report(NOTEBOOK, executed, html, params)
    nb = nbformat.read(executed, as_version=4)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5
    text = html.read_text()
    assert "persistence_flares" in text and "Flare forecasting" in text


def test_classification_metrics_by_hand_and_against_sklearn():
    """TP=3, FN=1, FP=2, TN=4: TSS = 3/4 - 2/6, HSS2 = 2(12 - 2) / (4*5 + 5*6); the counted
    versions agree with scikit-learn's on random cases with ties."""
    from sklearn import metrics as skm

    from sdofm.benchmarks.metrics import brier, hss2, roc_auc

    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)
    yes = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0], bool)
    assert tss(y, yes) == pytest.approx(0.75 - 2 / 6)
    assert hss2(y, yes) == pytest.approx(2 * (3 * 4 - 1 * 2) / (4 * 5 + 5 * 6))
    assert np.isnan(tss(np.zeros(5, bool), np.ones(5, bool))) and np.isnan(roc_auc(y[:4], yes[:4]))
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.random(80) < 0.3
        p = np.round(rng.random(80) * 0.6 + 0.3 * y, 1)  # many ties
        tn, fp, fn, tp = skm.confusion_matrix(y, p >= 0.5, labels=[False, True]).ravel()
        assert tss(y, p >= 0.5) == pytest.approx(tp / (tp + fn) - fp / (fp + tn))
        assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p))
        assert brier(y, p) == pytest.approx(skm.brier_score_loss(y, p))


def _fit(samples, seed=0):
    """What the runner hands an arm's train: training and validation rows, targets, seed."""
    rows = {k: samples.where(k) for k in ("train", "val")}
    return Fit(rows, samples.y, seed, torch.device("cpu"))
