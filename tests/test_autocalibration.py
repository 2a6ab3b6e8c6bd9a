"""Auto-calibration under the runner: the paper's non-ML baseline and CNN, the planted curve, the
FM arm's inputs, every arm with its kind, the oracle ceiling, the config checks and the report."""

import copy
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from scipy import stats
from sklearn.metrics import mean_absolute_error

from sdofm import SdofmError
from sdofm.benchmarks.autocalibration import CURVE_EVERY, Autocalibration, planted_dimming
from sdofm.benchmarks.baseline_nets import DimmingCNN
from sdofm.benchmarks.baselines import dimming_ratio, quiet_sun_mode
from sdofm.benchmarks.inputs import Context
from sdofm.benchmarks.metrics import row_mae
from sdofm.benchmarks.result import read_result
from sdofm.config import validate_block
from sdofm.dataset.loader import disk_mask, open_dataset
from sdofm.reports.render import render_report
from tests.conftest import run_tiny_task

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "autocalibration.ipynb"
PAPER = {"paper_multichannel": "paper", "paper_singlechannel": "paper", "paper_ratio": "paper"}
KINDS = {"fm_head": "fm", "random_init": "control"} | PAPER | {"inner_median": "shortcut"}
KINDS |= {"climatology": "trivial", "oracle": "oracle"}


def test_quiet_sun_mode_is_the_lognormal_fit_mode():
    """exp(μ − σ²) of the quiet pixels above the floor is the mode of scipy's log-normal fit."""
    rng = np.random.default_rng(0)
    x = rng.lognormal(1.0, 0.5, size=(3, 2, 16, 16))
    x[0, 0, :4] = 0.05  # below the floor: left out
    quiet = rng.random((3, 16, 16)) < 0.6
    got = quiet_sun_mode(x, quiet, floor=0.1)
    for i in range(3):
        for c in range(2):
            v = x[i, c][quiet[i] & (x[i, c] >= 0.1)]
            shape, _, scale = stats.lognorm.fit(v, floc=0)
            assert got[i, c] == pytest.approx(scale * np.exp(-(shape**2)), rel=1e-6)
    assert np.isnan(quiet_sun_mode(x, np.zeros((3, 16, 16), bool)))[0, 0]


def test_dimming_ratio_by_hand():
    """Quiet pixels e^0, e^1, e^2 have mode exp(1 − 2/3); the floor and the clip act as stated."""
    img = np.full((1, 1, 2, 2), 50.0)
    img[0, 0].flat[:3] = np.exp([0.0, 1.0, 2.0])
    quiet = np.array([[[True, True], [True, False]]])
    mode = np.exp(1.0 - 2.0 / 3.0)
    assert quiet_sun_mode(img, quiet)[0, 0] == pytest.approx(mode)
    assert dimming_ratio(img, quiet, np.array([4 * mode]))[0, 0] == pytest.approx(0.25)
    assert dimming_ratio(0.5 * img, quiet, np.array([mode]))[0, 0] == pytest.approx(0.5)
    assert dimming_ratio(img, quiet, np.array([mode / 2]))[0, 0] == 1.0  # clipped
    assert dimming_ratio(0.01 * img, quiet, np.array([mode]))[0, 0] == 0.0  # all below 0.1


def test_row_mae_by_hand_and_against_sklearn():
    """The per-sample MAE (the runner resamples samples) and its mean, sklearn's MAE."""
    t, p = np.array([[1.0, 2.0], [3.0, 5.0]]), np.array([[1.5, 2.0], [3.0, 3.0]])
    np.testing.assert_allclose(row_mae(t, p), [0.25, 1.0])
    r = np.random.default_rng(1)
    t, p = r.random((40, 9)), r.random((40, 9))
    assert row_mae(t, p).mean() == pytest.approx(mean_absolute_error(t.ravel(), p.ravel()))


def test_planted_dimming_relative_to_reference(tmp_path):
    """The planted factor over its value at the reference, interpolated, clipped to [low, 1]."""
    days = pd.date_range("2011-01-01", periods=5, freq="D")
    table = {"94A": [1.0, 0.9, 0.8, 0.7, 0.6], "171A": [0.5, 0.5, 0.4, 0.004, 0.004]}
    pd.DataFrame(table, index=pd.Index(days, name="time")).to_csv(tmp_path / "degradation.csv")
    path = tmp_path / "degradation.csv"
    times = np.array(["2011-01-01T12", "2011-01-03", "2011-01-05"], dtype="datetime64[ns]")
    got = planted_dimming(path, times, ["94A", "171A"], np.datetime64("2011-01-02"), 0.01)
    np.testing.assert_allclose(got[:, 0], [1.0, 0.8 / 0.9, 0.6 / 0.9])  # 0.95/0.9 clipped
    np.testing.assert_allclose(got[:, 1], [1.0, 0.8, 0.01])
    for channels, shift in ((["94A", "304A"], 0), (["94A"], 30)):
        with pytest.raises(SdofmError, match="does not cover"):
            planted_dimming(path, times + np.timedelta64(shift, "D"), channels, times[0], 0.01)


def test_single_channel_cnn_sees_only_its_channel():
    """groups=C: channel j's input moves only α_j; the multi-channel model mixes channels."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    bumped = x.clone()
    bumped[:, 1] *= 3.0
    single = DimmingCNN(3, 32, groups=3, filters=(4, 8))
    multi = DimmingCNN(3, 32, filters=(4, 8))
    with torch.no_grad():
        ds, dm, out = single(bumped) - single(x), multi(bumped) - multi(x), single(x)
    assert out.shape == (2, 3) and ((out > 0) & (out < 1)).all()
    assert (ds[:, [0, 2]] == 0).all() and (ds[:, 1] != 0).all() and (dm != 0).all()


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory, tiny_config, task_inputs):
    """Run the task once on the tiny Sun, its backbone and its planted degradation."""
    out = tmp_path_factory.mktemp("autocalibration")
    result = run_tiny_task("autocalibration", tiny_config, task_inputs, out)
    pred = pd.read_csv(out / "predictions.csv", parse_dates=["time"])
    return {"out": out, "result": result, "pred": pred}


def test_metrics_json_and_arms(benchmark, dataset, tiny_config):
    """metrics.json validates; every arm with its kind; seeds and sample counts as configured."""
    result = read_result(benchmark["out"] / "metrics.json")
    assert {a: v["kind"] for a, v in result["arms"].items()} == KINDS
    seeds = len(tiny_config["protocol"]["seeds"])
    assert seeds >= 3
    for arm, info in result["arms"].items():
        one = ("paper_ratio", "inner_median", "climatology", "oracle")
        assert info["seeds"] == (1 if arm in one else seeds)
        lo, hi = info["metrics"]["frac_within_0.05"]["ci"]
        assert lo <= info["metrics"]["frac_within_0.05"]["value"] <= hi, arm
    ds = open_dataset(dataset)
    valid, split = ds.valid.values, ds.split.values
    params = tiny_config["benchmarks"]["autocalibration"]
    for s, draws in (("train", "train_draws"), ("val", "eval_draws"), ("test", "eval_draws")):
        assert result["split"][s] == int((valid & (split == s)).sum()) * params[draws]
    assert set(result["differences"]) == set(KINDS) - {"fm_head"}
    assert set(result["shortcuts"]["inner_median"]) == set(PAPER)


def test_inner_median_recomputed_by_hand(benchmark, dataset):
    """The shortcut's test predictions, from the store: median within half the disk radius of
    the dimmed image over the mean of those of the undimmed training images."""
    ds = open_dataset(dataset)
    images = ds.images.values.astype(np.float64)
    aia = [str(c) for c in ds.channel.values if str(c).endswith("A")]
    size = images.shape[-1]
    rsun = ds.attrs.get("rsun_px") or ds.images.attrs.get("rsun_px") or 976 / (4.8 * 512 / size)
    inner = disk_mask(size, rsun / 2)
    median = np.median(images[:, : len(aia)][:, :, inner], axis=2)
    train = np.flatnonzero(ds.valid.values & (ds.split.values == "train"))
    pred = benchmark["pred"]
    part = pred[(pred.arm == "inner_median") & (pred.split == "test")].iloc[::5]
    rows = np.searchsorted(ds.time.values, part.time.to_numpy())
    alpha = part[[f"true:{c}" for c in aia]].to_numpy()
    expect = alpha * median[rows] / median[train].mean(axis=0)
    np.testing.assert_allclose(part[[f"pred:{c}" for c in aia]], expect, rtol=1e-4)


def test_oracle_is_the_ceiling(benchmark):
    """The planted α read back from the images scores 1; every other arm scores below it."""
    arms = benchmark["result"]["arms"]
    oracle = arms["oracle"]["metrics"]
    assert oracle["frac_within_0.01"]["value"] == 1.0 and oracle["mae"]["value"] < 1e-6
    for arm, info in arms.items():
        if arm != "oracle":
            assert info["metrics"]["frac_within_0.05"]["value"] < 1.0, arm
    diff = benchmark["result"]["differences"]["oracle"]["frac_within_0.05"]
    assert diff["verdict"] == "FM worse"
    trained = ("fm_head", "paper_multichannel", "paper_singlechannel", "paper_ratio")
    clim = arms["climatology"]["metrics"]["mae"]["value"]
    assert all(arms[a]["metrics"]["mae"]["value"] < clim for a in trained)


def test_paper_ratio_recomputed_by_hand(benchmark, dataset, tiny_config):
    """The non-ML arm's test predictions, recomputed from the store: quiet Sun in the central
    half where |Bz| <= 5 G, reference the median mode of the undimmed training images."""
    ds = open_dataset(dataset)
    images = ds.images.values.astype(np.float64)
    ch = [str(c) for c in ds.channel.values]
    aia = [c for c in ch if c.endswith("A")]
    quiet = np.zeros(images.shape[:1] + images.shape[2:], bool)
    quiet[:, 8:24, 8:24] = True
    quiet &= np.abs(np.nan_to_num(images[:, ch.index("Bz")], nan=99)) <= 5
    train = np.flatnonzero(ds.valid.values & (ds.split.values == "train"))
    ref = np.nanmedian(quiet_sun_mode(images[train][:, : len(aia)], quiet[train]), axis=0)
    pred = benchmark["pred"]
    part = pred[(pred.arm == "paper_ratio") & (pred.split == "test")].iloc[::7]
    rows = np.searchsorted(ds.time.values, part.time.to_numpy())
    alpha = part[[f"true:{c}" for c in aia]].to_numpy()
    dimmed = images[rows][:, : len(aia)] * alpha[:, :, None, None]
    expect = dimming_ratio(dimmed, quiet[rows], ref)
    np.testing.assert_allclose(part[[f"pred:{c}" for c in aia]], expect, rtol=1e-4, atol=1e-6)
    low = tiny_config["benchmarks"]["autocalibration"]["alpha_min"]
    assert ((alpha >= low) & (alpha <= 1)).all()


def test_planted_curve(benchmark, dataset, task_inputs):
    """Extra rows: valid steps with the planted degradation relative to the first training step;
    the oracle recovers it, and metrics.json's curve errors match predictions.csv."""
    ds = open_dataset(dataset)
    valid = np.flatnonzero(ds.valid.values)[::CURVE_EVERY]
    train = np.flatnonzero(ds.valid.values & (ds.split.values == "train"))
    aia = [str(c) for c in ds.channel.values if str(c).endswith("A")]
    path = task_inputs.truth / "degradation.csv"
    planted = planted_dimming(path, ds.time.values[valid], aia, ds.time.values[train[0]], 0.01)
    pred = benchmark["pred"]
    extra = pred[pred.split == "extra"]
    oracle = extra[extra.arm == "oracle"]
    np.testing.assert_allclose(oracle[[f"true:{c}" for c in aia]], planted, rtol=1e-6)
    np.testing.assert_allclose(oracle[[f"pred:{c}" for c in aia]], planted, rtol=1e-5)
    assert planted.max() <= 1.0 and planted.min() < 1.0
    curve = benchmark["result"]["extra"]["planted_curve"]
    late = np.isin(extra.time, ds.time.values[ds.split.values == "test"])
    for arm in ("fm_head", "paper_singlechannel"):
        e = extra[extra.arm == arm]
        err = np.abs(
            e[[f"pred:{c}" for c in aia]].to_numpy() - planted[np.arange(len(e)) % len(planted)]
        )
        assert err.mean() == pytest.approx(curve["mae_all_times"][arm], rel=1e-6)
        assert err[late[extra.arm == arm]].mean() == pytest.approx(
            curve["mae_test_period"][arm], rel=1e-6
        )


def test_multi_vs_single_is_reported(benchmark):
    """The paper's ordering, per seed, from the same scores as the arms'."""
    result = benchmark["result"]
    mvs = result["extra"]["multi_vs_single"]
    for arm, key in (("paper_multichannel", "multi"), ("paper_singlechannel", "single")):
        per_seed = result["arms"][arm]["metrics"]["frac_within_0.05"]["per_seed"]
        np.testing.assert_allclose(mvs[key], per_seed)
    assert mvs["paper_ordering"] == (np.mean(mvs["multi"]) > np.mean(mvs["single"]))


def test_fm_arm_embeds_with_the_backbone_it_is_given(task_inputs, tiny_config):
    """Undimmed (α = 1), the task's embedding path gives the stored embeddings for the pretrained
    backbone and `compute_embeddings`' for the random-init one (not the pretrained weights)."""
    params = validate_block(
        copy.deepcopy(tiny_config["benchmarks"]["autocalibration"]), "benchmarks", "autocalibration"
    )
    ctx = Context.open(task_inputs, params | {"protocol": tiny_config["protocol"]})
    task = Autocalibration(ctx)
    task.samples()
    task.alpha = torch.ones_like(task.alpha)
    for backbone in (ctx.pretrained, ctx.random_init):
        z = task._embedding(backbone).numpy()
        np.testing.assert_allclose(z, backbone.embeddings[task.rows], rtol=1e-4, atol=1e-4)
    assert not np.allclose(ctx.pretrained.embeddings[task.rows], z)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"alpha_min": 2}, "alpha_min"),
        ({"train_draws": 0}, "train_draws"),
        ({"cnn_bin": 2}, "cnn_bin"),
    ],
)
def test_bad_config_is_refused(change, key):
    """The schema refuses a bad block in one line naming the key, before anything runs."""
    with pytest.raises(SdofmError, match=key) as err:
        validate_block(change, "benchmarks", "autocalibration")
    assert "\n" not in str(err.value)


def test_report_renders(benchmark, tmp_path):
    """The notebook runs on the task's outputs without errors and gives an HTML report."""
    out = benchmark["out"]
    params = {
        f"{k}_path": str(out / f)
        for k, f in (
            ("metrics", "metrics.json"),
            ("predictions", "predictions.csv"),
            ("samples", "samples.nc"),
        )
    }
    render_report(NOTEBOOK, tmp_path / "report.ipynb", tmp_path / "report.html", params)
    nb = nbformat.read(tmp_path / "report.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4
    with xr.open_dataset(out / "samples.nc") as s:
        assert list(s.arm.values) == list(KINDS) and s.images.dims == (
            "example",
            "channel",
            "y",
            "x",
        )
