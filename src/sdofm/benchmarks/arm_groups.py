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

    def aligned(self, times: np.ndarray, split: np.ndarray, where: str) -> tuple[ArmGroup, Any]:
        """This group on the scoring step's sample axis (``times``, ``split``: the task's samples
        without a backbone), and a mask of the samples it has: a run's backbone may leave time
        steps unembedded (a temporal MAE has no stack for the first frames), so its samples are
        a subset, on the same split; anything else is another data set, refused in one line."""
        times, split = np.asarray(times).astype(str), np.asarray(split).astype(str)
        mine = self.times.astype(str)
        if np.array_equal(mine, times):
            at = np.arange(len(times))
        else:
            index = {t: k for k, t in enumerate(times)}
            at = np.array([index.get(t, -1) for t in mine], int)
            if len(index) < len(times) or len(set(mine)) < len(mine) or (at < 0).any():
                at = None
        scored = ("train", "val", "test", "extra")
        if at is None or np.any(np.isin(self.split, scored) & (self.split != split[at])):
            msg = (
                f"{where}: arm group {self.name!r} predicts {len(self.times)} samples that are not "
                f"among the {len(times)} samples of the task, on its split (another data set?)"
            )
            raise SdofmError(msg)
        has = np.zeros(len(times), bool)
        has[at[np.isin(self.split, scored)]] = True

        def spread(runs: list[np.ndarray]) -> list[np.ndarray]:
            out = []
            for r in runs:
                full = np.full((len(times), *np.shape(r)[1:]), np.nan)
                full[at] = r
                out.append(full)
            return out

        group = ArmGroup(
            self.name,
            times,
            split,
            self.arms,
            {a: spread(r) for a, r in self.preds.items()},
            {p: {a: spread(r) for a, r in c.items()} for p, c in self.curves.items()},
            self.meta,
        )
        return group, has


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
