"""Faults in the synthetic Sun's frame-rendering workers: a failing frame, a worker that dies.

Each surfaces as one `sdofm simulate: error:` line and leaves nothing that Snakemake would take
as output (no `synthetic` folder, no partial sibling).
"""

from __future__ import annotations

import importlib
import json
import os

import pandas as pd
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
