"""Virtual EVE on the tiny Sun: arms, predictions, the virtual instrument; the training loop."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from sdofm.benchmarks.baselines import channel_statistics
from sdofm.benchmarks.heads import fit
from sdofm.benchmarks.metrics import median_rae
from sdofm.dataset.loader import open_dataset


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
    model, patience = _Recorder(), 4  # training pulls the weight to 2; validation is best at 1
    fit(model, (x, 2 * x), (xv, xv), epochs=300, lr=0.05, weight_decay=0.0, patience=patience)
    seen = np.array(model.seen)
    val_loss = ((seen[:, None] - 1.0) ** 2 * (xv.numpy().ravel() ** 2)).mean(axis=1)
    best = int(np.argmin(val_loss))
    assert len(seen) == best + patience + 2 < 300  # stopped early
    assert model.weight.item() == seen[best]
    assert abs(seen[best] - 1.0) < 0.1 and seen[-1] > seen[best]
    assert not model.training


def test_channel_statistics_are_physical_mean_and_std():
    images = np.arange(2 * 2 * 4, dtype=float).reshape(2, 2, 2, 2) * 10.0
    stats = channel_statistics(images)
    np.testing.assert_allclose(
        stats[0], [15, 55, np.std([0, 10, 20, 30]), np.std([40, 50, 60, 70])]
    )


def _test_rows(dataset):
    ds = open_dataset(dataset)
    eve = ds.eve.values
    ok = ds.valid.values & np.isfinite(eve).all(axis=1) & (eve > 0).all(axis=1)
    return ds, np.flatnonzero(ok & (ds.split.values == "test"))


def test_every_arm_on_the_same_test_rows(virtual_eve_run, dataset, tiny_config):
    """predictions.csv holds every arm and seed on the same test rows; metrics follow from it."""
    result, out = virtual_eve_run
    table = pd.read_csv(out / "predictions.csv", parse_dates=["time"])
    ds, test = _test_rows(dataset)
    lines = tiny_config["data"]["eve_lines"]
    seeds = len(tiny_config["protocol"]["seeds"])
    for arm, info in result["arms"].items():
        part = table[(table.arm == arm) & (table.split == "test")]
        assert len(part) == len(test) * info["seeds"]
        assert info["seeds"] == (seeds if info["kind"] in ("fm", "control") else info["seeds"])
        for s, run in part.groupby("seed"):
            assert (run.time.to_numpy() == ds.time.values[test]).all()
            truth = run[[f"true:{x}" for x in lines]].to_numpy()
            np.testing.assert_allclose(truth, ds.eve.values[test], rtol=1e-6)
            value = median_rae(truth, run[[f"pred:{x}" for x in lines]].to_numpy())
            assert value == pytest.approx(info["metrics"]["median_rae"]["per_seed"][s])
    clim = table[(table.arm == "climatology") & (table.split == "test")]
    train = np.flatnonzero(ds.split.values == "train")
    eve = ds.eve.values[train]
    mean = eve[np.isfinite(eve).all(axis=1) & (eve > 0).all(axis=1)].astype(float).mean(axis=0)
    np.testing.assert_allclose(clim[f"pred:{lines[0]}"], mean[0], rtol=1e-6)


def test_the_science_orders_the_arms(virtual_eve_run):
    """Lines are driven by AIA emission: the paper's models beat climatology, and the oracle
    (the noise-free lines) beats every arm, at MEGS-A's noise floor (mean |N(0, 0.3 %)|)."""
    arms = {a: v["metrics"]["median_rae"]["value"] for a, v in virtual_eve_run[0]["arms"].items()}
    assert arms["paper_linear"] < arms["climatology"]
    assert arms["paper"] < arms["climatology"]
    assert arms["oracle"] < min(v for a, v in arms.items() if a != "oracle")
    floor = 100 * 0.003 * np.sqrt(2 / np.pi)
    assert 0.7 * floor < arms["oracle"] < 1.3 * floor, arms["oracle"]


def test_noise_free_lines_are_the_stored_ones_without_noise(task_inputs, dataset, tmp_path):
    """The generator's lines again, from the truth: the stored lines scatter around them by
    MEGS-A's 0.3 % noise alone (unbiased), far less than the lines of a day later; a truth
    without the sample times is refused."""
    import shutil

    from sdofm import SdofmError
    from sdofm.benchmarks.baselines import planted_sun
    from sdofm.benchmarks.runner import Samples
    from sdofm.benchmarks.virtual_eve import VirtualEVE
    from sdofm.sources.sdoml import AIA_CHANNELS
    from sdofm.sources.synthetic.eve_store import noise_free_lines

    ds = open_dataset(dataset)
    stored = ds.eve.values.astype(float)
    rows = np.flatnonzero(np.isfinite(stored).all(axis=1) & (stored > 0).all(axis=1))[::3]
    times = pd.DatetimeIndex(ds.time.values[rows])
    table = pd.read_csv(task_inputs.truth / "aia_disk_mean.csv", index_col=0, parse_dates=True)
    means = table[list(AIA_CHANNELS)].to_numpy(float)[table.index.get_indexer(times)]
    lines = noise_free_lines(planted_sun(task_inputs.truth), times, means)
    pred = np.stack([lines[str(name)] for name in ds.line.values], axis=1)
    ratio = stored[rows] / pred - 1
    assert abs(np.median(ratio)) < 0.001 and 0.002 < ratio.std() < 0.004
    day = table.index.get_indexer(times + pd.Timedelta(days=1))
    ok = day >= 0
    later = noise_free_lines(
        planted_sun(task_inputs.truth),
        times[ok] + pd.Timedelta(days=1),
        table[list(AIA_CHANNELS)].to_numpy(float)[day[ok]],
    )
    shifted = np.stack([later[str(name)] for name in ds.line.values], axis=1)
    assert median_rae(stored[rows][ok], shifted) > 2 * median_rae(stored[rows][ok], pred[ok])

    truth = tmp_path / "truth"
    shutil.copytree(task_inputs.truth, truth)
    table.iloc[::2].to_csv(truth / "aia_disk_mean.csv")
    samples = Samples(
        times.to_numpy(),
        np.full(len(times), "test"),
        stored[rows],
        outputs=[str(n) for n in ds.line.values],
    )
    with pytest.raises(SdofmError, match="no noise-free disk mean at"):
        VirtualEVE._oracle(None, truth / "aia_disk_mean.csv", samples)


def test_virtual_instrument_after_megsa(virtual_eve_run, dataset, synthetic_mirror):
    """After MEGS-A ends (2011-03-25 in the tiny Sun) every later valid step is predicted by
    every arm and scored against the lines the synthetic Sun would have had MEGS-A measure."""
    result, out = virtual_eve_run
    after = result["extra"]["after_megsa"]
    ds = open_dataset(dataset)
    last = np.flatnonzero(np.isfinite(ds.eve.values).all(axis=1))[-1]
    later = np.flatnonzero(ds.valid.values)
    later = later[later > last]
    assert after["steps"] == len(later) > 4
    assert pd.Timestamp(after["start"]) >= pd.Timestamp("2011-03-25")
    table = pd.read_csv(out / "predictions.csv", parse_dates=["time"])
    fm = table[(table.split == "extra") & (table.arm == "fm_head")]
    assert len(fm) == len(later) * 3
    truth = pd.read_csv(
        synthetic_mirror / "ground_truth" / "eve_after_megsa.csv", parse_dates=["time"]
    )
    ref = truth.set_index("time")["Fe IX"].reindex(
        fm.time[fm.seed == 0], method="nearest", tolerance=pd.Timedelta("1h")
    )
    assert np.isfinite(ref).all()
    assert set(after["median_rae"]) == set(result["arms"])
    assert after["median_rae"]["oracle"] < after["median_rae"]["climatology"]
