"""The protocol's guards and intervals, on hand-made splits and series."""

import numpy as np
import pandas as pd
import pytest

from sdofm.benchmarks import protocol as pr
from sdofm.benchmarks import scoring
from sdofm.benchmarks.metrics import Metric, rmse
from sdofm.benchmarks.runner import Samples

DAYS = pd.date_range("2011-01-01", periods=365, freq="D").values


def _split(train_after_test: bool) -> np.ndarray:
    split = np.full(365, "train", dtype=object)
    split[150:210] = "buffer"
    split[210:230] = "val"
    split[230:300] = "buffer"
    split[300:340] = "test"
    split[340:] = "train" if train_after_test else "buffer"
    return split.astype(str)


def test_split_buffers_pass_and_a_training_tail_after_test_is_refused():
    pr.check_split_buffers(DAYS, _split(False), buffer_days=60)
    with pytest.raises(pr.LeakError, match="fold without its buffer: a test row at 2011-12-06"):
        pr.check_split_buffers(DAYS, _split(True), buffer_days=60)
    expected = "a val row at 2011-07-30 00:00:00 is 61.0 days from a training row; the protocol"
    with pytest.raises(pr.LeakError, match=expected):
        pr.check_split_buffers(DAYS, _split(False), buffer_days=90)


def test_test_rows_inside_the_pretraining_range_are_refused():
    test = DAYS[300:340]
    pr.check_pretraining(test, [["2011-01-01T00:00:00", "2011-05-30T00:00:00"]], "m.ckpt")
    with pytest.raises(pr.LeakError, match="test rows in the pretraining range: 5 test time steps"):
        pr.check_pretraining(test, [["2011-01-01", "2011-11-01"]], "m.ckpt")
    with pytest.raises(pr.LeakError, match="does not record the time range"):
        pr.check_pretraining(test, None, "m.ckpt")


def test_a_choice_on_test_rows_is_refused():
    split = _split(False)
    pr.check_choice_rows(np.arange(210, 230), split, "threshold")
    with pytest.raises(pr.LeakError, match="threshold chosen on test rows"):
        pr.check_choice_rows(np.arange(300, 310), split, "threshold")


def test_test_folds_are_contiguous_segments_of_the_test_split():
    folds = pr.test_folds(DAYS, np.arange(300, 340), 4)
    assert list(np.unique(folds)) == [1, 2, 3, 4]
    assert (np.diff(folds) >= 0).all()
    assert all(abs((folds == k).sum() - 10) <= 1 for k in range(1, 5))


def _ci_width(x: np.ndarray, block_days: float, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    draws = [
        x[i].mean()
        for i in pr.block_resamples(DAYS, block_days=block_days, resamples=2000, rng=rng)
    ]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return hi - lo


def test_block_bootstrap_widens_intervals_of_autocorrelated_errors_only():
    rng = np.random.default_rng(1)
    ar = np.zeros(365)
    for t in range(1, 365):  # AR(1), lag-1 autocorrelation 0.9
        ar[t] = 0.9 * ar[t - 1] + rng.normal()
    ratio = _ci_width(ar, 14) / _ci_width(ar, 1)  # 1-day blocks at daily cadence: iid
    assert ratio > 1.8, ratio
    white = rng.normal(size=365)
    assert 0.75 < _ci_width(white, 14) / _ci_width(white, 1) < 1.3
    assert pr.block_length(DAYS, 14) == 14
    assert pr.block_length(np.repeat(DAYS, 4), 14) == 56  # four draws per day


class _Task:
    metrics = (Metric("rmse", rmse, False, "RMSE"),)
    headline = "rmse"
    threshold_metric = None
    folds = 1


def _score(preds):
    split = np.array(["train"] * 100 + ["val"] * 65 + ["test"] * 200)  # buffers do not matter here
    y = np.random.default_rng(0).normal(size=365)
    samples = Samples(DAYS, split, y)
    full = {a: [np.r_[np.full(165, np.nan), y[165:] + p] for p in r] for a, r in preds.items()}
    proto = pr.Protocol(seeds=(0, 1, 2), bootstrap=400, block_days=7)
    group = scoring.score(_Task, samples, full, proto)["groups"]["all"]
    return scoring.estimates(_Task, group, proto.level)


def test_intervals_carry_seed_variance_and_differences_are_paired():
    noise = np.random.default_rng(2).normal(0, 0.1, 200)
    arms, diffs = _score(
        {
            "fm_head": [noise + b for b in (0.0, 0.5, 1.0)],  # three seeds that disagree
            "same": [noise + 0.5],
            "worse": [noise + 3.0],
        }
    )
    per_seed = arms["fm_head"]["rmse"]["per_seed"]
    lo, hi = arms["fm_head"]["rmse"]["ci"]
    assert lo <= min(per_seed) + 0.02 and hi >= max(per_seed) - 0.02  # the spread of the seeds
    assert arms["fm_head"]["rmse"]["value"] == pytest.approx(np.mean(per_seed))
    assert diffs["worse"]["rmse"]["verdict"] == "FM better"
    assert diffs["same"]["rmse"]["verdict"] == "not distinguishable"
    assert scoring.verdict(0.1, 0.3, higher_is_better=True) == "FM better"
    assert scoring.verdict(0.1, 0.3, higher_is_better=False) == "FM worse"
    assert scoring.verdict(None, None, higher_is_better=False) == "undefined"


def test_the_suns_of_each_split_are_recorded_and_a_shared_sun_is_not_held_out(tmp_path):
    """A test split in a later Sun's time is held out whole; one that reaches back into the
    training Sun is reported as not held out (and real data, without truth, records none)."""
    import json

    settings = {"seed": 7, "start": "2011-01-01", "end": "2012-01-01", "suns": [["2011-10-28", 9]]}
    params = tmp_path / "parameters.json"
    params.write_text(json.dumps({"settings": settings}))
    suns = pr.split_suns(DAYS, _split(False), params)
    assert suns == {"train": [7], "val": [7], "test": [9], "held_out": True}
    settings["suns"] = [["2011-11-15", 9]]  # the test split (28 Oct - 6 Dec) spans both Suns
    params.write_text(json.dumps({"settings": settings}))
    assert pr.split_suns(DAYS, _split(False), params)["test"] == [7, 9]
    assert not pr.split_suns(DAYS, _split(False), params)["held_out"]
    assert pr.split_suns(DAYS, _split(False), None) is None
