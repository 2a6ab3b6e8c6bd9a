"""The time grid of the data set and its partitions: blocks of months pulled, built and embedded
by one job each."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sdofm import SdofmError

__all__ = ["partition_of", "partitions", "period_rows", "pull_windows", "time_grid"]


def time_grid(data: dict[str, Any]) -> pd.DatetimeIndex:
    """The time steps of the data set: [start, end) at the configured cadence."""
    return pd.date_range(
        data["start"], data["end"], freq=f"{data['cadence_minutes']}min", inclusive="left"
    )


def partition_of(times: pd.DatetimeIndex, months: int = 1) -> np.ndarray:
    """The partition of each time step: its block of ``months`` months counted from the first
    step's month, named by the block's first month (``2011-01``)."""
    ordinal = times.year * 12 + times.month - 1
    first = ordinal[0] if len(ordinal) else 0
    block = first + (ordinal - first) // months * months
    return np.array([f"{b // 12:04d}-{b % 12 + 1:02d}" for b in block], dtype=object)


def partitions(data: dict[str, Any]) -> list[str]:
    """Names of the partitions the build is split into (``2011-01``, …): blocks of
    ``data.partition_months`` months, each pulled, built and embedded by one job."""
    return sorted(set(partition_of(time_grid(data), data.get("partition_months", 1))))


def period_rows(data: dict[str, Any], period: str) -> np.ndarray:
    """Positions in the time grid of the steps of one partition (``2011-01``); an error if none."""
    grid = time_grid(data)
    rows = np.flatnonzero(partition_of(grid, data.get("partition_months", 1)) == period)
    if len(rows) == 0:
        msg = f"partition {period} has no time step between {data['start']} and {data['end']}"
        raise SdofmError(msg)
    return rows


def pull_windows(data: dict[str, Any], period: str) -> dict[str, tuple[pd.Timestamp, ...]]:
    """The times whose frames a month's build can match, per source (``images``, ``eve``).

    Images: whole cadence bins (counted from ``data.start``, as the pull thins them) around the
    month's steps, wide enough for the tolerance; EVE: the month's steps ± its tolerance. A
    build of the month from a pull of these windows equals its build from a pull of the range.
    """
    rows = period_rows(data, period)
    grid, start = time_grid(data), pd.Timestamp(data["start"])
    cadence = pd.Timedelta(minutes=data["cadence_minutes"])
    bins = int(np.ceil(pd.Timedelta(minutes=data["tolerance_minutes"]) / cadence))
    eve_tol = pd.Timedelta(minutes=data["eve_tolerance_minutes"])
    return {
        "images": (start + (rows[0] - bins) * cadence, start + (rows[-1] + bins + 1) * cadence),
        "eve": (grid[rows[0]] - eve_tol, grid[rows[-1]] + eve_tol + pd.Timedelta(1)),
    }
