"""Flares of the synthetic Sun: rates from region flux and complexity, power-law peak fluxes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sdofm.sources.goes import flux_to_goes_class
from sdofm.sources.synthetic.sun import EARTH_ORBIT_DEG_PER_DAY, growth, snodgrass_rate

__all__ = [
    "FLARE_INDEX",
    "FlareSet",
    "goes_xrs",
    "make_flares",
    "peak_rate",
    "profile",
    "share_above",
]

FLARE_INDEX = 2.0  # dN/dF ∝ F^-α for the GOES peak flux (α ≈ 2, e.g. Veronig et al. 2002)
MIN_PEAK = 1e-6  # W/m², GOES C1.0: the smallest flare catalogued
MAX_PEAK = 2e-3  # X20
RATE_PER_DAY = 0.08  # ≥C1 flares per day of a β region of 3e21 Mx at its peak
BACKGROUND = 4e-9  # W/m², quiet-Sun 1–8 Å level (A4)


def peak_rate(flux_mx, complexity):
    """≥C1 flares per day of a region at the peak of its growth curve: `RATE_PER_DAY` for a β
    region of 3e21 Mx, ∝ flux^1.5 · complexity² (its rate at another age: times its growth)."""
    return RATE_PER_DAY * (np.asarray(flux_mx) / 3e21) ** 1.5 * np.asarray(complexity) ** 2


def share_above(peak_flux: float) -> float:
    """The fraction of the catalogued flares (≥ C1) whose GOES peak is at least ``peak_flux``."""
    return min(1.0, (MIN_PEAK / peak_flux) ** (FLARE_INDEX - 1.0))


def make_flares(
    rng: np.random.Generator, regions: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """The flare catalogue (all flares, front and far side) with peaks in [start, end).

    Each region flares as a Poisson process with rate ∝ (flux/3e21)^1.5 · complexity², scaled by
    its growth curve; peak fluxes follow a power law of index `FLARE_INDEX` above C1.
    """
    rows = []
    for r in regions.itertuples():
        life = 6.0 * r.lifetime_days
        ages = np.linspace(0.0, life, 400)
        weight = growth(ages, r.lifetime_days)
        expected = peak_rate(r.flux_mx, r.complexity) * np.trapezoid(weight, ages)
        n = rng.poisson(expected)
        if n == 0:
            continue
        cdf = np.cumsum(weight) / weight.sum()
        age = np.interp(rng.uniform(size=n), cdf, ages)
        peak = np.minimum(MIN_PEAK * rng.uniform(size=n) ** (-1.0 / (FLARE_INDEX - 1.0)), MAX_PEAK)
        rise = 4.0 + 3.0 * np.log10(peak / MIN_PEAK) * rng.uniform(0.7, 1.3, n)  # minutes
        decay = rise * rng.uniform(2.0, 4.0, n)
        rate = snodgrass_rate(r.latitude_deg) - EARTH_ORBIT_DEG_PER_DAY
        for a, p, tr, td in zip(age, peak, rise, decay, strict=True):
            t_peak = r.emergence + pd.Timedelta(days=float(a))
            if not start <= t_peak < end:
                continue
            lon = (r.longitude_deg + rate * a + 180.0) % 360.0 - 180.0
            rows.append(
                {
                    "peak_time": t_peak.round("s"),
                    "peak_flux": p,
                    "rise_minutes": tr,
                    "decay_minutes": td,
                    "latitude_deg": r.latitude_deg + rng.normal(0.0, 0.5),
                    "longitude_deg": lon + rng.normal(0.0, 0.5),
                    "region_id": r.region_id,
                    "noaa_number": r.noaa_number,
                }
            )
    cols = [
        "peak_time",
        "peak_flux",
        "rise_minutes",
        "decay_minutes",
        "latitude_deg",
        "longitude_deg",
        "region_id",
        "noaa_number",
    ]
    flares = pd.DataFrame(rows, columns=cols).sort_values("peak_time", ignore_index=True)
    if flares.empty:  # no flares in the range: typed columns, so the time arithmetic works
        flares = flares.astype({"peak_time": "datetime64[ns]"} | dict.fromkeys(cols[1:6], float))
    flares["goes_class"] = [flux_to_goes_class(p) for p in flares["peak_flux"]]
    flares["start_time"] = flares["peak_time"] - pd.to_timedelta(2 * flares["rise_minutes"], "min")
    # GOES end: the flux has decayed half-way back to the pre-flare level.
    flares["end_time"] = flares["peak_time"] + pd.to_timedelta(
        np.log(2) * flares["decay_minutes"], "min"
    )
    flares["front_side"] = flares["longitude_deg"].abs() < 90.0
    return flares


def profile(dt_minutes: np.ndarray, rise: float, decay: float) -> np.ndarray:
    """Unit-peak light curve: Gaussian rise, exponential decay; dt = t − t_peak in minutes."""
    dt = np.asarray(dt_minutes, float)
    return np.where(dt < 0, np.exp(-0.5 * (dt / rise) ** 2), np.exp(-np.maximum(dt, 0) / decay))


class FlareSet:
    """The front-side flares as arrays, for fast evaluation of light curves at many times."""

    EPOCH = pd.Timestamp("2000-01-01")

    def __init__(self, flares: pd.DataFrame):
        front = flares[flares["front_side"]]
        self.peak = ((front["peak_time"] - self.EPOCH) / pd.Timedelta(minutes=1)).to_numpy(float)
        self.rise = front["rise_minutes"].to_numpy(float)
        self.decay = front["decay_minutes"].to_numpy(float)
        self.c1 = front["peak_flux"].to_numpy(float) / MIN_PEAK
        self.lat = front["latitude_deg"].to_numpy(float)
        self.lon = front["longitude_deg"].to_numpy(float)

    def levels(self, times, delay_min: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Brightness in C1 units of each flare at each time, as a channel that peaks
        ``delay_min`` after GOES sees it (cooler channels also decay more slowly).

        Returns (indices of the flares involved, array (times, flares)).
        """
        # (numpy datetimes: this runs for every frame, and a DatetimeIndex per call cost more
        # than the light curves)
        ns = np.atleast_1d(np.asarray(times, "datetime64[ns]")) - self.EPOCH.to_datetime64()
        minutes = ns.astype(np.int64) / 60e9
        decay = self.decay * (1 + delay_min / 20.0)
        near = (self.peak + delay_min - 6 * self.rise <= minutes.max()) & (
            self.peak + delay_min + 12 * decay >= minutes.min()
        )
        idx = np.flatnonzero(near)
        dt = minutes[:, None] - (self.peak[idx] + delay_min)[None, :]
        return idx, self.c1[idx] * profile(dt, self.rise[idx], decay[idx])


def goes_xrs(times: pd.DatetimeIndex, flares: FlareSet, background: np.ndarray) -> np.ndarray:
    """GOES XRS 1–8 Å flux (W/m²) at ``times``: background plus every front-side flare."""
    _, level = flares.levels(times)
    return np.asarray(background, float) + MIN_PEAK * level.sum(axis=1)
