"""Validation tasks: each compares a head on the foundation model with its paper's baseline.

A task is a module here with a ``run(inputs: TaskInputs, out_dir, params)`` function that writes
``metrics.json`` and ``predictions.csv``; register it in `TASKS` and give it a config block (and
schema), a notebook ``notebooks/<task>.ipynb`` and a test.
"""

from sdofm.benchmarks import (
    autocalibration,
    f107,
    flare_forecast,
    label_efficiency,
    missing_channel,
    virtual_eve,
)

__all__ = ["TASKS"]

TASKS = {
    "virtual_eve": virtual_eve.run,
    "autocalibration": autocalibration.run,
    "f107": f107.run,
    "flare_forecast": flare_forecast.run,
    "label_efficiency": label_efficiency.run,
    "missing_channel": missing_channel.run,
}
