"""The evaluation protocol every task shares: split checks, leak guards, folds, block bootstrap.

- The store's split must keep training rows at least ``buffer_days`` (about one active-region
  lifetime, 60 days by default) from validation and test rows, in both directions.
- The backbone must not have been pretrained on any test row (its checkpoint records the time
  intervals it was pretrained on).
- Choices (thresholds, hyper-parameters, epochs) are made on validation rows only.
- Intervals come from a circular block bootstrap over test time (blocks of ``block_days``) that
  also draws a seed per resample, so they carry both autocorrelation and seed variance.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sdofm import SdofmError

__all__ = [
    "LeakError",
    "Protocol",
    "block_length",
    "block_resamples",
    "check_choice_rows",
    "check_pretraining",
    "check_split_buffers",
    "label_subset",
    "split_suns",
    "test_folds",
]


class LeakError(SdofmError):
    """The evaluation would let test information into training or a choice."""


@dataclass(frozen=True)
class Protocol:
    """The ``benchmarks.protocol`` config block."""

    seeds: tuple[int, ...] = (0, 1, 2)
    bootstrap: int = 1000
    block_days: float = 14.0
    buffer_days: float = 60.0
    level: float = 0.95
    accelerator: str = "auto"
    grid: dict[str, list[Any]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, block: dict[str, Any]) -> Protocol:
        kw = dict(block)
        kw["seeds"] = tuple(int(s) for s in kw.get("seeds", cls.seeds))
        return cls(**kw)

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values (one empty point without a grid)."""
        points: list[dict[str, Any]] = [{}]
        for key, values in self.grid.items():
            points = [p | {key: v} for p in points for v in values]
        return points


def _ns(times: np.ndarray) -> np.ndarray:
    """Times as int64 nanoseconds, whatever their resolution."""
    return pd.DatetimeIndex(times).as_unit("ns").asi8


def _intervals_text(intervals: Sequence[Sequence[str]]) -> str:
    return ", ".join(f"{a[:10]}..{b[:10]}" for a, b in intervals)


def check_split_buffers(times: np.ndarray, split: np.ndarray, buffer_days: float) -> None:
    """Refuse a split in which a training row lies within ``buffer_days`` of a val/test row.

    Checked in both directions, so a training tail after the test period counts too.
    """
    t = _ns(times)
    train = np.sort(t[split == "train"])
    if not len(train):
        return
    buffer = pd.Timedelta(days=buffer_days).value
    for other in ("val", "test"):
        held = t[split == other]
        if not len(held):
            continue
        pos = np.searchsorted(train, held)
        before = train[np.clip(pos - 1, 0, len(train) - 1)]
        after = train[np.clip(pos, 0, len(train) - 1)]
        gap = np.minimum(np.abs(held - before), np.abs(after - held))
        k = int(np.argmin(gap))
        if gap[k] < buffer:
            days = gap[k] / pd.Timedelta(days=1).value
            msg = (
                f"fold without its buffer: a {other} row at {pd.Timestamp(held[k])} is "
                f"{days:.1f} days from a training row; the protocol needs {buffer_days:g} days "
                f"(rebuild the store with splits.buffer_days >= {buffer_days:g} or lower "
                "protocol.buffer_days)"
            )
            raise LeakError(msg)


def check_pretraining(
    test_times: np.ndarray, intervals: Sequence[Sequence[str]] | None, checkpoint: str
) -> None:
    """Refuse when a test time lies inside the time intervals the backbone was pretrained on."""
    if intervals is None:
        msg = (
            f"{checkpoint} does not record the time range it was pretrained on, so it cannot be "
            "shown to have never seen a test row: re-run `sdofm pretrain`"
        )
        raise LeakError(msg)
    t = pd.DatetimeIndex(test_times)
    for start, end in intervals:
        inside = (t >= pd.Timestamp(start)) & (t <= pd.Timestamp(end))
        if inside.any():
            msg = (
                f"test rows in the pretraining range: {int(inside.sum())} test time steps (first "
                f"{t[inside][0]}) lie in {start}..{end}, which {checkpoint} was pretrained on "
                f"(pretraining intervals: {_intervals_text(intervals)})"
            )
            raise LeakError(msg)


def split_suns(times: np.ndarray, split: np.ndarray, parameters) -> dict[str, Any] | None:
    """Which synthetic Suns each split's rows show (the generator's ``parameters.json``; None
    on real data), and whether the test rows are of Suns no training row shows: a whole Sun
    held out, the strongest guard against leaks through the Sun's own history."""
    if parameters is None:
        return None
    from sdofm.sources.synthetic.model import SyntheticSun

    sun = SyntheticSun.from_parameters(parameters)
    out: dict[str, Any] = {
        s: sorted({int(x) for x in sun.sun_seed(times[split == s])})
        for s in ("train", "val", "test")
    }
    out["held_out"] = not set(out["test"]) & set(out["train"])
    return out


def check_choice_rows(rows: np.ndarray, split: np.ndarray, what: str) -> None:
    """Refuse a choice (threshold, grid point, class) made on rows that are not validation rows."""
    bad = np.asarray(split)[np.asarray(rows, int)] != "val"
    if bad.any():
        kinds = sorted(set(np.asarray(split)[np.asarray(rows, int)][bad].tolist()))
        msg = f"{what} chosen on {', '.join(kinds)} rows: choices are made on validation only"
        raise LeakError(msg)


def test_folds(times: np.ndarray, test_rows: np.ndarray, folds: int) -> np.ndarray:
    """Fold number (1..folds) of each test row: the test period cut into equal durations.

    Folds nested in the store's split: every fold's models train on the training split and
    choose on the validation split; each fold scores one contiguous segment of the test split.
    """
    t = _ns(times[test_rows])
    edges = np.linspace(t.min(), t.max(), folds + 1)
    return np.clip(np.searchsorted(edges, t, side="right"), 1, folds)


def block_length(times: np.ndarray, block_days: float) -> int:
    """Rows per block: ``block_days`` at the median spacing of the distinct (sorted) times.

    Samples that share a time (several draws of one time step) count in proportion.
    """
    t = _ns(times)
    distinct = np.unique(t)
    if len(distinct) < 2:
        return 1
    step = float(np.median(np.diff(distinct)))
    per_time = len(t) / len(distinct)
    rows = pd.Timedelta(days=block_days).value / step * per_time
    return int(np.clip(round(rows), 1, len(t)))


def block_resamples(
    times: np.ndarray, *, block_days: float, resamples: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Row indices of each circular-block-bootstrap resample of rows with these ``times``.

    Rows are taken in time order; a resample joins blocks of consecutive rows (``block_days``
    long, wrapping around the end) from uniformly random starts, cut to the number of rows.
    Blocks of a day or more keep the autocorrelation of per-step errors inside each block, so
    the interval is not the too-narrow iid one.
    """
    order = np.argsort(_ns(times), kind="stable")
    n = len(order)
    length = block_length(times, block_days)
    n_blocks = -(-n // length)
    for _ in range(resamples):
        starts = rng.integers(0, n, n_blocks)
        yield order[((starts[:, None] + np.arange(length)[None]) % n).ravel()[:n]]


def label_subset(train_rows: np.ndarray, percent: float, repeat: int, repeats: int) -> np.ndarray:
    """A contiguous block of ``percent`` % of the training rows (in time order) for one repeat.

    Repeats start at evenly spaced places of the training period, so each sees another stretch
    of the activity; contiguous blocks, not scattered rows, because neighbouring time steps
    carry nearly the same information and k scattered labels would overstate what k labels buy.
    """
    n = len(train_rows)
    k = max(2, int(np.ceil(n * percent / 100.0)))
    if k >= n:
        return np.asarray(train_rows)
    start = int(round(repeat * (n - k) / max(repeats - 1, 1)))
    return np.asarray(train_rows)[start : start + k]
