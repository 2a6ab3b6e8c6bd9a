"""Which frames a pull copies: a time range, thinned to the frame nearest each cadence step.

A pull at a cadence keeps, for every step ``start + k·cadence`` in [start, end), the frame
nearest that step within the tolerance, wherever it falls: real HMI records sit on TAI slots
34–37 s before the UTC hour, AIA's a few seconds after it. The offset of each kept frame from its
step is recorded beside it. A month's share of a pull (``window``) copies the frames the whole
pull selects that fall inside the window, so the months of a pull add up to the whole pull.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["Selection", "select_frames"]


class Selection:
    """Positions of the selected frames (ascending) and, when thinned, each one's step."""

    def __init__(self, index: np.ndarray, steps: pd.DatetimeIndex | None = None):
        self.index = np.asarray(index, dtype=np.int64)
        self.steps = steps

    def __len__(self) -> int:
        return len(self.index)

    def part(self, lo: int, hi: int) -> Selection:
        """The frames among positions [lo, hi), renumbered from ``lo`` (one year group's)."""
        keep = (self.index >= lo) & (self.index < hi)
        steps = None if self.steps is None else self.steps[keep]
        return Selection(self.index[keep] - lo, steps)

    def attrs(self, times: pd.DatetimeIndex) -> dict[str, list]:
        """Per-frame attrs recording the step each frame stands for and its offset (s)."""
        if self.steps is None:
            return {}
        offsets = (times[self.index] - self.steps).total_seconds()
        return {
            "sdofm_step": [f"{t:%Y-%m-%dT%H:%M:%S}" for t in self.steps],
            "sdofm_step_offset_s": [round(float(s), 3) for s in offsets],
        }


def _nearest(times: pd.DatetimeIndex, steps: pd.DatetimeIndex, tolerance: pd.Timedelta):
    """For each step, the position of the nearest frame within ``tolerance`` (-1 if none).

    Of frames sharing a timestamp the first is taken; of two equally near, the later one.
    """
    values, first = np.unique(times.to_numpy(), return_index=True)
    pos = pd.Index(values).get_indexer(steps, method="nearest", tolerance=tolerance)
    return np.where(pos >= 0, first[np.clip(pos, 0, None)], -1)


def select_frames(
    times: pd.DatetimeIndex,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    cadence: pd.Timedelta | None = None,
    tolerance: pd.Timedelta | None = None,
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> Selection:
    """The frames a pull of [start, end) copies.

    Without ``cadence`` every frame in [start, end). With it, the frame nearest each step
    ``start + k·cadence`` within ``tolerance`` (default: half the cadence); a frame nearest to
    two steps is copied once, for the nearer; frames repeating a selected frame's timestamp
    come along (for the build's QC). ``window`` keeps only selected frames inside it.
    """
    if cadence is None or len(times) == 0:
        lo, hi = window or (start, end)
        inside = (times >= start) & (times < end) & (times >= lo) & (times < hi)
        return Selection(np.flatnonzero(inside))
    tol = cadence / 2 if tolerance is None else tolerance
    steps = pd.date_range(start, end, freq=cadence, inclusive="left")
    lo, hi = window or (start - tol, end + tol)
    steps = steps[(steps >= lo - tol) & (steps <= hi + tol)]  # the steps the window can serve
    pos = _nearest(times, steps, tol)
    index, steps = pos[pos >= 0], steps[pos >= 0]
    distance = np.abs((times[index] - steps).to_numpy())
    order = np.lexsort((distance, index))  # by frame, the nearest step first
    index, steps = index[order], steps[order]
    first = np.r_[True, index[1:] != index[:-1]]
    index, steps = index[first], steps[first]
    inside = (times[index] >= lo) & (times[index] < hi)
    return _with_duplicates(times, index[inside], steps[inside])


def _with_duplicates(times: pd.DatetimeIndex, index: np.ndarray, steps) -> Selection:
    """The selection plus every frame repeating a selected frame's timestamp, for the same
    step: the build's QC then records (and quarantines) the repeats instead of the pull
    dropping them unseen. The first of each time is the one selected, as the build keeps."""
    repeated = np.flatnonzero(times.duplicated(keep="first"))
    step_of = dict(zip(times[index], steps, strict=True))
    kept = set(index.tolist())
    extra = [i for i in repeated if times[i] in step_of and i not in kept]
    if not extra:
        return Selection(index, steps)
    merged = np.concatenate([index, extra])
    order = np.argsort(merged, kind="stable")
    all_steps = pd.DatetimeIndex([*steps, *(step_of[times[i]] for i in extra)])
    return Selection(merged[order], all_steps[order])
