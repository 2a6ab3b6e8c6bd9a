"""The AIA and HMI frames of the synthetic Sun, rendered in CHUNK-frame blocks over N processes.

Every frame draws from its own generator, so blocks are independent: a worker renders one block
into its own chunks of the year's arrays (reopened by path) and hands back the block's keywords,
disk means and generators; the main process takes the blocks in frame order and feeds the EVE
writer, so the stores are byte-identical for any number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from sdofm import SdofmError
from sdofm.sources.sdoml import AIA_CHANNELS, HMI_COMPONENTS
from sdofm.sources.sdoml_layout import create_frame_array, sdoml_geometry
from sdofm.sources.synthetic.eve_store import EveWriter
from sdofm.sources.synthetic.fits import (
    aia_filename,
    level1_keywords,
    observer,
    write_aia_fits,
    write_hmi_fits,
)
from sdofm.sources.synthetic.instrument import CHANNELS
from sdofm.sources.synthetic.model import SunModel, SyntheticSun
from sdofm.sources.synthetic.sun import Disk

__all__ = ["CHUNK", "hmi_noise", "render_frames"]

CHUNK = 15  # frames per chunk, as in SDOML v2
HMI_NOISE_G = 10.0  # per-pixel noise of the HMI field components at full resolution (4096²)
STORES = (("sdomlv2_small.zarr", AIA_CHANNELS), ("sdomlv2_hmi.zarr", HMI_COMPONENTS))


def hmi_noise(size: int) -> float:
    """Per-pixel noise (G) of HMI binned to ``size``²: binning k×k pixels divides it by k."""
    return HMI_NOISE_G * size / 4096


@dataclass(frozen=True)
class _Run:
    """What every block needs, sent once to each worker."""

    sun: SyntheticSun
    model: SunModel
    root: Path  # the folder holding the stores and fits/
    degradation: np.ndarray  # (frames, channels): computed once for the whole run


@dataclass(frozen=True)
class _Block:
    year: int
    start: int  # first frame of the block within its year's arrays (a multiple of CHUNK)
    frames: np.ndarray  # the run's frame indices


def render_frames(
    sun: SyntheticSun,
    model: SunModel,
    tmp: Path,
    eve: EveWriter,
    *,
    workers: int = 1,
    meanwhile: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """Render every frame, write AIA and HMI stores (and FITS in the window) and EVE rows.

    ``workers`` processes render blocks of `CHUNK` frames (1: in this process, no pool);
    ``meanwhile`` (work that does not need the frames) runs here while they start and render.
    Returns the noise-free disk mean of each channel per frame (ground truth, one row a frame).
    """
    times = sun.times
    years = times.year.to_numpy()
    blocks = []
    for store, _ in STORES:
        zarr.open_group(tmp / store, mode="w", zarr_format=2)
    for year in np.unique(years):  # every array exists before any block is written into it
        idx = np.flatnonzero(years == year)
        for store, names in STORES:
            group = zarr.open_group(tmp / store, zarr_format=2).require_group(str(year))
            for name in names:
                create_frame_array(group, name, len(idx), sun.image_size)
        blocks += [_Block(int(year), s, idx[s : s + CHUNK]) for s in range(0, len(idx), CHUNK)]
    (tmp / "fits" / "aia").mkdir(parents=True)
    (tmp / "fits" / "hmi").mkdir(parents=True)
    degradation = np.stack([model.degradation.factor(n, times) for n in AIA_CHANNELS], axis=1)
    run = _Run(sun, model, tmp, degradation)
    disk_means = np.zeros((len(times), len(AIA_CHANNELS)))
    attrs: dict[str, _Keywords] = {}
    results = _rendered(run, blocks, workers, meanwhile or (lambda: None))
    try:
        for n, (block, (keys, means, rngs)) in enumerate(zip(blocks, results, strict=True)):
            for name, kw in keys.items():
                attrs.setdefault(name, _Keywords()).extend(kw)
            disk_means[block.frames] = means
            for i, row, rng in zip(block.frames, means, rngs, strict=True):
                eve.frame(int(i), row, rng)
            if n == len(blocks) - 1 or blocks[n + 1].year != block.year:  # the year is complete
                for store, names in STORES:
                    group = zarr.open_group(tmp / store, zarr_format=2)[str(block.year)]
                    for name in names:
                        group[name].update_attributes(attrs.pop(name).lists())
    finally:  # no worker writes on after an error here (atomic_output then clears the folder)
        results.close()
    eve.close()
    return pd.DataFrame(disk_means, index=times.rename("time"), columns=list(AIA_CHANNELS))


def _rendered(
    run: _Run, blocks: list[_Block], workers: int, meanwhile: Callable[[], None]
) -> Iterator[tuple]:
    """The blocks' results in order: in this process, or from ``workers`` spawned processes
    with at most two blocks each in flight (a worker holds one block's buffer at a time)."""
    if workers <= 1 or len(blocks) <= 1:  # a pool's start-up would cost more than it saves
        meanwhile()
        yield from (_render_block(run, b) for b in blocks)
        return
    ctx = multiprocessing.get_context("spawn")  # not fork: Blosc's threads do not survive it
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start, initargs=(run,))
    pending: list[tuple[_Block, Future]] = []
    try:
        for n, block in enumerate(blocks):
            pending.append((block, pool.submit(_worker_block, block)))
            if n == min(2 * workers, len(blocks)) - 1:
                meanwhile()  # the workers start (seconds of imports) and render the first blocks
            if len(pending) >= 2 * workers:
                yield _result(*pending.pop(0))
        while pending:
            yield _result(*pending.pop(0))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _result(block: _Block, future: Future) -> tuple:
    try:
        return future.result()
    except BrokenProcessPool as err:
        msg = f"a frame-rendering worker died (killed or out of memory?) at {block.year}: {err}"
        raise SdofmError(msg) from err
    except Exception as err:
        first, last = block.start, block.start + len(block.frames) - 1
        msg = f"rendering frames {first}-{last} of {block.year} failed in a worker: "
        raise SdofmError(msg + f"{type(err).__name__}: {err}".splitlines()[0]) from err


_RUN: _Run | None = None  # a worker's run, set once when it starts
_PARENT: int | None = None  # a worker's parent process


def _start(run: _Run) -> None:
    global _RUN, _PARENT  # noqa: PLW0603 (the state a pool worker keeps)
    _RUN, _PARENT = run, os.getppid()
    threading.Thread(target=_watch_parent, daemon=True).start()


def _watch_parent() -> None:
    """An idle worker waits on the task queue, which its siblings keep open: it ends here."""
    while True:
        _stop_if_orphaned()
        time.sleep(0.2)


def _stop_if_orphaned() -> None:
    """A worker whose main process was killed stops (before its next write, too): the rerun's
    folder has the same name and must not receive a chunk of the killed run."""
    if _PARENT is not None and os.getppid() != _PARENT:
        os._exit(1)


def _worker_block(block: _Block) -> tuple:
    return _render_block(_RUN, block)


def _render_block(run: _Run, block: _Block) -> tuple[dict, np.ndarray, list]:
    """Render one block into its chunks; return its keywords, disk means and generators (in
    the state each frame left its own, for the EVE rows)."""
    sun, model, root = run.sun, run.model, run.root
    times, size, shape = sun.times, sun.image_size, (sun.image_size, sun.image_size)
    fits_window = (pd.Timestamp(sun.fits_start or sun.end), pd.Timestamp(sun.fits_end or sun.end))
    fits_dir = root / "fits"
    names = [*AIA_CHANNELS, *HMI_COMPONENTS]
    attrs = {n: _Keywords() for n in names}
    buf = np.zeros((len(names), len(block.frames), *shape), np.float32)
    disk_means = np.zeros((len(block.frames), len(AIA_CHANNELS)))
    rngs = []
    for b, i in enumerate(block.frames):
        _stop_if_orphaned()
        t = times[i]
        rng = np.random.default_rng([sun.seed, int(i)])
        disk, br, images = model.render(t, size)
        in_fits = fits_window[0] <= t < fits_window[1]
        if in_fits:  # level-1 files at their own resolution and the observed radius
            rsun_obs = observer(t)[1]
            fits_disk, fits_br, fits_images = model.render(t, sun.fits_image_size, rsun_obs)
            write_hmi_fits(
                fits_dir / "hmi" / f"hmi.m_45s.{t:%Y%m%d_%H%M%S}_TAI.fits",
                fits_br * fits_disk.mu
                + rng.normal(0.0, hmi_noise(sun.fits_image_size), fits_br.shape) * fits_disk.on,
                t_obs=t,
                disk=fits_disk,
            )
        for k, comp in enumerate(HMI_COMPONENTS):  # the radial field seen along x, y, z
            proj = (disk.x, disk.y, disk.mu)[k]
            buf[len(AIA_CHANNELS) + k, b] = (
                br * proj + rng.normal(0.0, hmi_noise(size), shape) * disk.on
            )
            _frame_attrs(attrs[comp], "hmi", buf[len(AIA_CHANNELS) + k, b], disk, t)
        for k, name in enumerate(AIA_CHANNELS):
            ch = CHANNELS[name]
            disk_means[b, k] = images[name].mean()
            exptime = round(ch.exptime * rng.uniform(0.85, 1.0), 4)
            deg = float(run.degradation[i, k])
            counts = rng.poisson(images[name] * exptime * deg)  # what the CCD records
            buf[k, b] = counts / (exptime * deg)  # SDOML v2: divided by exposure and degradation
            t_obs = t + pd.Timedelta(seconds=round(float(rng.uniform(0, 12)), 2))
            _frame_attrs(
                attrs[name], "aia", counts, disk, t_obs, exptime=exptime, deg=deg, channel=name
            )
            if in_fits:  # raw counts: degraded, not exposure-normalised
                raw = rng.poisson(fits_images[name] * exptime * deg)
                write_aia_fits(
                    fits_dir / "aia" / aia_filename(name, t_obs),
                    raw,
                    channel=name,
                    t_obs=t_obs,
                    exptime=exptime,
                    disk=fits_disk,
                )
        rngs.append(rng)
    stop = block.start + len(block.frames)
    _stop_if_orphaned()
    for store, names_ in STORES:  # this block's chunks only: no other writer has them
        for name in names_:
            arr = zarr.open_array(root / store / str(block.year) / name, mode="r+", zarr_format=2)
            arr[block.start : stop] = buf[names.index(name)]
    return attrs, disk_means, rngs


class _Keywords:
    """The per-frame keywords of one array until it is written, as runs of equal values.

    SDOML v2 keeps one list per keyword, a value a frame; most of the ~180 keywords never
    change, and a year of such lists would hold ~1 MB of references per array.
    """

    def __init__(self):
        self.values: dict[str, list] = {}  # a value per run
        self.counts: dict[str, list[int]] = {}  # frames per run

    def append(self, keys: dict) -> None:
        for k, v in keys.items():
            self._add(k, v, 1)

    def extend(self, other: _Keywords) -> None:
        """Add the frames of ``other`` (the next block's) after these, as `append` would."""
        for k, values in other.values.items():
            for v, n in zip(values, other.counts[k], strict=True):
                self._add(k, v, n)

    def _add(self, k: str, v, n: int) -> None:
        values, counts = self.values.setdefault(k, []), self.counts.setdefault(k, [])
        last = values[-1] if values else None
        same = type(last) is type(v) and last == v and repr(last) == repr(v)
        if values and (last is v or same):
            counts[-1] += n  # the same JSON as the frame before
        else:
            values.append(v)
            counts.append(n)

    def lists(self) -> dict[str, list]:
        return {
            k: [v for v, n in zip(values, self.counts[k], strict=True) for _ in range(n)]
            for k, values in self.values.items()
        }


def _frame_attrs(
    attrs: _Keywords,
    instrument: str,
    image: np.ndarray,
    disk: Disk,
    t: pd.Timestamp,
    *,
    exptime: float = 0.0,
    deg: float = 1.0,
    channel: str = "",
) -> None:
    """Append one frame's keywords to the per-array attrs lists, as SDOML v2 keeps them: the
    frame's full level-1 header (the Sun at its observed radius, ``image``'s statistics)
    converted to the 976″ geometry of the stored frame."""
    keys = level1_keywords(
        instrument,
        image,
        t_obs=t,
        size=disk.size,
        rsun_px=observer(t)[1] / disk.cdelt,
        b0_deg=disk.b0_deg,
        exptime=exptime,
        channel=channel,
    )
    keys["LVL_NUM"] = 1.5  # registered: north up, disk centred
    keys = sdoml_geometry(keys, 1.0, instrument=instrument)
    if instrument == "aia":
        keys["DEG_COR"] = round(deg, 6)
    attrs.append(keys)
