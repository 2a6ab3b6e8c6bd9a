"""Snakemake end to end on a tiny config in a temporary directory, and its failure modes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from sdofm.benchmarks.result import read_result
from tests.conftest import ROOT, TINY, snakemake

pytestmark = pytest.mark.workflow


def _tiny_with(tmp_path: Path, **blocks) -> Path:
    config = yaml.safe_load(TINY.read_text())
    for section, values in blocks.items():
        config.setdefault(section, {}).update(values)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


TASKS = sorted(yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["benchmarks"])


def test_the_default_config_runs_every_registered_task():
    from sdofm.benchmarks import TASKS as REGISTERED

    assert sorted(REGISTERED) == TASKS


def test_every_report_is_built_with_every_stage(finished_run):
    results = finished_run / "results"
    for task in TASKS:
        html = (results / task / "report.html").read_text()
        assert "<img" in html, task
        assert "Traceback" not in html, task
        assert 'src="http' not in html, f"{task}: the report must open offline"
        nb = json.loads((results / task / "report.ipynb").read_text())
        errors = [
            o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"
        ]
        assert not errors, task
    summary = (results / "summary" / "report.html").read_text()
    for task in TASKS:
        assert f'href="../{task}/report.html"' in summary
    for rule in ("simulate_sun", "build_dataset", "collect_events"):
        assert (results / "benchmarks" / f"{rule}.tsv").exists()
        assert (results / "logs" / f"{rule}.log").exists()
    for rule in ("pull_sdoml", "build_partition", "embed_month/mae_tiny"):  # one job a month
        assert len(list((results / "benchmarks" / rule).glob("2011-0?.tsv"))) == 3, rule
    assert (results / "embeddings" / "mae_tiny.zarr" / ".zmetadata").exists()
    assert not list(results.rglob("*.partial*")), "a temporary output was left behind"


def test_long_jobs_log_progress(finished_run):
    """The pull, the build and pretraining write progress lines (counts, rate, ETA) to their
    logs as they go, one per line, for `tail -f`."""
    logs = finished_run / "results" / "logs"
    pulled = (logs / "pull_sdoml" / "2011-02.log").read_text()
    for kind in ("aia", "hmi"):
        assert re.search(rf"pull {kind}: \d+/\d+ frames \(100%\), [\d.]+frames/s, .* ETA ", pulled)
    build = (logs / "build_partition" / "2011-02.log").read_text()
    assert re.search(r"build 2011-02: 0/\d+ samples \(0%\)", build), build
    assert re.search(r"build 2011-02: (\d+)/\1 samples \(100%\), [\d.]+samples/s", build)
    train = (logs / "pretrain_backbone" / "mae_tiny.log").read_text()
    steps = re.findall(
        r"epoch \d+/2 step (\d+)/(\d+) loss [\d.]+ \| [\d.]+ samples/s \| .* ETA ", train
    )
    assert steps and steps[-1][0] == steps[-1][1], train[-2000:]  # up to the last step
    assert re.search(r"epoch 2/2 val_loss [\d.]+", train)


@pytest.mark.browser
def test_reports_open_cleanly_in_chromium(finished_run):
    """Every report in headless Chromium, offline: no console or page errors, no request off
    the disk, no TeX markup shown raw, every image loads; a full-page screenshot of each lands
    next to it."""
    import os
    import shutil

    from sdofm.reports.browser import check_reports

    if not shutil.which("chromium") and not os.environ.get("SDOFM_REQUIRE_BROWSER"):
        pytest.skip("no Chromium (apt-get install chromium); CI installs it and requires it")
    results = finished_run / "results"
    pages = {
        name: (results / name / "report.html", results / name / "report.png")
        for name in [*TASKS, "summary"]
    }
    findings = check_reports(pages)
    for name, found in findings.items():
        assert found["console_errors"] == [] and found["page_errors"] == [], (name, found)
        assert found["blocked"] == [], (name, found)
        assert found["raw_tex"] == [], (name, found["raw_tex"])  # no MathJax offline
        assert found["images"] >= 1 and found["broken_images"] == [], (name, found)
        png = pages[name][1].read_bytes()
        assert png[:4] == b"\x89PNG" and len(png) > 20_000, name


def test_snakemake_report(finished_run):
    """`snakemake --report` gathers the reports and the pretraining figures in one file."""
    out = finished_run / "results" / "workflow_report.zip"
    run = snakemake(finished_run, "--report", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    import zipfile

    archive = zipfile.ZipFile(out)
    names = archive.namelist()
    # The files are stored under hashed names; the index page names and captions them.
    index = archive.read("workflow_report/report.html").decode()
    for expected in ("Every task in one table", "loss_curve.png", "reconstructions.png"):
        assert expected in index, expected
    assert sum(n.endswith(".png") for n in names) == 3  # loss curve, reconstructions, map
    assert sum(n.endswith("report.html") for n in names) == len(TASKS) + 2  # + summary, index


@pytest.mark.parametrize("task", TASKS)
def test_task_contract(finished_run, task):
    """Every task: metrics.json follows the schema, the protocol's arms are there, and every
    file its report reads is a declared output (asking for a deleted one reruns the task)."""
    result = read_result(finished_run / "results" / task / "metrics.json")
    kinds = {a["kind"] for a in result["arms"].values()}
    assert {"fm", "control", "paper"} <= kinds and kinds & {"trivial", "persistence"}, kinds
    assert result["arms"]["random_init"]["kind"] == "control"
    assert len(result["protocol"]["seeds"]) >= 3
    assert set(result["differences"]) == set(result["arms"]) - {"fm_head"}
    # tiny.yaml's test split is another Sun's time (seed 43): every task tests on it, held out
    suns = {"train": [42], "val": [42], "test": [43], "held_out": True}
    assert result["extra"]["suns"] == suns, result["extra"].get("suns")
    html = (finished_run / "results" / task / "report.html").read_text()
    assert "tested on Sun 43: a Sun <strong>held out whole</strong>" in html
    for name in ("predictions.csv", "samples.nc"):
        path = finished_run / "results" / task / name
        moved = path.rename(path.with_suffix(".bak"))
        try:
            run = snakemake(finished_run, "-n", f"results/{task}/{name}")
            assert f"task={task}" in run.stdout + run.stderr, (task, name)
        finally:
            moved.rename(path)


def test_second_run_has_nothing_to_do(finished_run):
    run = snakemake(finished_run, "-n", "all")
    assert run.returncode == 0
    assert "Nothing to be done" in run.stdout + run.stderr


def test_benchmark_config_change_reruns_only_that_task(finished_run, tmp_path):
    config = _tiny_with(
        tmp_path,
        benchmarks={"virtual_eve": {"max_epochs": 41, "baseline_cnn_epochs": 2}},
    )
    run = snakemake(finished_run, "-n", "all", configfile=config)
    out = run.stdout + run.stderr
    assert "run_benchmark" in out and "render_report" in out
    assert "task=virtual_eve" in out
    for task in TASKS:
        if task != "virtual_eve":
            assert f"task={task}" not in out, f"{task} would rerun"
    for rule in ("pretrain_backbone", "embed_times", "build_dataset", "simulate_sun"):
        assert rule not in out


def test_bad_config_value_is_one_clear_line(tmp_path):
    config = _tiny_with(tmp_path, pretrain={"mask_ratio": 2})
    run = snakemake(tmp_path, configfile=config)
    assert run.returncode != 0
    lines = [ln for ln in run.stderr.splitlines() if "pretrain.mask_ratio" in ln]
    assert len(lines) == 1, run.stderr
    assert not (tmp_path / "results").exists()


def test_missing_input_store_fails_cleanly(tmp_path):
    # (event sources a real run needs, fetched online: only the pull runs here)
    sources = {
        "sdoml": f"file://{tmp_path}/no-such-folder",
        "events": {"flares": "hek", "f107": "lisird"},
    }
    config = _tiny_with(tmp_path, sources=sources)
    run = snakemake(tmp_path, "results/data/dataset.zarr", configfile=config)
    assert run.returncode != 0
    logs = list((tmp_path / "results" / "logs" / "pull_sdoml").glob("2011-0?.log"))
    assert logs, run.stderr[-3000:]
    for log in (p.read_text() for p in logs):  # each month's pull that ran: one line
        assert "no SDOML v2 store at" in log and "no-such-folder" in log
        assert len(log.strip().splitlines()) == 1
    assert not list((tmp_path / "results" / "data" / "sdoml").glob("2011-0?"))
    assert not list((tmp_path / "results").rglob("*.partial*"))


def test_time_range_without_data_fails_cleanly(tmp_path):
    config = _tiny_with(
        tmp_path,
        data={"start": "2013-01-01", "end": "2013-02-01"},
        splits={"val": [["2013-01-10", "2013-01-15"]], "test": [["2013-01-20", "2013-02-01"]]},
    )
    run = snakemake(tmp_path, "results/data/sdoml/2013-01", configfile=config)
    assert run.returncode != 0
    log = (tmp_path / "results" / "logs" / "pull_sdoml" / "2013-01.log").read_text()
    assert "no AIA data" in log
    assert not (tmp_path / "results" / "data" / "sdoml" / "2013-01").exists()
