"""Pretraining sweeps: the points of a ``sweep`` config block, and the choice among them.

The workflow turns the points into a `snakemake.utils.Paramspace`, one named run (one
pretraining job) per point; every point is embedded and benchmarked like any run. The choice
uses the linear probe (held-out training rows) or one task's **validation** score, never test.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdofm import SdofmError

__all__ = ["PROBE", "choose", "sweep_points", "sweep_runs", "sweep_table"]

PROBE = "probe"  # sweep.select: the pretraining's linear probe instead of a task
LOG_SCALE = ("learning_rate", "weight_decay")  # random draws of these are log-uniform


def sweep_points(block: Mapping[str, Any]) -> pd.DataFrame:
    """One row per point: the grid's product, or ``random.draws`` draws (seeded) where each key
    of ``random.space`` takes a list of choices or ``{low, high}`` (integers if both are)."""
    if block.get("grid"):
        grid = block["grid"]
        index = pd.MultiIndex.from_product(list(grid.values()), names=list(grid))
        return index.to_frame(index=False)
    rnd = block.get("random") or {}
    if not rnd.get("space"):
        msg = "config key 'sweep': give grid or random.space, the settings to vary"
        raise SdofmError(msg)
    rng = np.random.default_rng(rnd.get("seed", 0))
    columns = {}
    for key, space in rnd["space"].items():
        n = rnd.get("draws", 4)
        if isinstance(space, list):
            columns[key] = [space[i] for i in rng.integers(0, len(space), n)]
            continue
        lo, hi = space["low"], space["high"]
        if isinstance(lo, int) and isinstance(hi, int):
            columns[key] = [int(v) for v in rng.integers(lo, hi + 1, n)]
        elif key in LOG_SCALE:
            columns[key] = [
                float(f"{v:.3g}") for v in np.exp(rng.uniform(np.log(lo), np.log(hi), n))
            ]
        else:
            columns[key] = [float(f"{v:.3g}") for v in rng.uniform(lo, hi, n)]
    return pd.DataFrame(columns).drop_duplicates(ignore_index=True)


def sweep_runs(
    config: Mapping[str, Any], runs: Mapping[str, Any], names: list[str]
) -> dict[str, Any]:
    """The named run of each point (``names``: the Paramspace's instance patterns, in row
    order): the base run's settings with the point's, validated as a pretrain block."""
    from sdofm.config import check_patch_size, validate_block

    block = config["sweep"]
    base = block.get("run") or next(iter(runs))
    if base not in runs:
        msg = f"config key 'sweep.run': {base!r} is not a named run ({', '.join(runs)})"
        raise SdofmError(msg)
    select = block.get("select", PROBE)
    if select != PROBE and select not in config.get("benchmarks", {}):
        tasks = ", ".join(sorted(config.get("benchmarks", {})))
        msg = f"config key 'sweep.select': {select!r} is neither 'probe' nor a task ({tasks})"
        raise SdofmError(msg)
    out = {}
    for name, point in zip(names, sweep_points(block).to_dict("records"), strict=True):
        settings = {k: v.item() if hasattr(v, "item") else v for k, v in point.items()}
        try:
            out[name] = validate_block(dict(runs[base]) | settings, "pretrain")
            check_patch_size(out[name], config.get("data", {}).get("image_size"), "patch_size")
        except SdofmError as err:
            msg = f"sweep point {name}: {err}"
            raise SdofmError(msg) from None
    return out


def _score(run: str, select: str, results: Path) -> float | None:
    """A point's selection score (higher is better): probe R², or the task's validation
    headline (negated where lower is better)."""
    import json

    if select == PROBE:
        summary = json.loads((results / "pretrain" / run / "summary.json").read_text())
        return summary.get("final_probe_r2")
    metrics = json.loads((results / select / "metrics.json").read_text())
    value = metrics["runs"][run]["validation"]
    if value is None:
        return None
    return value if metrics["headline"]["higher_is_better"] else -value


def sweep_table(points: pd.DataFrame, runs: list[str], select: str, results: Path) -> pd.DataFrame:
    """The sweep: each point's settings, its selection score and (for a task, shown, never used)
    its test headline; the chosen point marked."""
    import json

    table = points.copy()
    table.insert(0, "run", runs)
    table["selection score"] = [_score(r, select, Path(results)) for r in runs]
    if select != PROBE:
        metrics = json.loads((Path(results) / select / "metrics.json").read_text())
        table["test headline"] = [metrics["runs"][r]["headline"]["value"] for r in runs]
    table["chosen"] = False
    table.loc[choose(table["selection score"].tolist()), "chosen"] = True
    return table


def choose(scores: list[float | None]) -> int:
    """Index of the best score (higher is better); a clear error if no point has one."""
    values = np.array([np.nan if s is None else s for s in scores], float)
    if not np.isfinite(values).any():
        msg = "no sweep point has a selection score (probe off, or the task has no validation)"
        raise SdofmError(msg)
    return int(np.nanargmax(values))
