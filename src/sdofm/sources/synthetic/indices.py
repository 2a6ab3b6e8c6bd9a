"""Solar indices and the event list of the synthetic Sun: GOES XRS, F10.7 and flares (CSV).

GOES XRS 1–8 Å follows the flares over a background that rises with the visible flux; F10.7
is observed once a day, at an image time, from the flux of the regions the radio telescope
sees; the public flare list holds the front-side flares under HEK's column names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sdofm.sources.synthetic import flares as fl

if TYPE_CHECKING:
    from sdofm.sources.synthetic.model import SunModel, SyntheticSun

__all__ = [
    "F107_LIMB_DEG",
    "f107_times",
    "write_csv_block",
    "write_f107",
    "write_flare_lists",
    "write_goes",
]

F107_LIMB_DEG = 10.0  # width of the fade of a region's radio emission across the limb


def write_csv_block(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, mode="a", header=not path.exists(), index=False, float_format="%.6e")


def write_goes(sun: SyntheticSun, model: SunModel, path: Path) -> None:
    """GOES XRS 1–8 Å series, a day at a time; background rises with the visible flux."""
    start, end = pd.Timestamp(sun.start), pd.Timestamp(sun.end)
    for day in pd.date_range(start.floor("D"), end, freq="D", inclusive="left"):
        times = pd.date_range(
            max(day, start),
            min(day + pd.Timedelta(days=1), end),
            freq=f"{sun.goes_cadence_minutes}min",
            inclusive="left",
        )
        if len(times) == 0:
            continue
        ends = [model.unsigned_flux(times[0]), model.unsigned_flux(times[-1])]
        flux = np.interp(np.arange(len(times)), [0, len(times) - 1], ends)
        background = fl.BACKGROUND * (1 + flux / 2e22) ** 1.5
        xrsb = fl.goes_xrs(times, model.flare_set, background)
        write_csv_block(pd.DataFrame({"time": times, "xrsb_flux": xrsb}), path)


def f107_times(sun: SyntheticSun) -> pd.DatetimeIndex:
    """When the synthetic radio telescope observes, once a day: at the image time of the day
    nearest 20 UT (Penticton's local noon), so the images see the Sun F10.7 saw; at 20 UT on a
    day without images."""
    days = pd.date_range(pd.Timestamp(sun.start).floor("D"), sun.end, freq="D", inclusive="left")
    noon = pd.Series(days + pd.Timedelta(hours=20), index=days)
    frames = pd.Series(sun.times, index=sun.times.floor("D"))
    off = (frames - noon.reindex(frames.index).to_numpy()).abs()
    best = frames[off.groupby(level=0).transform("min").eq(off).to_numpy()]
    best = best[~best.index.duplicated()]  # two frames as near: the earlier
    return pd.DatetimeIndex(best.reindex(days).fillna(noon))


def write_f107(sun: SyntheticSun, model: SunModel, path: Path) -> None:
    """Daily F10.7 from the unsigned flux of the regions the radio telescope sees.

    Gyroresonance sources sit above the regions, so a region fades out smoothly across the
    limb (`F107_LIMB_DEG` wide) instead of at a hard visible/invisible cut.
    """
    times = f107_times(sun)
    rng = np.random.default_rng([sun.seed, 3])
    flux = np.array([model.unsigned_flux(t, limb_deg=F107_LIMB_DEG) for t in times])
    adjusted = 65.0 + 2.5e-21 * flux + rng.normal(0.0, 3.0, len(times))
    # Observed flux is not corrected to 1 AU: it varies ±3.4 % over the year.
    dist = 1 - 0.0167 * np.cos(2 * np.pi * (times.dayofyear - 4) / 365.25)
    pd.DataFrame(
        {
            "time": times.strftime("%Y-%m-%dT%H:%M:%S"),
            "observed_flux": adjusted / dist**2,
            "adjusted_flux": adjusted,
        }
    ).to_csv(path, index=False, float_format="%.2f")


def write_flare_lists(flares: pd.DataFrame, public: Path, truth: Path) -> None:
    """The public event list (front side, HEK column names) and the full truth catalogue."""
    front = flares[flares["front_side"]]
    fmt = "%Y-%m-%dT%H:%M:%S"
    pd.DataFrame(
        {
            "event_starttime": front["start_time"].dt.strftime(fmt),
            "event_peaktime": front["peak_time"].dt.strftime(fmt),
            "event_endtime": front["end_time"].dt.strftime(fmt),
            "fl_goescls": front["goes_class"],
            "fl_peakflux": front["peak_flux"],
            "hgs_x": front["longitude_deg"].round(2),
            "hgs_y": front["latitude_deg"].round(2),
            "ar_noaanum": front["noaa_number"],
            "frm_name": "SWPC",
        }
    ).to_csv(public, index=False)
    flares.to_csv(truth, index=False, date_format=fmt)
