"""Pretraining: exact resume after a kill, refusal of foreign checkpoints, clear errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from sdofm import SdofmError
from sdofm.training.kept import kept_checkpoints
from sdofm.training.pretrain import hardware, pretrain
from sdofm.training.resume import resume_point
from tests.conftest import checkpoint_weights

RUN = """
import json, sys
from sdofm.training.pretrain import pretrain
print(json.dumps(pretrain(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))))
"""


def _start(dataset, out, params) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUN, str(dataset), str(out), json.dumps(params)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> dict:
    text = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, text
    return json.loads(text.strip().splitlines()[-1]) | {"log": text}


@pytest.fixture(scope="module")
def params(resume_params):
    return resume_params  # 95 training samples in batches of 16: 6 steps an epoch


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, dataset, params):
    out = tmp_path_factory.mktemp("uninterrupted") / "model.ckpt"
    return out, _finish(_start(dataset, out, params))


def test_killed_mid_epoch_resumes_to_the_same_weights(dataset, params, uninterrupted, tmp_path):
    """SIGKILL (a node failure) after a mid-epoch checkpoint; the rerun resumes from it and
    ends with exactly the weights, loss history and probe history of an uninterrupted run."""
    out = tmp_path / "pretrain" / "model.ckpt"
    ckpt_dir = out.parent / "checkpoints"
    step = ckpt_dir / "step.ckpt"
    proc = _start(dataset, out, params)
    deadline = time.time() + 300
    while not step.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # let it write the file completely
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait()
    assert step.exists() and not out.exists()
    # Resume from the mid-epoch checkpoint even if an end-of-epoch one came after it.
    (ckpt_dir / "last.ckpt").unlink(missing_ok=True)
    saved = torch.load(step, map_location="cpu", weights_only=True)
    assert saved["global_step"] % 6 != 0  # mid-epoch: the case Lightning alone gets wrong

    resumed = _finish(_start(dataset, out, params))
    assert f"resuming from {step}" in resumed["log"]
    assert resumed["steps"] == uninterrupted[1]["steps"] == 18
    ref, got = checkpoint_weights(uninterrupted[0]), checkpoint_weights(out)
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    assert not ckpt_dir.exists()  # checkpoints are cleared once done
    ref_dir = uninterrupted[0].parent
    history = pd.read_csv(out.parent / "loss_history.csv")
    pd.testing.assert_frame_equal(history, pd.read_csv(ref_dir / "loss_history.csv"))
    probe = pd.read_csv(out.parent / "probe.csv")
    pd.testing.assert_frame_equal(probe, pd.read_csv(ref_dir / "probe.csv"))
    # Checkpoints kept for truth_probe survive the kill: the same steps and weights.
    (_, kept_ref), (_, kept_got) = kept_checkpoints(uninterrupted[0]), kept_checkpoints(out)
    assert [s for s, _ in kept_got] == [s for s, _ in kept_ref] == [0, 6, 12]
    for (_, a), (_, b) in zip(kept_ref, kept_got, strict=True):
        ref, got = checkpoint_weights(a), checkpoint_weights(b)
        assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_outputs_beside_the_checkpoint(uninterrupted, params):
    """Loss curve, reconstructions, probe history and summary are written with the model."""
    out, summary = uninterrupted
    for name in ("loss_curve.png", "reconstructions.png", "probe.csv", "summary.json"):
        assert (out.parent / name).stat().st_size > 0, name
    probe = pd.read_csv(out.parent / "probe.csv")
    assert list(probe["step"]) == [5, 10, 15, 18]  # every 5 steps and at the end
    errors = pd.read_csv(out.parent / "reconstruction_error.csv")
    assert list(errors["epoch"]) == [0, 1, 2]
    assert summary["precision"] == "32-true" and summary["accelerator"] == "cpu"
    assert summary["final_train_loss"] < summary["first_train_loss"]


def test_checkpoint_of_other_settings_stops_the_run(dataset, params, uninterrupted, tmp_path):
    """A checkpoint of another configuration is neither resumed nor deleted."""
    ckpt_dir = tmp_path / "checkpoints"
    ckpt_dir.mkdir()
    foreign = torch.load(uninterrupted[0], map_location="cpu", weights_only=True)
    foreign["hyper_parameters"]["backbone"] = "mae_small"
    torch.save(foreign, ckpt_dir / "last.ckpt")
    differs = r"differs in: backbone \('mae_small' in the checkpoint, 'mae_tiny' now\)\)"
    with pytest.raises(SdofmError, match=rf"another configuration \({differs}"):
        pretrain(dataset, tmp_path / "model.ckpt", params)
    assert (ckpt_dir / "last.ckpt").exists() and not (tmp_path / "model.ckpt").exists()


def test_unreadable_checkpoint_is_skipped(tmp_path, capsys):
    (tmp_path / "step.ckpt").write_bytes(b"PK\x03\x04 truncated")
    assert resume_point(tmp_path, {"backbone": "mae_tiny"}) is None
    assert "unreadable" in capsys.readouterr().out


def test_nan_loss_stops_with_advice(dataset, params, tmp_path):
    with pytest.raises(SdofmError, match="lower pretrain.learning_rate"):
        pretrain(dataset, tmp_path / "model.ckpt", {**params, "learning_rate": 1e30})
    assert not (tmp_path / "model.ckpt").exists()


def test_gpu_asked_where_none_exists(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SdofmError, match="sees no CUDA GPU.*set pretrain.accelerator"):
        hardware({"accelerator": "gpu", "precision": "auto"})
    assert hardware({"accelerator": "auto", "precision": "auto"}) == {
        "accelerator": "cpu",
        "precision": "32-true",
    }
