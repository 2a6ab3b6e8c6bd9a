"""Validation tasks: each compares a head on the foundation model with its paper's baseline.

A task is a module here with a ``run(dataset, embeddings, checkpoint, out_dir, params)`` function;
register it in `TASKS` and give it a config block and a notebook.
"""

from sdofm.benchmarks import virtual_eve

__all__ = ["TASKS"]

TASKS = {"virtual_eve": virtual_eve.run}
