"""Fault injection into pretraining and checkpoint loading: hostile checkpoints, resumes under
other settings or numerics, and two runs on one output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from sdofm import SdofmError
from sdofm.cli import main
from sdofm.dataset.loader import open_dataset
from sdofm.models.checkpoint import load_backbone
from sdofm.training.lock import output_lock
from sdofm.training.pretrain import pretrain
from sdofm.training.resume import dataset_identity
from tests.conftest import checkpoint_weights


class _Payload:
    """Unpickling this runs a shell command (what a crafted checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def hostile(tmp_path) -> tuple[Path, Path]:
    """A checkpoint shaped like ours whose unpickling creates ``marker``."""
    marker = tmp_path / "PWNED"
    ckpt = tmp_path / "hostile.ckpt"
    payload = _Payload(marker)
    torch.save(
        {"hyper_parameters": {"net_kwargs": {}, "x": payload}, "state_dict": {}, "epoch": 0},
        ckpt,
    )
    return ckpt, marker


def _one_line_refusal(text: str, ckpt: Path) -> None:
    assert len(text.strip().splitlines()) == 1, text
    assert str(ckpt) in text and "could run code" in text and "posix.system" in text, text


def test_load_backbone_refuses_a_hostile_checkpoint(hostile):
    ckpt, marker = hostile
    with pytest.raises(SdofmError) as err:
        load_backbone(ckpt)
    _one_line_refusal(str(err.value), ckpt)
    assert not marker.exists()


def test_sdofm_embed_refuses_a_hostile_checkpoint(hostile, dataset, tiny_config, capsys):
    ckpt, marker = hostile
    out = ckpt.parent / "embeddings.zarr"
    settings = json.dumps(tiny_config["embed"])
    argv = ["embed", "--dataset", str(dataset), "--checkpoint", str(ckpt), "--out", str(out)]
    assert main([*argv, "--params", settings]) == 1
    err = capsys.readouterr().err
    _one_line_refusal(err, ckpt)
    assert err.startswith("sdofm embed: error:")
    assert not marker.exists() and not out.exists()


def test_benchmark_refuses_a_hostile_checkpoint(
    hostile, dataset, embeddings, tiny_config, monkeypatch, capsys
):
    """The benchmark loads the backbone its embeddings came from: a hostile file in its place
    (with a matching hash, so the load is reached) is refused."""
    import sdofm.benchmarks.inputs as inputs
    from sdofm.embeddings.extract import open_embeddings

    ckpt, marker = hostile
    monkeypatch.setattr(
        inputs, "file_sha256", lambda _: open_embeddings(embeddings).attrs["checkpoint_sha256"]
    )
    params = tiny_config["benchmarks"]["virtual_eve"] | {"protocol": tiny_config["protocol"]}
    out = ckpt.parent / "result.json"
    argv = ["benchmark", "virtual_eve", "--dataset", str(dataset)]
    argv += ["--embeddings", str(embeddings), "--checkpoint", str(ckpt), "--out", str(out)]
    assert main([*argv, "--params", json.dumps(params)]) == 1
    err = capsys.readouterr().err
    _one_line_refusal(err, ckpt)
    assert not marker.exists() and not out.exists()


def test_pretraining_refuses_a_hostile_checkpoint_to_resume(hostile, dataset, tiny_config):
    """A hostile file among the checkpoints of an output stops the run; nothing is run."""
    ckpt, marker = hostile
    out = ckpt.parent / "run" / "model.ckpt"
    (out.parent / "checkpoints").mkdir(parents=True)
    placed = shutil.copy(ckpt, out.parent / "checkpoints" / "last.ckpt")
    with pytest.raises(SdofmError) as err:
        pretrain(dataset, out, dict(tiny_config["pretrain"], max_epochs=1))
    _one_line_refusal(str(err.value), placed)
    assert not marker.exists() and not out.exists()


def test_lightning_resume_loads_tensors_only(hostile, dataset, tiny_config, monkeypatch):
    """Lightning's own load of the resume checkpoint is ``weights_only=True`` too (a file
    swapped after `resume_point` read it). Left unset, Lightning passes ``None`` and torch's
    default decides, which ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` (set here) turns off, as does a
    remote ``ckpt_path``; only an explicit ``True`` holds."""
    import sdofm.training.pretrain as module

    ckpt, marker = hostile
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.setattr(module, "resume_point", lambda *_: ckpt)
    out = ckpt.parent / "run" / "model.ckpt"
    (out.parent / "checkpoints").mkdir(parents=True)
    with pytest.raises(SdofmError) as err:
        pretrain(dataset, out, dict(tiny_config["pretrain"], max_epochs=1))
    _one_line_refusal(str(err.value), ckpt)
    assert not marker.exists() and not out.exists()


# --- resuming under other settings ---------------------------------------------------------


@pytest.fixture
def one_epoch(tiny_config, checkpoint, tmp_path) -> tuple[Path, dict]:
    """An output whose checkpoints/ holds the session's 1-epoch checkpoint, and its settings."""
    out = tmp_path / "run" / "model.ckpt"
    (out.parent / "checkpoints").mkdir(parents=True)
    shutil.copy(checkpoint, out.parent / "checkpoints" / "last.ckpt")
    return out, dict(tiny_config["pretrain"], max_epochs=1)


@pytest.mark.parametrize(
    ("key", "value", "was"),
    [
        ("batch_size", 8, 16),
        ("accumulate_grad_batches", 2, 1),
        ("mask_off_disk", True, False),
        ("precision", "bf16-mixed", "'32-true'"),
        ("compile", True, False),
    ],
)
def test_resume_refuses_other_settings(dataset, one_epoch, key, value, was):
    """A checkpoint of batch 16 is not resumed at batch 8 (nor other accumulation, masking,
    precision or compilation): one line naming the setting, before any training."""
    out, params = one_epoch
    expected = f"differs in: config.{key} ({was} in the checkpoint, {value!r} now)"
    with pytest.raises(SdofmError, match=expected.replace("(", r"\(").replace(")", r"\)")) as err:
        pretrain(dataset, out, {**params, key: value})
    assert len(str(err.value).splitlines()) == 1
    assert (out.parent / "checkpoints" / "last.ckpt").exists() and not out.exists()


def test_resume_refuses_other_thread_count(dataset, one_epoch):
    """Weights differ between 1 and 2 intra-op threads on a CPU: a resume with another count
    is refused."""
    out, params = one_epoch
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        with pytest.raises(SdofmError, match=r"runtime\.intra_op_threads \(\d+ in the checkpoint"):
            pretrain(dataset, out, params)
    finally:
        torch.set_num_threads(threads)


def test_resume_with_harmless_changes(dataset, one_epoch, checkpoint, capsys):
    """Intervals of checkpoints, probes and progress lines, and the loggers, do not change the
    weights: such a checkpoint resumes (here: it is already complete, so the weights stay)."""
    out, params = one_epoch
    changed = {
        "checkpoint_every_n_steps": 3,
        "probe_every_n_steps": 2,
        "progress_every_n_steps": 1,
        "loggers": ["csv", "tensorboard"] if _has_tensorboard() else [],
    }
    summary = pretrain(dataset, out, {**params, **changed})
    assert f"resuming from {out.parent / 'checkpoints' / 'last.ckpt'}" in capsys.readouterr().out
    ref, got = checkpoint_weights(checkpoint), checkpoint_weights(out)
    assert all(torch.equal(ref[k], got[k]) for k in ref) and ref.keys() == got.keys()
    assert summary["steps"] == json.loads((checkpoint.parent / "summary.json").read_text())["steps"]


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def test_dataset_identity_sees_content_not_only_config(dataset):
    """A store rebuilt under the same config from other data (other normalisation statistics)
    is another data set; the same store opened again is the same one."""
    ds = open_dataset(dataset)
    same = dataset_identity(open_dataset(dataset))
    assert dataset_identity(ds) == same
    other = ds.assign(norm_std=ds.norm_std * 1.001)
    assert dataset_identity(other)["fingerprint"] != same["fingerprint"]
    assert dataset_identity(other)["config_hash"] == same["config_hash"]


def test_provenance_records_the_numerics(checkpoint):
    """summary.json and the checkpoint record the thread counts, device and versions."""
    import lightning

    summary = json.loads((checkpoint.parent / "summary.json").read_text())
    prov = summary["provenance"]
    assert prov["intra_op_threads"] == torch.get_num_threads()
    assert prov["inter_op_threads"] == torch.get_num_interop_threads()
    assert prov["torch"] == torch.__version__ and prov["lightning"] == lightning.__version__
    assert prov["device"].startswith("cpu") and prov["world_size"] == 1
    assert prov["dataset"]["config_hash"] and len(prov["dataset"]["fingerprint"]) == 16
    _, hp = load_backbone(checkpoint)
    assert hp["runtime"] == {k: v for k, v in prov.items() if k != "dataset"}
    assert hp["config"]["precision"] == "32-true" and hp["config"]["batch_size"] == 16


# --- two runs on one output ----------------------------------------------------------------

RUN = """
import json, sys
from sdofm.training.pretrain import pretrain
print(json.dumps(pretrain(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))))
"""
HOLD = """
import sys, time
from sdofm.training.lock import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def _wait_for_holder(lock: Path, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if lock.exists() and f"pid {proc.pid} " in lock.read_text():
            return
        time.sleep(0.05)
    pytest.fail(f"{proc.pid} never took {lock}")


def test_second_run_on_the_same_output_stops_at_once(dataset, tiny_config, tmp_path):
    """While a run trains, `sdofm pretrain` on the same output fails at once naming the lock
    and its holder, and leaves the first run's logs alone."""
    out = tmp_path / "run" / "model.ckpt"
    params = json.dumps(dict(tiny_config["pretrain"], max_epochs=1))
    first = subprocess.Popen(
        [sys.executable, "-c", RUN, str(dataset), str(out), params],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    lock = out.parent / "pretrain.lock"
    deadline = time.time() + 300  # until it trains (its logger made the logs folder)
    while not (out.parent / "logs").exists() and time.time() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, first.communicate()[0]
    argv = ["pretrain", "--dataset", str(dataset), "--out", str(out), "--params", params]
    second = subprocess.run(
        [sys.executable, "-m", "sdofm.cli", *argv], capture_output=True, text=True, env=_env()
    )
    first_still_training = first.poll() is None  # the second stopped long before it ended
    text = first.communicate(timeout=600)[0]
    assert second.returncode == 1, second.stderr
    assert len(second.stderr.strip().splitlines()) == 1, second.stderr  # before any import noise
    line = second.stderr.strip()
    assert line.startswith("sdofm pretrain: error:") and str(lock) in line, line
    assert f"pid {first.pid} on {socket.gethostname()}" in line, line
    assert first_still_training and first.returncode == 0, text
    assert lock.read_text() == ""  # released
    metrics = pd.read_csv(out.parent / "logs" / "metrics.csv")
    assert metrics["train_loss_step"].notna().sum() == 6  # every step of the first run


def test_lock_of_a_killed_run_does_not_block(tmp_path):
    """``kill -9`` leaves the lock file behind, but not the lock: the next run takes it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    lock = tmp_path / "pretrain.lock"
    _wait_for_holder(lock, holder)
    held = rf"locked by another run .*pid {holder.pid} on "
    with pytest.raises(SdofmError, match=held), output_lock(tmp_path):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert f"pid {holder.pid} " in lock.read_text()  # stale content, no lock
    with output_lock(tmp_path):
        assert f"pid {os.getpid()} " in lock.read_text()


def test_a_requeue_onto_another_gpu_model_resumes_but_a_cpu_change_does_not():
    """GPU runs compare the device type, not the model (not bit-reproducible anyway); on a
    CPU every setting that enters the arithmetic counts."""
    from sdofm.training.resume import differences

    def record(accelerator, device, threads):
        return {
            "config": {"accelerator": accelerator, "batch_size": 16},
            "runtime": {"device": device, "intra_op_threads": threads},
        }

    a100, h100 = record("gpu", "NVIDIA A100", 8), record("gpu", "NVIDIA H100", 32)
    assert differences(a100, h100) == []
    changed = differences(record("cpu", "cpu (x86_64)", 2), record("cpu", "cpu (x86_64)", 1))
    assert changed == ["runtime.intra_op_threads (2 in the checkpoint, 1 now)"]
    assert differences(record("gpu", "NVIDIA A100", 8), record("cpu", "cpu (x86_64)", 8))
