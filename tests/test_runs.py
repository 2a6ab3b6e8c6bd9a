"""Named runs: a task's arms trained in saved groups (baselines once, FM arms per run), then
scored together; sweeps chosen on validation only."""

import copy
import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from sdofm import SdofmError
from sdofm.benchmarks import TASKS
from sdofm.benchmarks import runner as rn
from sdofm.benchmarks.arm_groups import ArmGroup, read_group, write_group
from sdofm.config import pretrain_runs, validate_block
from tests.conftest import ROOT, run_tiny_task

TASKS_RUN = sorted(yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["benchmarks"])
TASK = "label_efficiency"  # its curves (Task.fractions) are trained in the groups too
# (tasks whose extra() and figures() read what their arms() set up, such as f107, are scored
# through `sdofm score`, which builds the arms untrained: the workflow test covers them)


def _params(tiny_config):
    params = validate_block(copy.deepcopy(tiny_config["benchmarks"][TASK]), "benchmarks", TASK)
    return params | {"protocol": copy.deepcopy(tiny_config["protocol"])}


@pytest.fixture(scope="module")
def groups(tmp_path_factory, tiny_config, task_inputs):
    """The FM group of run 'a', the baselines (saved and read back) and the one-job result."""
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs")
    params = _params(tiny_config)
    task, samples = rn.prepare(TASKS[TASK], task_inputs, params)
    # named as the one-job run names its run: after the checkpoint's folder
    run = task_inputs.checkpoint.parent.name
    write_group(rn.fm_group(task, samples, run), out / "arms" / "a.nc")
    baseline_inputs = dataclasses.replace(task_inputs, embeddings=None, checkpoint=None)
    task_b, samples_b = rn.prepare(TASKS[TASK], baseline_inputs, params)
    write_group(rn.baseline_group(task_b, samples_b), out / "arms" / "baselines.nc")
    single = run_tiny_task(TASK, tiny_config, task_inputs, out / "single")
    return out, params, single, run


def _comparable(result):
    return {k: v for k, v in result.items() if k != "provenance"}


def test_saved_groups_score_as_the_single_job(groups, task_inputs):
    out, params, single, _ = groups
    inputs = dataclasses.replace(task_inputs, embeddings=None, checkpoint=None)
    task, samples = rn.prepare(TASKS[TASK], inputs, params)
    loaded = [read_group(out / "arms" / f"{g}.nc") for g in ("a", "baselines")]
    scored = rn.score_groups(task, samples, loaded, out / "scored")
    assert _comparable(scored) == _comparable(single)
    assert set(scored["extra"]["curves"]) == {"10", "100"}
    assert scored["provenance"]["checkpoint_sha256"] == single["provenance"]["checkpoint_sha256"]
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "scored" / "predictions.csv"),
        pd.read_csv(out / "single" / "predictions.csv"),
    )


def test_two_runs_share_the_baselines_and_pair_every_fm_head(groups, task_inputs):
    """Run 'b' is the first run again under another name: its FM head's predictions equal the
    first's, so their difference is 0 (its interval only the seeds' spread, each arm drawing
    its own seed per resample) and not distinguishable; both runs face every baseline."""
    out, params, _, run = groups
    a, base = (read_group(out / "arms" / f"{g}.nc") for g in ("a", "baselines"))
    b = copy.deepcopy(a)
    b.name = "b"
    inputs = dataclasses.replace(task_inputs, embeddings=None, checkpoint=None)
    task, samples = rn.prepare(TASKS[TASK], inputs, params)
    empty = np.array([], str)
    temporal = ArmGroup("t", empty, empty, {}, {}, meta={"not_applicable": "takes 4 frames"})
    write_group(temporal, out / "arms" / "t.nc")
    temporal = read_group(out / "arms" / "t.nc")
    result = rn.score_groups(task, samples, [a, b, temporal, base], out / "two")
    assert result["extra"]["not_applicable"] == {"t": "takes 4 frames"}
    assert "t" not in result["runs"]
    assert {"fm_head", "random_init", "fm_head@b", "random_init@b"} <= set(result["arms"])
    assert set(result["runs"]) == {run, "b"}
    assert result["runs"]["b"]["fm"] == "fm_head@b"
    assert result["runs"]["b"]["control"] == "random_init@b"
    head = result["headline"]["metric"]
    same = result["runs"]["b"]["differences"]["fm_head"][head]
    assert same["value"] == 0 and same["ci"][0] < 0 < same["ci"][1]
    assert same["verdict"] == "not distinguishable"
    for metric, est in result["arms"]["fm_head@b"]["metrics"].items():
        first = result["arms"]["fm_head"]["metrics"][metric]
        assert (est["value"], est["per_seed"]) == (first["value"], first["per_seed"])
    for name in (run, "b"):
        assert set(base.arms) <= set(result["runs"][name]["differences"])
    assert result["runs"][run]["headline"] == {
        k: result["arms"]["fm_head"]["metrics"][head][k] for k in ("value", "ci")
    }
    assert "fm_head@b" in result["extra"]["curves"]["10"]["arms"]


def test_a_run_without_some_samples_drops_them_for_every_arm(groups, task_inputs):
    """A run whose backbone left test samples unembedded (a temporal MAE has no stack for the
    first frames) is scored with every other arm on the samples it has, the count reported; a
    group of other samples or another split is refused in one line, writing nothing."""
    out, params, _, run = groups
    a, base = (read_group(out / "arms" / f"{g}.nc") for g in ("a", "baselines"))
    inputs = dataclasses.replace(task_inputs, embeddings=None, checkpoint=None)
    task, samples = rn.prepare(TASKS[TASK], inputs, params)
    test = np.flatnonzero(a.split == "test")[:3]
    a.split = a.split.copy()
    a.split[test] = "none"  # as the arms job marks samples its backbone did not embed
    scored = rn.score_groups(task, samples, [a, base], out / "subset")
    assert scored["extra"]["rows_without_embedding"] == {run: 3}
    assert scored["split"]["test"] == int(np.sum(samples.split == "test")) - 3
    assert scored["arms"]["climatology"]["metrics"]  # the baselines scored on the same rows
    table = pd.read_csv(out / "subset" / "predictions.csv")
    assert not set(pd.to_datetime(samples.times[test])) & set(pd.to_datetime(table["time"]))

    shifted = read_group(out / "arms" / "a.nc")
    shifted.times = (pd.to_datetime(shifted.times) + pd.Timedelta(hours=1)).astype(str).to_numpy()
    other_split = read_group(out / "arms" / "a.nc")
    other_split.split = np.where(other_split.split == "val", "test", other_split.split)
    for bad in (shifted, other_split):
        with pytest.raises(SdofmError, match=f"arm group '{run}' predicts .* not among the"):
            rn.score_groups(task, samples, [bad, base], out / "refused")
    assert not (out / "refused" / "metrics.json").exists()
    with pytest.raises(SdofmError, match="needs the baselines group"):
        rn.score_groups(task, samples, [read_group(out / "arms" / "a.nc")], out / "refused")


def test_a_file_that_is_no_arm_group_is_one_line(tmp_path):
    import xarray as xr

    xr.Dataset({"x": ("t", np.arange(3))}).to_netcdf(tmp_path / "x.nc", engine="h5netcdf")
    with pytest.raises(SdofmError, match="is not an arm group written by"):
        read_group(tmp_path / "x.nc")


def _jobs(output: str) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a Snakemake dry run lists."""
    jobs = set()
    for block in re.split(r"^(?:local)?rule ", output, flags=re.M)[1:]:
        rule = block.split(":", 1)[0].strip()
        found = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        jobs.add((rule, found.group(1).strip() if found else ""))
    return jobs


@pytest.mark.workflow
def test_the_compare_preset_on_the_tiny_run(finished_run, tmp_path):
    """config/compare.yaml over the tiny run: the MAE run is the tiny run's (reused); the
    temporal MAE and the VAE are pretrained, embedded and benchmarked beside it, the baselines
    never retrained; every report and the summary name every run (the temporal MAE as not
    applicable to single-image tasks); changing the VAE's setting reruns only its jobs (dry run).
    """
    import shutil

    from tests.conftest import TINY, snakemake

    work = tmp_path / "work"
    shutil.copytree(finished_run, work, symlinks=True)
    preset = yaml.safe_load((ROOT / "config" / "compare.yaml").read_text())["pretrain"]["runs"]
    first, temporal, vae = preset
    assert yaml.safe_load(TINY.read_text()).get("pretrain", {}).get("backbone", first) == first

    def config(beta: float):
        text = yaml.safe_load(TINY.read_text())
        text["pretrain"]["runs"] = copy.deepcopy(preset)
        text["pretrain"]["runs"][vae]["beta"] = beta
        path = tmp_path / f"compare{beta}.yaml"
        path.write_text(yaml.safe_dump(text, sort_keys=False))  # the runs in the preset's order
        return path

    run = snakemake(work, "all", configfile=config(preset[vae].get("beta", 1.0)))
    assert run.returncode == 0, run.stderr[-3000:]
    for name in (temporal, vae):
        assert (work / "results" / "pretrain" / name / "model.ckpt").exists()
    for task in TASKS_RUN:
        html = (work / "results" / task / "report.html").read_text()
        assert f">{vae}<" in html and f">{first}<" in html, task  # the arms table's run column
        assert "Traceback" not in html, task
        assert (work / "results" / task / "arms" / "baselines.nc").stat().st_mtime == (
            finished_run / "results" / task / "arms" / "baselines.nc"
        ).stat().st_mtime, f"{task}: the baselines were retrained for a new run"
        single = TASKS[task].single_frame
        metrics = json.loads((work / "results" / task / "metrics.json").read_text())
        assert (temporal in metrics["extra"].get("not_applicable", {})) == single, task
        assert set(metrics["runs"]) == {first, vae} | ({temporal} if not single else set())
    summary = (work / "results" / "summary" / "report.html").read_text()
    assert "Runs × tasks" in summary and "n/a" in summary
    assert all(f">{name}<" in summary for name in preset)

    dry = snakemake(work, "-n", "all", configfile=config(0.5))
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = _jobs(dry.stdout + dry.stderr)
    rules = {rule for rule, _ in jobs}
    assert {"pretrain_backbone", "train_arms", "run_benchmark", "render_summary"} <= rules
    assert "train_baselines" not in rules and "build_dataset" not in rules
    for rule, wildcards in jobs:
        assert f"run={first}" not in wildcards and f"run={temporal}" not in wildcards, rule
        if rule in ("pretrain_backbone", "embed_month", "embed_times", "train_arms"):
            assert f"run={vae}" in wildcards, (rule, wildcards)


def _planted(tmp_path, points, validation, test, *, higher_is_better=False):
    """A results folder whose f107 metrics.json gives each sweep point a validation and a test
    headline (RMSE: lower is better)."""
    from sdofm.benchmarks.result import write_json

    runs = {
        p: {"validation": v, "headline": {"value": t, "ci": [t, t]}}
        for p, v, t in zip(points, validation, test, strict=True)
    }
    write_json(
        {"headline": {"higher_is_better": higher_is_better}, "runs": runs},
        tmp_path / "f107" / "metrics.json",
    )
    return tmp_path


def test_the_sweep_chooses_on_validation_and_ignores_a_better_test_score(tmp_path):
    from snakemake.utils import Paramspace

    from sdofm.sweep import sweep_points, sweep_table

    points = sweep_points({"grid": {"mask_ratio": [0.5, 0.75, 0.9]}})
    names = list(Paramspace(points, filename_params="*").instance_patterns)
    assert names == ["mask_ratio~0.5", "mask_ratio~0.75", "mask_ratio~0.9"]
    # the second point is best on validation; the third has a far better (planted) test score
    results = _planted(tmp_path, names, [9.0, 5.0, 7.0], [8.0, 6.0, 0.1])
    table = sweep_table(points, names, "f107", results)
    assert table.loc[table["chosen"], "run"].tolist() == ["mask_ratio~0.75"]
    assert table["test headline"].tolist() == [8.0, 6.0, 0.1]  # shown, not used
    higher = _planted(
        tmp_path / "r2", names, [0.1, 0.3, 0.2], [0.1, 0.2, 0.9], higher_is_better=True
    )
    table = sweep_table(points, names, "f107", higher)
    assert table.loc[table["chosen"], "run"].tolist() == ["mask_ratio~0.75"]


@pytest.mark.workflow
def test_a_three_point_sweep_runs_on_the_tiny_run(finished_run, tmp_path):
    """A grid of three mask ratios over the tiny run, chosen on the pretraining probe: three
    pretraining jobs, each with its point's setting; the table scores each point with its own
    probe and marks the best; the data and the baselines are not rebuilt."""
    import shutil

    import torch

    from tests.conftest import TINY, snakemake

    work = tmp_path / "work"
    shutil.copytree(finished_run, work, symlinks=True)
    ratios = [0.5, 0.75, 0.9]
    config = tmp_path / "sweep.yaml"
    sweep = {"sweep": {"grid": {"mask_ratio": ratios}, "select": "probe"}}
    config.write_text(yaml.safe_dump(yaml.safe_load(TINY.read_text()) | sweep))
    run = snakemake(work, "results/sweep/sweep.csv", configfile=config)
    assert run.returncode == 0, run.stderr[-3000:]
    ran = _jobs(run.stdout + run.stderr)
    assert {r for r, _ in ran} == {"pretrain_backbone", "select_sweep"}, ran
    table = pd.read_csv(work / "results" / "sweep" / "sweep.csv")
    assert table["run"].tolist() == [f"mask_ratio~{r}" for r in ratios]
    assert table["mask_ratio"].tolist() == ratios
    for run_name, ratio, score in table[["run", "mask_ratio", "selection score"]].values:
        pretrain = work / "results" / "pretrain" / run_name
        ckpt = torch.load(pretrain / "model.ckpt", map_location="cpu", weights_only=False)
        assert ckpt["hyper_parameters"]["config"]["mask_ratio"] == ratio
        probe = json.loads((pretrain / "summary.json").read_text())["final_probe_r2"]
        assert score == pytest.approx(probe)
    assert table["chosen"].sum() == 1
    assert table["selection score"].idxmax() == table["chosen"].idxmax()


def test_random_sweep_points_are_seeded_and_in_range():
    from sdofm.sweep import sweep_points

    block = {
        "random": {
            "draws": 5,
            "seed": 3,
            "space": {
                "learning_rate": {"low": 1e-4, "high": 1e-2},
                "max_epochs": {"low": 1, "high": 3},
                "backbone": ["mae_tiny", "mae_small"],
            },
        }
    }
    a, b = sweep_points(block), sweep_points(block)
    pd.testing.assert_frame_equal(a, b)
    assert a["learning_rate"].between(1e-4, 1e-2).all()
    assert set(a["max_epochs"]) <= {1, 2, 3} and a["max_epochs"].dtype.kind == "i"
    assert set(a["backbone"]) <= {"mae_tiny", "mae_small"}
    other = sweep_points(block | {"random": block["random"] | {"seed": 4}})
    assert not a.equals(other)


def test_a_bad_sweep_is_one_line(tiny_config):
    from sdofm.config import pretrain_runs
    from sdofm.sweep import sweep_runs

    runs = pretrain_runs(tiny_config["pretrain"])
    config = tiny_config | {"sweep": {"grid": {"mask_ratio": [0.5, 2]}}}
    with pytest.raises(SdofmError, match="sweep point mask_ratio~2: .*pretrain.mask_ratio"):
        sweep_runs(config, runs, ["mask_ratio~0.5", "mask_ratio~2"])
    config = tiny_config | {"sweep": {"grid": {"mask_ratio": [0.5]}, "select": "f10.7"}}
    with pytest.raises(SdofmError, match="'f10.7' is neither 'probe' nor a task"):
        sweep_runs(config, runs, ["mask_ratio~0.5"])


def test_the_slurm_profile_submits_the_sweep_points_as_independent_jobs(tmp_path):
    from tests.test_slurm_submit import dry_run

    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({"sweep": {"grid": {"mask_ratio": [0.5, 0.75, 0.9]}}}))
    out = dry_run(
        "--profile", "slurm", "--configfile", str(config), "-d", str(tmp_path / "w"),
        "results/sweep/sweep.csv",
    )  # fmt: skip
    jobs = [b for b in re.split(r"^rule ", out, flags=re.M) if b.startswith("pretrain_backbone:")]
    runs = sorted(re.search(r"wildcards: run=(\S+)", j).group(1) for j in jobs)
    assert runs == ["mask_ratio~0.5", "mask_ratio~0.75", "mask_ratio~0.9"]
    for job in jobs:  # each needs only the data set: nothing orders them, a cluster runs all
        assert re.search(r"^\s+input: results/data/dataset.zarr$", job, re.M), job


def test_a_sweep_over_patch_size_builds_each_points_network(tiny_config):
    """patch_size is a pretrain key a sweep may vary: each point's network has its patches; a
    size that does not divide the images is refused with the config, before any job."""
    from sdofm.models import backbone_kwargs, build_backbone
    from sdofm.sweep import sweep_runs

    config = copy.deepcopy(tiny_config)
    size = config["data"]["image_size"]
    config["sweep"] = {"grid": {"patch_size": [size // 8, size // 4]}}
    runs = sweep_runs(config, pretrain_runs(config["pretrain"]), ["p0", "p1"])
    nets = [
        build_backbone(r["backbone"], **backbone_kwargs(r, img_size=size, in_chans=2))
        for r in runs.values()
    ]
    assert [n.patch_size for n in nets] == [size // 8, size // 4]
    config["sweep"] = {"grid": {"patch_size": [size // 8, size - 1]}}
    with pytest.raises(SdofmError, match=f"does not divide data.image_size {size}"):
        sweep_runs(config, pretrain_runs(config["pretrain"]), ["p0", "p1"])
