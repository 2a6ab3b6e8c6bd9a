"""Label efficiency: contiguous label subsets, and curves of every arm under the protocol."""

import copy
import dataclasses

import numpy as np
import pytest

from sdofm.benchmarks.inputs import Context
from sdofm.benchmarks.label_efficiency import LabelEfficiency
from sdofm.benchmarks.protocol import label_subset
from sdofm.config import validate_block
from tests.conftest import run_tiny_task


def test_label_subsets_are_contiguous_blocks_at_spread_starts():
    rows = np.arange(100, 300)
    blocks = [label_subset(rows, 10, r, 3) for r in range(3)]
    assert all(len(b) == 20 and (np.diff(b) == 1).all() for b in blocks)
    assert [b[0] for b in blocks] == [100, 190, 280]  # start, middle, end of the period
    assert len(label_subset(rows, 0.1, 0, 3)) == 2  # never fewer than two labels
    np.testing.assert_array_equal(label_subset(rows, 100, 2, 3), rows)


def _params(tiny_config):
    block = copy.deepcopy(tiny_config["benchmarks"]["label_efficiency"])
    params = validate_block(block, "benchmarks", "label_efficiency")
    return params | {"protocol": tiny_config["protocol"]}


@pytest.fixture(scope="module")
def curves_run(tmp_path_factory, tiny_config, task_inputs):
    out = tmp_path_factory.mktemp("label_efficiency")
    return run_tiny_task("label_efficiency", tiny_config, task_inputs, out)


def test_every_arm_at_every_fraction(curves_run, tiny_config):
    curves = curves_run["extra"]["curves"]
    fractions = tiny_config["benchmarks"]["label_efficiency"]["fractions_percent"]
    percents = [f"{p:g}" for p in fractions]
    assert sorted(curves, key=float) == percents
    arms = {"fm_head", "random_init", "ridge_channel_stats", "cnn_from_scratch", "climatology"}
    arms |= {"oracle"}
    assert set(curves_run["arms"]) == arms
    n = [curves[p]["n_train"] for p in percents]
    assert n == sorted(n) and n[-1] == curves_run["split"]["train"] and n[0] < n[-1] / 5
    for p in percents:
        assert set(curves[p]["arms"]) == arms
        assert set(curves[p]["differences"]) == arms - {"fm_head"}
    low = curves[percents[0]]["arms"]
    # Below 100 % every arm, deterministic ones too, runs once per seed on its own block.
    for arm in arms:
        assert len(low[arm]["median_rae"]["per_seed"]) == len(tiny_config["protocol"]["seeds"])
    assert len(set(np.round(low["climatology"]["median_rae"]["per_seed"], 9))) > 1
    assert curves_run["arms"]["climatology"]["seeds"] == 1  # at 100 %: one deterministic fit


def test_the_classical_model_is_a_real_opponent(curves_run):
    """Ridge on channel statistics beats climatology: the FM head has a strong arm to beat."""
    arms = curves_run["arms"]
    assert (
        arms["ridge_channel_stats"]["metrics"]["median_rae"]["value"]
        < (arms["climatology"]["metrics"]["median_rae"]["value"])
    )


def test_the_oracle_is_flat_and_the_ceiling(curves_run, tiny_config, task_inputs):
    """The oracle needs no labels: the same score at every fraction, at or below every arm's
    error at that fraction; without --truth it is absent."""
    curves = curves_run["extra"]["curves"]
    oracle = [c["arms"]["oracle"]["median_rae"] for c in curves.values()]
    assert all(np.allclose(o["per_seed"], oracle[0]["value"]) for o in oracle)
    for c in curves.values():
        rae = {a: v["median_rae"]["value"] for a, v in c["arms"].items()}
        assert rae["oracle"] <= min(rae.values())
    task = LabelEfficiency(
        Context.open(dataclasses.replace(task_inputs, truth=None), _params(tiny_config))
    )
    assert "oracle" not in task.arms(task.samples())
