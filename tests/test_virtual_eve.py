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
    """Lines are driven by AIA emission: the paper's models and the oracle beat climatology,
    and the oracle (noise-free disk means) is at least as good as the image models."""
    arms = {a: v["metrics"]["median_rae"]["value"] for a, v in virtual_eve_run[0]["arms"].items()}
    assert arms["paper_linear"] < arms["climatology"]
    assert arms["paper"] < arms["climatology"]
    assert arms["oracle"] < arms["climatology"]
    assert arms["oracle"] <= 1.2 * min(arms["paper"], arms["paper_linear"])


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
