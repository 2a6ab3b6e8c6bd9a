"""Validation tasks: every one compares the foundation-model head with its paper's baseline.

A task is a `runner.Task` subclass in its own module (its labels, arms, metrics and headline);
the runner owns the protocol. Register it in `TASKS`, give it a block under ``benchmarks:`` in
the config and the schema, and a notebook ``notebooks/<task>.ipynb``.

`TASKS` is built on first use: a report that only reads a result (`sdofm.benchmarks.result`)
does not import every task's models (torch, scikit-learn: seconds per notebook).
"""

from importlib import import_module

from sdofm import SdofmError

__all__ = ["TASKS", "TASK_NAMES", "task_class"]

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
TASK_NAMES = tuple(_REGISTRY)


def task_class(name: str):
    """The `runner.Task` subclass of task ``name``, importing only its module."""
    if name not in _REGISTRY:
        msg = f"unknown benchmark task {name!r}; known tasks: {sorted(_REGISTRY)}"
        raise SdofmError(msg)
    module, cls = _REGISTRY[name]
    return getattr(import_module(f"sdofm.benchmarks.{module}"), cls)


def __getattr__(name: str):
    if name == "TASKS":
        return {task: task_class(task) for task in _REGISTRY}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
