"""Write the synthetic Sun: SDOML v2 stores, event lists, indices, FITS files and ground truth.

Generation streams frame by frame (and EVE/GOES in bounded buffers), so memory does not grow
with the time range; output is written through `atomic_output`. The Sun itself is `model`, the
EVE store `eve_store`, GOES XRS, F10.7 and the flare list `indices`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from sdofm.io import atomic_output
from sdofm.sources.sdoml import AIA_CHANNELS, HMI_COMPONENTS
from sdofm.sources.sdoml_layout import create_frame_array, sdoml_geometry
from sdofm.sources.synthetic import corona
from sdofm.sources.synthetic import flares as fl
from sdofm.sources.synthetic import sun as sun_model
from sdofm.sources.synthetic.eve import EVE_LINES
from sdofm.sources.synthetic.eve_store import EveWriter
from sdofm.sources.synthetic.fits import (
    aia_filename,
    level1_keywords,
    observer,
    write_aia_fits,
    write_hmi_fits,
)
from sdofm.sources.synthetic.indices import (
    F107_LIMB_DEG,
    write_f107,
    write_flare_lists,
    write_goes,
)
from sdofm.sources.synthetic.instrument import CHANNELS
from sdofm.sources.synthetic.model import SunModel, SyntheticSun
from sdofm.sources.synthetic.sun import RSUN_CM, Disk

__all__ = ["SyntheticSun", "generate"]

CHUNK = 15  # frames per chunk, as in SDOML v2
HMI_NOISE_G = 10.0  # per-pixel noise of the HMI field components at full resolution (4096²)


def hmi_noise(size: int) -> float:
    """Per-pixel noise (G) of HMI binned to ``size``²: binning k×k pixels divides it by k."""
    return HMI_NOISE_G * size / 4096


def _frame_arrays(group: zarr.Group, names, n: int, size: int) -> dict[str, zarr.Array]:
    return {name: create_frame_array(group, name, n, size) for name in names}


def _aia_hmi_frames(sun: SyntheticSun, model: SunModel, tmp: Path, eve: EveWriter) -> pd.DataFrame:
    """Render every frame, write AIA and HMI stores (and FITS in the window) and EVE rows.

    Returns the noise-free disk mean of each channel per frame (ground truth, one row a frame).
    """
    times = sun.times
    aia = zarr.open_group(tmp / "sdomlv2_small.zarr", mode="w", zarr_format=2)
    hmi = zarr.open_group(tmp / "sdomlv2_hmi.zarr", mode="w", zarr_format=2)
    fits_window = (pd.Timestamp(sun.fits_start or sun.end), pd.Timestamp(sun.fits_end or sun.end))
    fits_dir = tmp / "fits"
    (fits_dir / "aia").mkdir(parents=True)
    (fits_dir / "hmi").mkdir(parents=True)
    size, shape = sun.image_size, (sun.image_size, sun.image_size)
    disk_means = np.zeros((len(times), len(AIA_CHANNELS)))
    degradation = {n: model.degradation.factor(n, times) for n in AIA_CHANNELS}  # not per frame
    years = times.year.to_numpy()
    for year in np.unique(years):
        idx = np.flatnonzero(years == year)
        arrays = {
            **_frame_arrays(aia.require_group(str(year)), AIA_CHANNELS, len(idx), size),
            **_frame_arrays(hmi.require_group(str(year)), HMI_COMPONENTS, len(idx), size),
        }
        attrs = {n: _Keywords() for n in arrays}
        buf = np.zeros((len(arrays), CHUNK, *shape), np.float32)
        for j, i in enumerate(idx):
            t, b = times[i], j % CHUNK
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
                disk_means[i, k] = images[name].mean()
                exptime = round(ch.exptime * rng.uniform(0.85, 1.0), 4)
                deg = float(degradation[name][i])
                counts = rng.poisson(images[name] * exptime * deg)  # what the CCD records
                # SDOML v2: divided by exposure and degradation.
                buf[k, b] = counts / (exptime * deg)
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
            if b == CHUNK - 1 or j == len(idx) - 1:
                for k, arr in enumerate(arrays.values()):
                    arr[j - b : j + 1] = buf[k, : b + 1]
            eve.frame(int(i), disk_means[i], rng)
        for name in list(arrays):  # then let go of each: zarr keeps what it wrote
            arrays.pop(name).update_attributes(attrs.pop(name).lists())
    eve.close()
    return pd.DataFrame(disk_means, index=times.rename("time"), columns=list(AIA_CHANNELS))


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
            values, counts = self.values.setdefault(k, []), self.counts.setdefault(k, [])
            last = values[-1] if values else None
            same = type(last) is type(v) and last == v and repr(last) == repr(v)
            if values and (last is v or same):
                counts[-1] += 1  # the same JSON as the frame before
            else:
                values.append(v)
                counts.append(1)

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


def generate(sun: SyntheticSun, out: str | Path) -> dict[str, Path]:
    """Write the synthetic Sun to ``out`` and return its top-level entries by name."""
    with atomic_output(out) as tmp:
        tmp.mkdir()
        model = SunModel(sun)
        truth = tmp / "ground_truth"
        truth.mkdir()  # before the frames: EVE truth after MEGS-A is written as they go
        eve = EveWriter(sun, model, tmp / "sdomlv2_eve.zarr", truth)
        disk_means = _aia_hmi_frames(sun, model, tmp, eve)
        disk_means.to_csv(truth / "aia_disk_mean.csv")
        write_goes(sun, model, tmp / "goes_xrs.csv")
        write_f107(sun, model, tmp / "f107.csv")
        write_flare_lists(model.flares, tmp / "flares.csv", truth / "flares.csv")
        model.degradation.write(tmp / "aia_correction_table.txt")
        days = pd.date_range(pd.Timestamp(sun.start).floor("D"), sun.end, freq="D")
        pd.DataFrame(
            {n: model.degradation.factor(n, days) for n in AIA_CHANNELS}, index=days.rename("time")
        ).to_csv(truth / "degradation.csv")
        model.regions.to_csv(truth / "regions.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S")
        params = {
            "settings": asdict(sun),
            "channels": {n: asdict(c) for n, c in CHANNELS.items()},
            "eve_lines": {
                k: {"base": b, "power": p, "weights": w} for k, (b, p, w) in EVE_LINES.items()
            },
            "flares": {
                "index": fl.FLARE_INDEX,
                "min_peak": fl.MIN_PEAK,
                "rate_per_day": fl.RATE_PER_DAY,
            },
            "rsun_cm": RSUN_CM,
            "spots": {
                "min_sigma_px": sun_model.MIN_SPOT_PX,
                "min_pair_sigmas": sun_model.MIN_PAIR_SIGMAS,
                "delta_share": sun_model.DELTA_SHARE,
                "delta_sigmas": sun_model.DELTA_SIGMAS,
            },
            "network": model.network.to_dict(),
            "corona": corona.parameters(),
            "f107_limb_deg": F107_LIMB_DEG,
            "hmi_noise_g": hmi_noise(sun.image_size),
        }
        (truth / "parameters.json").write_text(json.dumps(params, indent=2))
    return {p.name: p for p in Path(out).iterdir()}
