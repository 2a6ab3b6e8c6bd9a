"""Time splits with a buffer, so that no frame has a neighbour in another split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sdofm import SdofmError

__all__ = ["SPLITS", "assign_splits", "check_no_leak", "split_intervals"]

SPLITS = ("train", "val", "test")
BUFFER = "buffer"


def _inside(times: pd.DatetimeIndex, intervals: Sequence[Sequence[str]]) -> np.ndarray:
    mask = np.zeros(len(times), bool)
    for start, end in intervals:
        mask |= (times >= pd.Timestamp(start)) & (times < pd.Timestamp(end))
    return mask


def _near(times: pd.DatetimeIndex, other: pd.DatetimeIndex, buffer: pd.Timedelta) -> np.ndarray:
    """True where a time lies within ``buffer`` of any time in ``other``."""
    if len(other) == 0:
        return np.zeros(len(times), bool)
    other = other.sort_values()
    pos = other.searchsorted(times)
    before = other[np.clip(pos - 1, 0, len(other) - 1)]
    after = other[np.clip(pos, 0, len(other) - 1)]
    gap = np.minimum(np.abs((times - before).to_numpy()), np.abs((after - times).to_numpy()))
    return gap < buffer.to_timedelta64()


def assign_splits(
    times: pd.DatetimeIndex,
    *,
    val: Sequence[Sequence[str]],
    test: Sequence[Sequence[str]],
    buffer_days: float,
) -> np.ndarray:
    """Label each time ``train``, ``val``, ``test`` or ``buffer``.

    Test intervals are kept whole; validation loses the rows within the buffer of a test row, and
    training the rows within the buffer of a validation or test row. Those rows become ``buffer``.
    """
    buffer = pd.Timedelta(days=buffer_days)
    labels = np.full(len(times), "train", dtype=object)
    is_test = _inside(times, test)
    is_val = _inside(times, val) & ~is_test
    labels[is_val] = "val"
    labels[is_test] = "test"
    labels[is_val & _near(times, times[is_test], buffer)] = BUFFER
    held_out = times[(labels == "val") | (labels == "test")]
    labels[(labels == "train") & _near(times, held_out, buffer)] = BUFFER
    return labels.astype(str)


def check_no_leak(times: pd.DatetimeIndex, labels: np.ndarray, buffer_days: float) -> None:
    """Raise if any two rows of different splits are closer than the buffer."""
    buffer = pd.Timedelta(days=buffer_days)
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            ta, tb = times[labels == a], times[labels == b]
            close = _near(ta, tb, buffer)
            if close.any():
                msg = (
                    f"split leak: {a} row at {ta[close][0]} is within {buffer_days} days of a "
                    f"{b} row; refusing to build"
                )
                raise SdofmError(msg)


def split_intervals(times: np.ndarray, labels: np.ndarray, name: str) -> list[list[str]]:
    """The [first, last] times of each run of consecutive rows labelled ``name`` (ISO strings)."""
    inside = np.concatenate([[False], np.asarray(labels) == name, [False]])
    edges = np.flatnonzero(np.diff(inside.astype(int)))
    t = pd.DatetimeIndex(times)
    return [
        [t[a].isoformat(), t[b - 1].isoformat()]
        for a, b in zip(edges[::2], edges[1::2], strict=True)
    ]
