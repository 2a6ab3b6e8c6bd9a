"""The runner's contract and its refusals, end to end on the tiny stores: planted leaks."""

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from sdofm import SdofmError
from sdofm.benchmarks.protocol import LeakError
from sdofm.benchmarks.result import SCHEMA_PATH, read_result, validate_result
from sdofm.benchmarks.runner import TaskInputs
from sdofm.config import validate_block
from sdofm.io import file_sha256
from tests.conftest import run_tiny_task


def test_metrics_json_follows_the_schema_file(virtual_eve_run, task_inputs, tiny_config):
    result, out = virtual_eve_run
    assert read_result(out / "metrics.json") == result
    assert {"fm_head", "random_init", "paper", "climatology", "oracle"} <= set(result["arms"])
    assert result["arms"]["random_init"]["kind"] == "control"
    assert set(result["differences"]) == set(result["arms"]) - {"fm_head"}
    proto = result["protocol"]
    assert proto["seeds"] == tiny_config["protocol"]["seeds"]
    assert proto["pretraining_intervals"] and proto["iid_ci_width_ratio"] > 0
    for arm in ("fm_head", "random_init", "paper"):
        assert result["arms"][arm]["chosen"]["lr"] in tiny_config["protocol"]["grid"]["lr"]
    prov = result["provenance"]
    assert prov["checkpoint_sha256"] == prov["embeddings_checkpoint_sha256"]
    assert prov["checkpoint_sha256"] == file_sha256(task_inputs.checkpoint)
    broken = copy.deepcopy(result)
    broken["arms"]["fm_head"]["kind"] = "hero"
    with pytest.raises(SdofmError, match="field 'arms.fm_head.kind' breaks result.schema.json"):
        validate_result(broken)
    assert json.loads(SCHEMA_PATH.read_text())["title"]


def _outputs(out):
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


def test_a_store_with_too_small_a_buffer_is_refused_before_training(
    tmp_path, tiny_config, task_inputs
):
    """The tiny store keeps 3 days between splits: a protocol asking for 60 refuses it."""
    with pytest.raises(LeakError, match="fold without its buffer: a val row at .* needs 60"):
        run_tiny_task(
            "virtual_eve", tiny_config, task_inputs, tmp_path / "out", protocol={"buffer_days": 60}
        )
    assert _outputs(tmp_path / "out") == []


@pytest.fixture(scope="module")
def resplit(tmp_path_factory, tiny_config, pulled, checkpoint):
    """The same data rebuilt with its test split inside the backbone's training period, and
    embeddings from the original backbone: a user who changed the split but kept the model."""
    from sdofm.dataset.build import build_dataset
    from sdofm.embeddings.extract import extract_embeddings

    root = tmp_path_factory.mktemp("resplit")
    splits = dict(tiny_config["splits"], val=[["2011-03-15", "2011-03-25"]])
    splits["test"] = [["2011-01-10", "2011-02-01"]]
    build_dataset(pulled, root / "dataset.zarr", {"data": tiny_config["data"], "splits": splits})
    extract_embeddings(root / "dataset.zarr", checkpoint, root / "emb.zarr", tiny_config["embed"])
    return root


def test_test_rows_in_the_pretraining_range_are_refused(
    tmp_path, tiny_config, resplit, task_inputs
):
    inputs = TaskInputs(resplit / "dataset.zarr", resplit / "emb.zarr", task_inputs.checkpoint)
    with pytest.raises(LeakError, match="test rows in the pretraining range: .* 2011-01-10"):
        run_tiny_task("virtual_eve", tiny_config, inputs, tmp_path / "out")
    assert _outputs(tmp_path / "out") == []


def test_embeddings_of_another_backbone_are_refused(tmp_path, tiny_config, task_inputs):
    emb = xr.open_zarr(task_inputs.embeddings).load()
    emb.attrs["checkpoint_sha256"] = "0" * 64
    emb.to_zarr(tmp_path / "emb.zarr", zarr_format=2, consolidated=True)
    inputs = TaskInputs(task_inputs.dataset, tmp_path / "emb.zarr", task_inputs.checkpoint)
    with pytest.raises(SdofmError, match="computed with another checkpoint"):
        run_tiny_task("virtual_eve", tiny_config, inputs, tmp_path / "out")


@pytest.mark.parametrize(
    ("path", "block", "message"),
    [
        (("protocol",), {"seeds": [0, 1]}, "config key 'protocol.seeds': .* is too short"),
        (("protocol",), {"block_days": 0.5}, "config key 'protocol.block_days'"),
        (("protocol",), {"grid": {"momentum": [0.9]}}, "protocol.grid"),
        (("benchmarks", "virtual_eve"), {"head": "deep"}, "'benchmarks.virtual_eve.head'"),
        (("benchmarks", "virtual_eve"), {"epochs": 3}, "benchmarks.virtual_eve"),
    ],
)
def test_task_settings_are_checked_by_the_schema(path, block, message):
    with pytest.raises(SdofmError, match=message):
        validate_block(block, *path)


def test_the_cli_refuses_bad_params_in_one_line(tmp_path, task_inputs):
    params = json.dumps({"head": "deep", "protocol": {}})
    cmd = [sys.executable, "-m", "sdofm.cli", "benchmark", "virtual_eve", "--params", params]
    cmd += ["--dataset", str(task_inputs.dataset), "--embeddings", str(task_inputs.embeddings)]
    cmd += ["--checkpoint", str(task_inputs.checkpoint), "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "benchmarks.virtual_eve.head" in lines[0], done.stderr
    assert np.all([not p.exists() for p in [tmp_path / "out" / "metrics.json"]])
