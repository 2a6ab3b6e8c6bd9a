"""Missing channel under the runner: flare times, the token decoder, persistence's alignment, the
climatology recomputed from the store, every arm with its kind, the config checks and the report."""

import copy
import dataclasses
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from sdofm import SdofmError
from sdofm.benchmarks.heads import TokenDecoder
from sdofm.benchmarks.inputs import Context
from sdofm.benchmarks.missing_channel import MissingChannel, flaring_times, planted_images
from sdofm.benchmarks.result import read_result
from sdofm.benchmarks.runner import Fit
from sdofm.config import validate_block
from sdofm.dataset.loader import disk_mask, open_dataset
from sdofm.reports.render import render_report
from tests.conftest import run_tiny_task

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "missing_channel.ipynb"
CONTROLS = {"fm_head": "fm", "random_init": "control"}
KINDS = CONTROLS | {"paper": "paper", "per_pixel": "shortcut", "persistence": "persistence"}
KINDS |= {"climatology": "trivial"}
KINDS |= {"oracle": "oracle"}


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
            "2011-01-01T10:00",
            "2011-01-01T11:00",
            "2011-01-01T11:01",
            "2011-01-02T10:30",
            "2011-01-03T10:30",
        ]
    )
    np.testing.assert_array_equal(flaring_times(times, flares, "C1.0"), [1, 1, 0, 0, 1])
    assert not flaring_times(times, flares, "X1.0").any()
    assert not flaring_times(times, flares.iloc[:0], "C1.0").any()


def test_token_decoder_keeps_the_image_size():
    """Tokens (with or without the full-resolution images) give one full-resolution image."""
    tokens, images = torch.randn(2, 24, 4, 4), torch.randn(2, 5, 32, 32)
    assert TokenDecoder(24, 8, width=4)(tokens).shape == (2, 1, 32, 32)
    assert TokenDecoder(24, 8, width=4, skip_chans=5)(tokens, images).shape == (2, 1, 32, 32)


def _task(task_inputs, tiny_config, **change) -> MissingChannel:
    block = copy.deepcopy(tiny_config["benchmarks"]["missing_channel"]) | change
    params = validate_block(block, "benchmarks", "missing_channel")
    return MissingChannel(Context.open(task_inputs, params | {"protocol": tiny_config["protocol"]}))


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory, tiny_config, task_inputs):
    """Run the task once on the tiny Sun and its backbone."""
    out = tmp_path_factory.mktemp("missing_channel")
    return {"out": out, "result": run_tiny_task("missing_channel", tiny_config, task_inputs, out)}


def _rows(dataset, split):
    ds = open_dataset(dataset)
    return ds, np.flatnonzero(ds.valid.values & (ds.split.values == split))


def test_metrics_json_and_arms(benchmark, dataset, tiny_config):
    """metrics.json validates; every arm with its kind (the oracle: the synthetic truth)."""
    result = read_result(benchmark["out"] / "metrics.json")
    assert {a: v["kind"] for a, v in result["arms"].items()} == KINDS
    assert result["headline"]["metric"] == "pixel_correlation"
    seeds = len(tiny_config["protocol"]["seeds"])
    for arm, info in result["arms"].items():
        assert (
            info["seeds"]
            == (1 if arm in ("per_pixel", "persistence", "climatology", "oracle") else seeds)
            and seeds >= 3
        )
        corr = info["metrics"]["pixel_correlation"]
        assert corr["ci"][0] <= corr["value"] <= corr["ci"][1] and -1 <= corr["value"] <= 1
    for s in ("train", "val", "test"):
        assert result["split"][s] == len(_rows(dataset, s)[1])
    pred = pd.read_csv(benchmark["out"] / "predictions.csv")
    assert set(pred.arm) == set(KINDS) and set(pred.split) == {"val", "test"}
    # the shortcut against the paper's U-Net, on the same resamples, said in the verdicts
    d = result["shortcuts"]["per_pixel"]["paper"]["pixel_correlation"]
    arms = result["arms"]
    value = arms["per_pixel"]["metrics"]["pixel_correlation"]["value"]
    assert d["value"] == pytest.approx(
        value - arms["paper"]["metrics"]["pixel_correlation"]["value"]
    )
    assert d["ci"][0] <= d["value"] <= d["ci"][1]
    assert any(v.startswith("Shortcut per_pixel vs paper") for v in result["verdicts"])


def test_oracle_is_the_ceiling_and_needs_the_truth(benchmark, task_inputs, tiny_config):
    """The noise-free image beats every arm on every metric; no oracle without --truth."""
    arms = read_result(benchmark["out"] / "metrics.json")["arms"]
    for name, higher in [("pixel_correlation", True), ("ppe10", True), ("rmse", False)]:
        score = {a: v["metrics"][name]["value"] * (1 if higher else -1) for a, v in arms.items()}
        assert score["oracle"] == max(score.values()), name
    assert arms["oracle"]["metrics"]["pixel_correlation"]["value"] > 0.95
    no_truth = dataclasses.replace(task_inputs, truth=None)
    task = _task(no_truth, tiny_config)
    assert "oracle" not in task.arms(task.samples())


def test_planted_images_are_the_stored_ones_without_noise(task_inputs, dataset, tmp_path):
    """The stored test images scatter around the planted ones as photon noise does (the store
    holds Poisson counts over exposure × degradation, a few seconds: variance ≈ image / that),
    unbiased, and far closer than the images of two days later; another run's truth is refused."""
    ds, test = _rows(dataset, "test")
    stored = ds.images.sel(channel="211A").values[test].astype(np.float64)
    mask = disk_mask(stored.shape[-1], ds.attrs.get("rsun_px"))
    times = ds.time.values[test]
    planted = planted_images(task_inputs.truth, times, "211A", stored.shape[-1])
    residual = (stored - planted)[:, mask]
    assert abs(residual.mean()) < 0.002 * planted[:, mask].mean()
    seconds = 1 / (residual**2 / planted[:, mask]).mean()
    assert 1.0 < seconds < 6.0
    later = planted_images(task_inputs.truth, times + np.timedelta64(2, "D"), "211A", 32)
    assert np.abs(stored - later)[:, mask].mean() > 3 * np.abs(stored - planted)[:, mask].mean()
    truth = tmp_path / "truth"
    shutil.copytree(task_inputs.truth, truth)
    table = pd.read_csv(truth / "aia_disk_mean.csv", index_col=0)
    (table * 1.01).to_csv(truth / "aia_disk_mean.csv")
    with pytest.raises(SdofmError, match="not the one this truth was written with"):
        planted_images(truth, times[:2], "211A", 32)
    regions = pd.read_csv(truth / "regions.csv")
    regions.loc[0, "flux_mx"] *= 2
    regions.to_csv(truth / "regions.csv", index=False)
    with pytest.raises(SdofmError, match="not written by this package's synthetic Sun"):
        planted_images(truth, times[:2], "211A", 32)


def test_climatology_recomputed_from_the_store(benchmark, dataset):
    """The climatology's scores, recomputed from the physical images and the disk by hand."""
    ds, train = _rows(dataset, "train")
    _, test = _rows(dataset, "test")
    images = ds.images.sel(channel="211A").values.astype(np.float64)
    mask = disk_mask(images.shape[-1], ds.attrs.get("rsun_px"))
    clim = images[train].mean(axis=0)[mask]
    truth = images[test][:, mask]
    metrics = benchmark["result"]["arms"]["climatology"]["metrics"]
    r = np.mean([np.corrcoef(clim, t)[0, 1] for t in truth])
    assert metrics["pixel_correlation"]["value"] == pytest.approx(r, rel=1e-6)
    assert metrics["rmse"]["value"] == pytest.approx(
        np.sqrt(((truth - clim) ** 2).mean(axis=1)).mean()
    )
    ppe10 = (np.abs(clim - truth) / truth < 0.1).mean(axis=1).mean()
    assert metrics["ppe10"]["value"] == pytest.approx(ppe10)
    # The synthetic images carry the target's structure: the U-Net must beat the mean image.
    paper = benchmark["result"]["arms"]["paper"]["metrics"]["pixel_correlation"]["value"]
    assert paper > metrics["pixel_correlation"]["value"]


def test_persistence_uses_the_previous_image_never_its_own(task_inputs, tiny_config):
    """Each test image is predicted by the target's image at the previous usable time step
    (earlier in time, whatever its split), and changing an image never changes its own forecast."""
    task = _task(task_inputs, tiny_config)
    s = task.samples()
    test = s.where("test")
    train = {k: s.where(k) for k in ("train", "val")}
    arm = task.arms(s)["persistence"]
    assert (arm.kind, arm.seeded) == ("persistence", False)
    pred = arm.train(Fit(train, s.y, 0, torch.device("cpu")))(test)
    np.testing.assert_array_equal(pred, s.y[test - 1])
    assert (s.times[test - 1] < s.times[test]).all() and s.split[test[0] - 1] != "test"
    assert not np.isclose(pred, s.y[test]).all(axis=1).any()
    y = s.y.copy()
    y[test[5]] = 1e9  # the truth of one test image: its own forecast must not move
    moved = arm.train(Fit(train, y, 0, torch.device("cpu")))(test)
    np.testing.assert_array_equal(moved[5], pred[5])
    assert (moved[6] == 1e9).all()  # the next image's forecast is that image


def test_finetune_trains_a_copy_of_the_backbone(task_inputs, tiny_config):
    """finetune trains the backbone with the decoder, on a copy: the backbone every other fit
    (seeds, grid points, the frozen tokens) uses is left as it was."""
    task = _task(task_inputs, tiny_config, finetune=True, max_epochs=1)
    s = task.samples()
    net = task.ctx.pretrained.net
    before = {k: v.clone() for k, v in net.state_dict().items()}
    arm = task.fm_arm(task.ctx.pretrained)
    fit = Fit({k: s.where(k) for k in ("train", "val")}, s.y, 0, torch.device("cpu"))
    pred = arm.train(fit)(s.where("test"))
    assert "fine-tuned" in arm.description and np.isfinite(pred).all()
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def test_flare_subset(task_inputs, tiny_config, dataset, tmp_path):
    """A listed C flare over three test frames: those images are scored apart in ``extra``."""
    ds, test_rows = _rows(dataset, "test")
    t = ds.time.values[test_rows]
    events = tmp_path / "events"
    shutil.copytree(task_inputs.events, events)
    flare = {"start": [pd.Timestamp(t[0]) - pd.Timedelta("1h")], "peak": [pd.Timestamp(t[1])]}
    flare |= {"end": [pd.Timestamp(t[2]) + pd.Timedelta("1h")], "goes_class": ["C5.0"]}
    flare |= {"peak_flux": [5e-6], "lat": [np.nan], "lon": [np.nan], "noaa_ar": [0]}
    pd.DataFrame(flare).to_csv(events / "flares.csv", index=False)
    task = _task(dataclasses.replace(task_inputs, events=events), tiny_config)
    s = task.samples()
    test = s.where("test")
    fake = {"a": [s.y * 1.2], "b": [s.y + 1.0, s.y + 3.0]}
    info = task.extra(s, fake)["flare_times"]
    assert info["count"] == 3 and info["min_class"] == "C1.0"
    assert info["metrics"]["a"]["ppe10"] == 0.0  # 20 % off everywhere
    assert info["metrics"]["a"]["pixel_correlation"] == pytest.approx(1.0)
    fl = test[:3]
    rmse = np.mean([np.sqrt(((s.y[fl] + d - s.y[fl]) ** 2).mean()) for d in (1.0, 3.0)])
    assert info["metrics"]["b"]["rmse"] == pytest.approx(rmse)


def test_samples_file(benchmark, dataset):
    """samples.nc: test images in DN/s on the disk, every arm's, and the pixel histograms."""
    ds, test = _rows(dataset, "test")
    with xr.open_dataset(benchmark["out"] / "samples.nc") as s:
        s = s.load()
    assert list(s.arm.values) == list(KINDS)
    k = np.searchsorted(ds.time.values[test], s.time.values)
    truth = ds.images.sel(channel="211A").values[test][k]
    mask = disk_mask(truth.shape[-1], s.attrs["rsun_px"])
    np.testing.assert_allclose(s.truth.values[:, mask], truth[:, mask], rtol=1e-6)
    assert np.isnan(s.truth.values[:, ~mask]).all()
    assert (s.hist.sum(dim=("true_bin", "pred_bin")).values == mask.sum() * len(test)).all()


@pytest.mark.parametrize(
    ("change", "key"),
    [({"target": "Bz"}, "target"), ({"unet_levels": 9}, "unet_levels"), ({"lr": 0.1}, "lr")],
)
def test_bad_config_is_refused(change, key):
    """The schema refuses a bad block in one line naming the key, before anything runs."""
    with pytest.raises(SdofmError, match=key) as err:
        validate_block(change, "benchmarks", "missing_channel")
    assert "\n" not in str(err.value)


def test_report_renders(benchmark, tmp_path):
    """The notebook runs on the task's outputs without errors and gives an HTML report."""
    out = benchmark["out"]
    names = {"metrics": "metrics.json", "predictions": "predictions.csv", "samples": "samples.nc"}
    params = {f"{k}_path": str(out / f) for k, f in names.items()}
    render_report(NOTEBOOK, tmp_path / "report.ipynb", tmp_path / "report.html", params)
    nb = nbformat.read(tmp_path / "report.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
    assert (tmp_path / "report.html").stat().st_size > 10_000
