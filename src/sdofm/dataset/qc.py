"""Quality control of the build: the frames a solar physicist would reject, each with its reason.

Every quarantined frame or gap is one row of the QC table (``time, channel, issue, detail``)
written beside the store (`qc_path`) and counted in its ``qc_counts`` attr. Issues:

* ``duplicate``: a frame repeating another's timestamp (the first is kept);
* ``quality``: the frame's ``QUALITY`` keyword is not 0 (AIA and HMI set a bit per reason the
  observation was not nominal: eclipse, calibration manoeuvre, missing data, …);
* ``off-cadence``: a frame further than the tolerance from every time step;
* ``gap``: no usable frame of a channel near a time step;
* ``non-finite pixels``, ``out of range`` (any pixel outside the channel's physical range,
  ``data.physical_range``: DN/s for AIA, G for HMI), ``constant frame`` (every pixel equal, all
  zero included, any instrument), ``no positive signal`` (AIA counts cannot all be ≤ 0).

A time step with a quarantined frame is not ``valid``: it is kept out of training, of the
normalisation statistics and of embedding.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sdofm import SdofmError
from sdofm.sources.sdoml import HMI_PRODUCTS

if TYPE_CHECKING:
    from sdofm.dataset.build import Frames

__all__ = [
    "QC_COLUMNS",
    "check_ranges",
    "frame_issues",
    "qc_path",
    "quality_flags",
    "quarantine_frames",
    "usable_frames",
]

QC_COLUMNS = ["time", "channel", "issue", "detail"]


def qc_path(store: str | Path) -> Path:
    """The QC table written beside a built store: one row per gap or quarantined frame."""
    store = Path(store)
    return store.with_name(f"{store.stem}.qc.csv")


def quality_flags(values: list | None, n: int) -> np.ndarray:
    """The ``QUALITY`` keyword of ``n`` frames from their attrs list (0 where not recorded)."""
    if values is None:
        return np.zeros(n, np.int64)
    return np.array([0 if v is None else int(v) for v in values], np.int64)


def _quality_reason(channel: str, flag: int) -> str:
    """The reasons a ``QUALITY`` value gives (AIA bits decoded by aiapy; HMI's in hex)."""
    text = f"QUALITY 0x{flag & 0xFFFFFFFF:08x}"
    if channel in HMI_PRODUCTS:
        return text + " (HMI: see jsoc.stanford.edu/doc/data/hmi/Quality_Bits)"
    # (imported here: aiapy.util imports drms, which calls logging.basicConfig on import; the
    # Snakefile imports this module, and Snakemake then printed every line twice)
    from aiapy.util import check_quality_flag

    return text + ": " + "; ".join(check_quality_flag(flag & 0xFFFFFFFF))


def _record(qc: list[dict[str, Any]], frames: Frames, i: int, issue: str, detail: str) -> None:
    where = f"{frames.year[i]}/{frames.name}[{frames.index[i]}]"
    row = {"time": frames.times[i], "channel": frames.name, "issue": issue}
    qc.append(row | {"detail": f"{where} {detail}"})


def usable_frames(
    grid: pd.DatetimeIndex,
    frames: Frames,
    tol: pd.Timedelta,
    qc: list[dict[str, Any]],
    window: tuple[pd.Timestamp, pd.Timestamp] | None,
) -> np.ndarray:
    """Positions of the frames alignment may use, after quarantining duplicate timestamps and
    QUALITY ≠ 0; off-cadence frames are recorded too. Frames outside ``window`` (another
    partition's) are used but not reported, so a partitioned build reports each frame once."""
    lo, hi = window or (frames.times.min(), frames.times.max() + pd.Timedelta(1))
    mine = (frames.times >= lo) & (frames.times < hi)
    duplicate = frames.times.duplicated(keep="first")
    flagged = frames.quality != 0
    for i in np.flatnonzero(duplicate & mine):
        _record(qc, frames, i, "duplicate", "repeats a time")
    for i in np.flatnonzero(flagged & ~duplicate & mine):
        _record(qc, frames, i, "quality", _quality_reason(frames.name, int(frames.quality[i])))
    keep = np.flatnonzero(~duplicate & ~flagged)
    near = pd.Index(grid).get_indexer(frames.times[keep], method="nearest", tolerance=tol) >= 0
    for i in keep[~near & mine[keep]]:
        _record(qc, frames, i, "off-cadence", f"is more than {tol} from every time step")
    return keep


def check_ranges(data: dict[str, Any], channels: list[str]) -> dict[str, tuple[float, float]]:
    """The physical range of each channel, from ``data.physical_range`` (the schema's defaults
    where the config gives none); an error naming the channel if one is unusable."""
    from sdofm.config import validate_block

    ranges = validate_block(copy.deepcopy(data), "data")["physical_range"]
    out = {}
    for name in channels:
        if name not in ranges:
            msg = f"data.physical_range has no range for channel {name}"
            raise SdofmError(msg)
        lo, hi = (float(v) for v in ranges[name])
        if not lo < hi:
            msg = f"data.physical_range.{name} is [{lo:g}, {hi:g}]: the minimum must be below it"
            raise SdofmError(msg)
        out[name] = (lo, hi)
    return out


def frame_issues(
    frames: np.ndarray, name: str, physical: tuple[float, float]
) -> list[tuple[str, str] | None]:
    """(issue, detail) of each (H, W) frame of one channel in ``frames``, or None if usable."""
    lo, hi = physical
    unit = "G" if name in HMI_PRODUCTS else "DN/s"
    finite = np.isfinite(frames).all(axis=(1, 2))
    with np.errstate(invalid="ignore"):  # NaN frames are reported as non-finite anyway
        fmin, fmax = frames.min(axis=(1, 2)), frames.max(axis=(1, 2))
    out: list[tuple[str, str] | None] = []
    for k in range(len(frames)):
        if not finite[k]:
            bad = int((~np.isfinite(frames[k])).sum())
            out.append(("non-finite pixels", f"{bad} NaN or infinite pixels"))
        elif fmin[k] < lo or fmax[k] > hi:
            span = f"pixels span [{fmin[k]:.4g}, {fmax[k]:.4g}] {unit}"
            out.append(("out of range", f"{span}, outside the physical [{lo:g}, {hi:g}]"))
        elif fmin[k] == fmax[k]:
            out.append(("constant frame", f"every pixel is {fmin[k]:.4g} {unit}"))
        elif name not in HMI_PRODUCTS and fmax[k] <= 0:
            out.append(("no positive signal", f"the brightest pixel is {fmax[k]:.4g} {unit}"))
        else:
            out.append(None)
    return out


def quarantine_frames(
    x: np.ndarray,
    times: pd.DatetimeIndex,
    channels: list[str],
    frame_times: np.ndarray,
    ranges: dict[str, tuple[float, float]],
    qc: list[dict[str, Any]],
) -> np.ndarray:
    """Rows of ``x`` (rows, channel, H, W) with an unusable frame, each recorded in ``qc``.

    ``times`` are the rows' time steps, ``frame_times`` (rows, channel) the frames' own times.
    """
    bad = np.zeros(len(x), bool)
    for c, name in enumerate(channels):
        for r, found in enumerate(frame_issues(x[:, c], name, ranges[name])):
            if found is not None:
                issue, detail = found
                when = pd.Timestamp(frame_times[r, c])
                row = {"time": times[r], "channel": name, "issue": issue}
                qc.append(row | {"detail": f"frame at {when}: {detail}"})
                bad[r] = True
    return bad
