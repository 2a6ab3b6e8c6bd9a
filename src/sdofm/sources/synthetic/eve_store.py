"""The EVE MEGS-A store of the synthetic Sun, written as the frames are rendered.

The lines between two frames come from the disk-integrated emission interpolated between them,
plus the flares at each EVE time; rows are buffered a week at a time (bounded memory). After
MEGS-A's end the store holds fill values and the ground truth keeps what it would have seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import zarr

from sdofm.sources.sdoml import AIA_CHANNELS
from sdofm.sources.sdoml_layout import EVE_LINES as SDOML_EVE_LINES
from sdofm.sources.sdoml_layout import create_eve_arrays, format_eve_times
from sdofm.sources.synthetic.eve import EVE_LINES, eve_irradiance
from sdofm.sources.synthetic.indices import write_csv_block
from sdofm.sources.synthetic.instrument import render_channel

if TYPE_CHECKING:
    from sdofm.sources.synthetic.model import SunModel, SyntheticSun

__all__ = ["EVE_AFTER_MEGSA", "EveWriter", "eve_times", "noise_free_lines"]

EVE_FLUSH_ROWS = 10_080  # EVE rows buffered between writes (a week at 1-min cadence)
# Ground truth: the EVE lines after MEGS-A's end (time + one column per line, W/m^2).
EVE_AFTER_MEGSA = "eve_after_megsa.csv"


def eve_times(sun: SyntheticSun) -> pd.DatetimeIndex:
    """The times of the EVE rows: every ``eve_cadence_minutes`` over the run."""
    return pd.date_range(sun.start, sun.end, freq=f"{sun.eve_cadence_minutes}min", inclusive="left")


def quiet_means(model: SunModel) -> dict[str, float]:
    """Each channel's disk mean of the quiet Sun (at the first frame): the lines' reference."""
    disk = model.disk(model.sun.times[0], model.sun.image_size)
    return {n: render_channel(n, disk, [], []).mean() for n in AIA_CHANNELS}


def line_drivers(model: SunModel, quiet_mean, times, base, cores) -> tuple[dict, np.ndarray]:
    """What drives the EVE lines at ``times``: each channel's emission relative to the quiet
    Sun (``base``: its noise-free disk mean there, one array per channel, plus the flares) and
    the hot-plasma index (the regions' hot ``cores`` and the flares, each squared)."""
    relative = {}
    for k, name in enumerate(AIA_CHANNELS):
        flare = model.flare_disk_mean(times, name, model.sun.image_size)
        relative[name] = (base[k] + flare) / quiet_mean[name]
    _, level = model.flare_set.levels(times)
    return relative, np.log1p(cores + ((level / 10.0) ** 2).sum(axis=1))


def noise_free_lines(model: SunModel, times: pd.DatetimeIndex, disk_means: np.ndarray):
    """The lines MEGS-A would measure at frame ``times`` without its noise, from the frames'
    noise-free disk means (T, channel): the synthetic Sun's exact EVE truth."""
    cores = np.array([model.hot_cores(t) for t in times])
    relative, hot = line_drivers(model, quiet_means(model), times, disk_means.T, cores)
    return eve_irradiance(relative, None, hot, noise=0.0)


class EveWriter:
    """Writes the rows of the MEGS-A group, frame by frame, in week-sized blocks.

    All 39 SDOML v2 lines, in the store's order, with their attrs; the row count is known up
    front so the arrays get SDOML's chunking for their length. The lines after MEGS-A's end go
    to ``truth``/`EVE_AFTER_MEGSA` instead.
    """

    def __init__(self, sun: SyntheticSun, model: SunModel, path: Path, truth: Path):
        self.sun, self.model = sun, model
        self.times, self.frame_times = eve_times(sun), sun.times
        root = zarr.open_group(path, mode="w", zarr_format=2)
        self.arrays = create_eve_arrays(root, len(self.times), [n for n, *_ in SDOML_EVE_LINES])
        for line, (_, _, weights) in EVE_LINES.items():
            self.arrays[line].update_attributes({"units": "W/m^2", "channels": sorted(weights)})
        self.buffer: dict[str, list[np.ndarray]] = {k: [] for k in self.arrays}
        self.written = self.rows = 0
        self.truth = truth / EVE_AFTER_MEGSA
        self.megsa_end = pd.Timestamp(sun.megsa_end)
        self.quiet_mean = quiet_means(model)
        self.prev: np.ndarray | None = None

    def frame(self, i: int, now: np.ndarray, rng: np.random.Generator) -> None:
        """Add the rows up to frame ``i`` (after the previous frame), given the noise-free disk
        mean ``now`` of each channel in frame ``i``; ``rng`` drops a few rows as missing."""
        sun, times = self.sun, self.frame_times
        t = times[i]
        lo = times[i - 1] if i else pd.Timestamp(sun.start)
        hi = t if i < len(times) - 1 else pd.Timestamp(sun.end) + pd.Timedelta(microseconds=1)
        sel = self.times[(self.times >= lo) & (self.times < hi)]
        if len(sel):
            before = self.prev if self.prev is not None else now
            values = self._rows(sel, lo, t, before, now, i)
            after = sel >= self.megsa_end
            missing = after | (rng.uniform(size=len(sel)) < 0.005)
            self._add(sel, {ln: np.where(missing, -1.0, v) for ln, v in values.items()})
            if after.any():  # what MEGS-A would have measured: truth for a virtual EVE
                block = {"time": sel[after], **{ln: v[after] for ln, v in values.items()}}
                write_csv_block(pd.DataFrame(block), self.truth)
        self.prev = now.copy()

    def close(self) -> None:
        """Write the rows still buffered; every EVE time has then been written once."""
        self._flush()
        assert self.written == len(self.times), "every EVE row is written once"

    def _rows(self, sel, lo, t, before, now, i) -> dict[str, np.ndarray]:
        """EVE lines at times ``sel`` in [lo, t]: the disk-integrated emission interpolated
        between the frames at lo and t, plus the flares at each EVE time (flares are shorter than
        a cadence; the little flare light already in the two frames is not removed)."""
        model = self.model
        frac = np.asarray(np.clip((sel - lo) / max(t - lo, pd.Timedelta(seconds=1)), 0, 1))
        base = [before[k] + (now[k] - before[k]) * frac for k in range(len(AIA_CHANNELS))]
        h_lo, h_t = model.hot_cores(lo), model.hot_cores(t)
        relative, hot = line_drivers(model, self.quiet_mean, sel, base, h_lo + (h_t - h_lo) * frac)
        return eve_irradiance(relative, np.random.default_rng([self.sun.seed, 2, int(i)]), hot)

    def _add(self, times: pd.DatetimeIndex, values: dict[str, np.ndarray]) -> None:
        # Blocks of arrays, not Python scalars: a buffered row costs 4 bytes a line, not ~40.
        self.buffer["Time"].append(np.asarray(times, "datetime64[ns]"))
        for line, v in values.items():
            self.buffer[line].append(np.asarray(v, np.float32))
        self.rows += len(times)
        if self.rows >= EVE_FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        lo, hi = self.written, self.written + self.rows
        for name, arr in self.arrays.items():
            block = np.concatenate(self.buffer[name])
            arr[lo:hi] = format_eve_times(pd.DatetimeIndex(block)) if name == "Time" else block
            self.buffer[name] = []
        self.written, self.rows = hi, 0
