"""Validation tasks: every one compares the foundation-model head with its paper's baseline.

A task is a `runner.Task` subclass in its own module (its labels, arms, metrics and headline);
the runner owns the protocol. Register it in `TASKS`, give it a block under ``benchmarks:`` in
the config and the schema, and a notebook ``notebooks/<task>.ipynb``.
"""

from sdofm.benchmarks.autocalibration import Autocalibration
from sdofm.benchmarks.f107 import F107
from sdofm.benchmarks.flare_forecast import FlareForecast
from sdofm.benchmarks.label_efficiency import LabelEfficiency
from sdofm.benchmarks.missing_channel import MissingChannel
from sdofm.benchmarks.truth_probe import TruthProbe
from sdofm.benchmarks.virtual_eve import VirtualEVE

__all__ = ["TASKS"]

TASKS = {
    task.name: task
    for task in (
        VirtualEVE,
        FlareForecast,
        F107,
        LabelEfficiency,
        MissingChannel,
        Autocalibration,
        TruthProbe,
    )
}
