"""Validation tasks: every one compares the foundation-model head with its paper's baseline.

A task is a `runner.Task` subclass in its own module (its labels, arms, metrics and headline);
the runner owns the protocol. Register it in `TASKS`, give it a block under ``benchmarks:`` in
the config and the schema, and a notebook ``notebooks/<task>.ipynb``.

`TASKS` is built on first use: a report that only reads a result (`sdofm.benchmarks.result`)
does not import every task's models (torch, scikit-learn: seconds per notebook).
"""

from importlib import import_module

__all__ = ["TASKS"]

# task name -> (module, class)
_REGISTRY = {
    "virtual_eve": ("virtual_eve", "VirtualEVE"),
    "flare_forecast": ("flare_forecast", "FlareForecast"),
    "f107": ("f107", "F107"),
    "label_efficiency": ("label_efficiency", "LabelEfficiency"),
    "missing_channel": ("missing_channel", "MissingChannel"),
    "autocalibration": ("autocalibration", "Autocalibration"),
    "truth_probe": ("truth_probe", "TruthProbe"),
}


def __getattr__(name: str):
    if name == "TASKS":
        return {
            task: getattr(import_module(f"sdofm.benchmarks.{module}"), cls)
            for task, (module, cls) in _REGISTRY.items()
        }
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
