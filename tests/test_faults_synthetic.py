"""Faults in the synthetic Sun's frame-rendering workers: a failing frame, a worker that dies,
the main process killed under its workers.

Each surfaces as one `sdofm simulate: error:` line and leaves nothing that Snakemake would take
as output (no `synthetic` folder, no partial sibling).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from sdofm.cli import main
from sdofm.sources.synthetic.model import SunModel

# Three weeks at 12 h: blocks of 15 frames, the planted fault in the third (from 2011-01-16).
SUN = dict(
    seed=2,
    start="2011-01-01",
    end="2011-01-22",
    cadence_minutes=720,
    eve_cadence_minutes=180,
    goes_cadence_minutes=60,
    image_size=16,
    regions_per_day=0.5,
)
FAULT_AT = pd.Timestamp("2011-01-16")
# The module, not the function of the same name that the package exports.
gen = importlib.import_module("sdofm.sources.synthetic.generate")


class _FailingModel(SunModel):
    """The Sun, until a frame at or after `FAULT_AT` (pickled into the workers by reference)."""

    def render(self, t, size, *args):
        if t >= FAULT_AT:
            raise RuntimeError("planted fault\nsecond line of detail")
        return super().render(t, size, *args)


class _DyingModel(SunModel):
    """Kills the worker process outright at `FAULT_AT`, as the OOM killer would."""

    def render(self, t, size, *args):
        if t >= FAULT_AT:
            os._exit(9)
        return super().render(t, size, *args)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (_FailingModel, "frames 30-41 of 2011 failed in a worker: RuntimeError: planted fault"),
        (_DyingModel, "a frame-rendering worker died (killed or out of memory?) at 2011"),
    ],
)
def test_worker_fault_is_one_line_and_leaves_no_output(
    model, expected, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(gen, "SunModel", model)
    out = tmp_path / "synthetic"
    argv = ["--threads", "2", "simulate", "--params", json.dumps(SUN), "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("sdofm simulate: error: ") and expected in err[0], err[0]
    assert list(tmp_path.iterdir()) == []  # the partial folder removed, after the workers stopped


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_workers_of_a_killed_simulate_stop_writing(tmp_path):
    """SIGKILL of the main process alone (a node's OOM killer picks one): its workers write
    nothing more and exit, so a rerun's folder of the same name gets no chunk of this run."""
    out = tmp_path / "synthetic"
    partial = tmp_path / "synthetic.partial"
    sun = dict(SUN, end="2011-03-01", image_size=64)  # 116 frames: 8 blocks of seconds each
    cmd = [sys.executable, "-m", "sdofm.cli", "--threads", "2", "simulate"]
    proc = subprocess.Popen([*cmd, "--params", json.dumps(sun), "--out", str(out)])
    deadline = time.monotonic() + 120
    while not any(partial.glob("sdomlv2_small.zarr/2011/171A/[0-9]*")):  # the first block
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    workers = psutil.Process(proc.pid).children()
    assert len(workers) >= 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)  # a frame in progress may finish; it writes nothing (no FITS window here)
    before = _snapshot(partial)
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, "the workers outlived their main process"
    assert _snapshot(partial) == before
    assert not out.exists()
