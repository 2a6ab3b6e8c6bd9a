"""A group of trained arms, saved: each seed's predictions and the settings chosen on validation.

A task's arms are trained in groups (the shared baselines once; the FM head and its random-init
control once per named run) so that a change to one run retrains only that run's group; one
scoring step then reads every group of the task and scores them together (`runner.score_groups`).
A group file is netCDF (``results/<task>/arms/<group>.nc``), written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from sdofm import SdofmError
from sdofm.io import atomic_output

__all__ = ["BASELINES", "ArmGroup", "read_group", "write_group"]

BASELINES = "baselines"  # the group of the task's own arms; any other group is a named run


@dataclass
class ArmGroup:
    """Trained arms of one group: ``preds[arm]`` is one array per seed over all samples (NaN on
    training rows); ``curves[percent][arm]`` the same at a fraction of the training labels."""

    name: str
    times: np.ndarray
    split: np.ndarray
    arms: dict[str, dict[str, Any]]  # arm -> kind, description, chosen
    preds: dict[str, list[np.ndarray]]
    curves: dict[float, dict[str, list[np.ndarray]]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # checkpoint, embeddings, intervals

    def check_samples(self, times: np.ndarray, split: np.ndarray, where: str) -> None:
        """The group predicts exactly these samples (the scoring step's), or a clear error."""
        same = len(times) == len(self.times) and np.array_equal(
            np.asarray(times).astype(str), self.times.astype(str)
        )
        if not same or not np.array_equal(np.asarray(split).astype(str), self.split.astype(str)):
            msg = (
                f"{where}: arm group {self.name!r} predicts {len(self.times)} samples, not the "
                f"{len(times)} samples of the task (its backbone left time steps unembedded?)"
            )
            raise SdofmError(msg)


def _variables(prefix: str, preds: dict[str, list[np.ndarray]]) -> dict[str, xr.DataArray]:
    out = {}
    for arm, runs in preds.items():
        a = np.stack([np.asarray(r, float) for r in runs])
        dims = (f"seed__{prefix}__{arm}", "sample", *[f"d{k}" for k in range(1, a.ndim - 1)])
        out[f"{prefix}__{arm}"] = xr.DataArray(a, dims=dims)
    return out


def write_group(group: ArmGroup, path: str | Path) -> None:
    """Save ``group`` to ``path`` (netCDF), atomically: a killed job leaves no file behind."""
    variables = _variables("pred", group.preds)
    percents = sorted(group.curves)
    for k, percent in enumerate(percents):
        variables |= _variables(f"curve{k}", group.curves[percent])
    header = {"name": group.name, "arms": group.arms, "percents": percents, "meta": group.meta}
    ds = xr.Dataset(
        variables
        | {
            "times": ("sample", np.asarray(group.times).astype(str)),
            "split": ("sample", np.asarray(group.split).astype(str)),
        },
        attrs={"arm_group": json.dumps(header, default=str)},
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")


def _arrays(ds: xr.Dataset, prefix: str, arms) -> dict[str, list[np.ndarray]]:
    return {arm: list(ds[f"{prefix}__{arm}"].values) for arm in arms}


def read_group(path: str | Path) -> ArmGroup:
    """Load a group written by `write_group` (a file of another kind: a one-line error)."""
    try:
        ds = xr.load_dataset(path, engine="h5netcdf")
        header = json.loads(ds.attrs["arm_group"])
    except (OSError, KeyError, ValueError) as err:
        msg = f"{path} is not an arm group written by `sdofm benchmark --group`: {err}"
        raise SdofmError(msg) from None
    return ArmGroup(
        name=header["name"],
        times=ds["times"].values.astype(str),
        split=ds["split"].values.astype(str),
        arms=header["arms"],
        preds=_arrays(ds, "pred", header["arms"]),
        curves={
            float(p): _arrays(ds, f"curve{k}", header["arms"])
            for k, p in enumerate(header["percents"])
        },
        meta=header["meta"],
    )
