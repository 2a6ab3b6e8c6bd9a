"""truth_probe: planted targets, probes that find (only) what is there, kept checkpoints."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import r2_score

from sdofm import SdofmError
from sdofm.benchmarks.baselines import attentive_arm, ridge_arm
from sdofm.benchmarks.metrics import angular_error, mean_r2, on_column, r2
from sdofm.benchmarks.runner import Fit, TaskInputs, run_task
from sdofm.benchmarks.truth_probe import (
    TruthProbe,
    flares_in_progress,
    patch_statistics,
    planted_targets,
)
from sdofm.config import check_task, runnable_tasks
from sdofm.training.kept import KEPT_DIR, kept_checkpoints, kept_steps
from tests.conftest import run_tiny_task

T0 = pd.Timestamp("2011-06-01")


def _region(rid, lat, lon, flux, complexity):
    """A region at its peak at T0 (emerged 3 days before: growth 1), placed at ``lon`` then."""
    from sdofm.sources.synthetic.sun import EARTH_ORBIT_DEG_PER_DAY, snodgrass_rate

    start_lon = lon - 3 * (float(snodgrass_rate(lat)) - EARTH_ORBIT_DEG_PER_DAY)
    return {
        "region_id": rid,
        "emergence": T0 - pd.Timedelta(days=3),
        "latitude_deg": lat,
        "longitude_deg": start_lon,
        "tilt_deg": 5.0,
        "flux_mx": flux,
        "separation_deg": 2.0,
        "lifetime_days": 10.0,
        "polarity": 1.0,
        "complexity": complexity,
    }


def test_planted_targets_count_only_visible_regions_and_locate_the_largest():
    regions = pd.DataFrame(
        [
            _region(0, 12.0, -30.0, 5e21, 1),
            _region(1, -20.0, 40.0, 2e21, 3),  # visible, delta
            _region(2, 15.0, 130.0, 9e21, 3),  # behind the limb: neither largest nor delta
            _region(3, 10.0, 10.0, 5e19, 1),  # below min_flux
        ]
    )
    y = planted_targets(regions, [T0], min_flux=1e20, delta=3)[0]
    assert y[0] == 2
    assert y[1] == pytest.approx(np.log10(5e21))
    assert y[2:4] == pytest.approx([12.0, -30.0], abs=1e-6)
    assert y[4] == 1.0
    assert planted_targets(regions.iloc[[0, 2]], [T0], min_flux=1e20, delta=3)[0, 4] == 0.0
    assert np.isnan(planted_targets(regions.iloc[[2]], [T0], min_flux=1e20, delta=3)).all()


def test_flare_location_only_while_a_front_side_flare_is_in_progress():
    flares = pd.DataFrame(
        {
            "start_time": ["2011-06-01T00:00", "2011-06-01T00:10", "2011-06-02T00:00"],
            "end_time": ["2011-06-01T01:00", "2011-06-01T00:40", "2011-06-02T01:00"],
            "peak_flux": [1e-5, 1e-6, 1e-4],
            "latitude_deg": [10.0, -5.0, 20.0],
            "longitude_deg": [30.0, -60.0, 120.0],
            "front_side": [True, True, False],
        }
    )
    times = pd.DatetimeIndex(["2011-06-01T00:30", "2011-06-01T03:00", "2011-06-02T00:30"])
    loc = flares_in_progress(flares, times)
    assert loc[0] == pytest.approx([10.0, 30.0])  # the larger of the two in progress
    assert np.isnan(loc[1:]).all()  # none in progress; the back-side one is not seen


def test_metrics_match_sklearn_and_geometry():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    p[:, 0] = y[:, 0] + 0.1 * p[:, 0]
    for k in range(3):
        assert on_column(r2, k)(y, p) == pytest.approx(r2_score(y[:, k], p[:, k]))
    expected = np.mean([r2_score(y[:, k], p[:, k]) for k in (0, 1)])
    assert mean_r2([0, 1])(y, p) == pytest.approx(expected)
    assert np.isnan(r2(np.ones(4), np.arange(4.0)))
    assert angular_error(
        np.array([[0.0, 0.0], [0.0, 0.0]]), np.array([[0.0, 90.0], [90.0, 0]])
    ) == (pytest.approx(90.0))


def _probe_r2(x, y, train, val, test):
    f = Fit({"train": train, "val": val}, y, 0, torch.device("cpu"))
    return mean_r2([0, 1])(y[test], ridge_arm(x)(f)(test))


def test_a_probe_recovers_a_planted_variable_and_not_from_noise():
    """Embeddings that carry the targets (linearly mixed into 64 noisy features) give R² near 1;
    embeddings of noise give nothing on held-out rows, however many features they have."""
    rng = np.random.default_rng(1)
    n = 400
    y = np.column_stack([rng.poisson(6, n).astype(float), rng.normal(21.5, 0.3, n)])
    mixing = rng.normal(size=(2, 64))
    carrying = (y - y.mean(0)) / y.std(0) @ mixing + 0.1 * rng.normal(size=(n, 64))
    noise = rng.normal(size=(n, 64))
    rows = np.arange(n)
    train, val, test = rows[:250], rows[250:320], rows[320:]
    assert _probe_r2(carrying, y, train, val, test) > 0.95
    assert _probe_r2(noise, y, train, val, test) < 0.1


def test_patch_statistics_are_each_patchs_and_need_a_tiling():
    images = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    stats = patch_statistics(images, (2, 3))
    assert stats.shape == (2, 12, 2, 3)
    patch = images[1, 2, 2:4, 4:6]  # sample 1, channel 2, patch row 1, column 2
    expected = [float(v) for v in (patch.mean(), patch.std(), patch.max(), patch.min())]
    assert [float(stats[1, 2 + 3 * k, 1, 2]) for k in range(4)] == pytest.approx(expected)
    with pytest.raises(SdofmError, match="do not tile into a 3x3 token grid"):
        patch_statistics(images, (3, 3))


def test_the_attentive_probe_locates_a_token_that_pooling_cannot():
    """One bright token at a random place on an 8x8 grid of noise: the attentive probe says
    where it is (R² > 0.9 on held-out rows); a ridge on the mean token cannot (R² < 0.1)."""
    rng = np.random.default_rng(3)
    n, d, g = 500, 16, 8
    grid = rng.normal(size=(n, d, g, g)).astype(np.float32)
    where = rng.integers(0, g, size=(n, 2))
    grid[np.arange(n), 0, where[:, 0], where[:, 1]] += 6.0
    y = where.astype(float)
    rows = np.arange(n)
    train, val, test = rows[:300], rows[300:380], rows[380:]
    f = Fit({"train": train, "val": val}, y, 0, torch.device("cpu"), {"lr": 3e-3})
    torch.manual_seed(0)  # as the runner seeds every arm (seeds 0-7 all reach R² >= 0.97)
    probe = attentive_arm(torch.from_numpy(grid), epochs=150, patience=20)(f)
    assert mean_r2([0, 1])(y[test], probe(test)) > 0.9
    assert _probe_r2(grid.mean(axis=(2, 3)), y, train, val, test) < 0.1


def test_kept_steps_are_evenly_spaced_from_the_start():
    assert kept_steps(3, 300) == [0, 100, 200]
    assert kept_steps(0, 300) == []
    assert kept_steps(5, 3) == [0, 1, 2]


def test_real_data_leaves_the_truth_task_out():
    config = {"sources": {"sdoml": "s3://bucket/"}, "benchmarks": {"f107": {}, "truth_probe": {}}}
    assert runnable_tasks(config) == ["f107"]
    config["sources"]["sdoml"] = "synthetic"
    assert runnable_tasks(config) == ["f107", "truth_probe"]
    with pytest.raises(SdofmError, match="only on the synthetic Sun"):
        check_task("truth_probe", ["f107"])


def test_pretraining_keeps_checkpoints_at_the_configured_steps(checkpoint, tiny_config):
    final, kept = kept_checkpoints(checkpoint)
    count = tiny_config["pretrain"]["keep_checkpoints"]
    assert count == 3
    assert [s for s, _ in kept] == kept_steps(count, final) and final > 0
    assert sorted(p.name for p in (checkpoint.parent / KEPT_DIR).iterdir()) == [
        p.name for _, p in kept
    ]
    first = torch.load(kept[0][1], weights_only=True)
    last = torch.load(checkpoint, weights_only=True)
    assert first["global_step"] == 0 and "optimizer_states" not in first  # weights only
    name = next(k for k in first["state_dict"] if k.endswith("weight"))
    assert not torch.equal(first["state_dict"][name], last["state_dict"][name])


def test_a_foreign_kept_checkpoint_is_refused(checkpoint, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(checkpoint.parent, run)
    _, kept = kept_checkpoints(run / "model.ckpt")
    shutil.copy(run / "model.ckpt", run / KEPT_DIR / kept[1][1].name)  # another file, same name
    with pytest.raises(SdofmError, match="is not the checkpoint the pretraining"):
        kept_checkpoints(run / "model.ckpt")
    shutil.copy(checkpoint.parent / KEPT_DIR / kept[1][1].name, run / KEPT_DIR)
    shutil.copy(run / "model.ckpt", run / KEPT_DIR / "step9999999.ckpt")
    with pytest.raises(SdofmError, match="was not kept by the pretraining"):
        kept_checkpoints(run / "model.ckpt")


def test_refuses_to_run_without_the_ground_truth(task_inputs, tiny_config, tmp_path):
    inputs = TaskInputs(
        task_inputs.dataset, task_inputs.embeddings, task_inputs.checkpoint, task_inputs.events
    )
    params = tiny_config["benchmarks"]["truth_probe"] | {"protocol": tiny_config["protocol"]}
    with pytest.raises(SdofmError, match=r"needs the synthetic Sun's ground truth \(--truth\)"):
        run_task(TruthProbe, inputs, tmp_path / "out", params)
    assert not (tmp_path / "out").exists()


def test_truth_probe_runs_every_arm_on_the_tiny_sun(task_inputs, tiny_config, tmp_path):
    result = run_tiny_task("truth_probe", tiny_config, task_inputs, tmp_path)
    arms = result["arms"]
    assert set(arms) == {"fm_head", "random_init", "pooled_stats", "cnn_supervised", "climatology"}
    assert arms["climatology"]["metrics"]["mean_r2"]["value"] <= 0.05
    assert set(result["extra"]["curves"]) == {"10", "100"}
    steps = result["extra"]["pretraining_steps"]
    final, kept = kept_checkpoints(task_inputs.checkpoint)
    assert [c["step"] for c in steps["curve"]] == [s for s, _ in kept] + [final]
    assert steps["curve"][-1]["mean_r2"]["value"] == arms["fm_head"]["metrics"]["mean_r2"]["value"]
    assert result["extra"]["flare_location"]["scored"].startswith(("yes", "no"))
    tokens = result["extra"]["token_probe"]
    assert tokens["scored"] == "yes" and tokens["grid"] == "4x4"  # 32 px, patch 8
    assert set(tokens["arms"]) == {"fm_head", "random_init", "patch_stats"}
    assert len(tokens["arms"]["fm_head"]["mean_r2"]["per_seed"]) == len(
        tiny_config["protocol"]["seeds"]
    )
    assert set(tokens["differences"]) == {"random_init", "patch_stats"}
    for d in tokens["differences"].values():
        assert d["mean_r2"]["verdict"] in ("FM better", "FM worse", "not distinguishable")


@pytest.mark.parametrize("outputs", [0, 1, 5])
def test_ridge_penalty_from_the_svd_path_is_sklearns_choice(outputs):
    """The penalty chosen from one SVD is the one 17 separate scikit-learn fits would choose."""
    from sklearn.linear_model import Ridge

    from sdofm.benchmarks.baselines import RIDGE_ALPHAS, ridge_on_val

    rng = np.random.default_rng(outputs)
    x = rng.normal(size=(240, 30))
    y = x @ rng.normal(size=(30, max(outputs, 1))) + 4 * rng.normal(size=(240, max(outputs, 1)))
    y = y[:, 0] if outputs == 0 else y
    train, val = np.arange(120), np.arange(120, 180)
    model, alpha = ridge_on_val(x, y, train, val)
    z = (x - model.feature_mean_) / model.feature_std_
    errors = [
        np.mean(
            (Ridge(alpha=a).fit(z[train], y[train]).predict(z[val]).reshape(y[val].shape) - y[val])
            ** 2
        )
        for a in RIDGE_ALPHAS
    ]
    assert alpha == RIDGE_ALPHAS[int(np.argmin(errors))]
    assert model.alpha == alpha
