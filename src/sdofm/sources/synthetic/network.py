"""Enhanced network of the synthetic Sun: bright, slowly evolving patches that rotate with the Sun.

Without it the quiet Sun is a constant and the mean of the inner disk calibrates the instrument
by itself. The patches come and go (each brightens and fades over weeks to months), their
number follows a slow activity cycle, and they turn with the differential rotation, so the
quiet-Sun level changes with time and only the images' structure tells a patch from a dimming.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sdofm.sources.synthetic.sun import EARTH_ORBIT_DEG_PER_DAY, Disk, snodgrass_rate

__all__ = ["Network", "make_network"]

N_PATCHES = 60
PATCH_SIGMA_DEG = 10.0  # width of a patch (supergranular network clusters, plage remnants)
CYCLE_DAYS = 300.0  # period of the slow modulation of the patches' brightness
FIELD_G = 0.3  # net field of a patch at full strength (mixed polarity cancels at these scales)


@dataclass
class Network:
    """The patches: position at the start, rotation rate, light curve and field sign."""

    start: pd.Timestamp
    lat: np.ndarray  # deg
    lon: np.ndarray  # Stonyhurst deg at ``start``
    period: np.ndarray  # days: a patch lives half a period, then is dark for the other half
    phase: np.ndarray  # rad
    sign: np.ndarray
    cycle_phase: float

    def strength(self, t: pd.Timestamp) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lat, lon, brightness in [0, 1.5]) of the patches at ``t``."""
        days = (t - self.start) / pd.Timedelta(days=1)
        lon = (self.lon + self.rate * days + 180.0) % 360.0 - 180.0
        cycle = 1.0 + 0.5 * np.sin(2 * np.pi * days / CYCLE_DAYS + self.cycle_phase)
        amp = np.maximum(np.sin(2 * np.pi * days / self.period + self.phase), 0.0) * cycle
        return self.lat, lon, amp

    def to_dict(self) -> dict:
        """The patches as plain lists (ground truth, for parameters.json)."""
        out = {"start": str(self.start), "cycle_phase": self.cycle_phase}
        for k in ("lat", "lon", "period", "phase", "sign"):
            out[k] = np.round(getattr(self, k), 4).tolist()
        return out

    @property
    def rate(self) -> np.ndarray:
        return snodgrass_rate(self.lat) - EARTH_ORBIT_DEG_PER_DAY

    def maps(self, t: pd.Timestamp, disk: Disk) -> tuple[np.ndarray, np.ndarray]:
        """Brightness (relative) and net radial field (G) of the network on ``disk`` at ``t``."""
        lat, lon, amp = self.strength(t)
        keep = amp > 0
        bright, field = np.zeros(disk.x.shape), np.zeros(disk.x.shape)
        if keep.any():
            g = np.exp(
                -0.5 * disk.distance2(lat[keep], lon[keep]) / np.deg2rad(PATCH_SIGMA_DEG) ** 2
            )
            bright[disk.on] = amp[keep] @ g
            field[disk.on] = (FIELD_G * amp[keep] * self.sign[keep]) @ g
        return bright, field


def make_network(rng: np.random.Generator, start: pd.Timestamp) -> Network:
    """Random patches over ±60° latitude (uniform in area), lifetimes of 3 weeks to 3 months."""
    n = N_PATCHES
    return Network(
        start=start,
        lat=np.rad2deg(np.arcsin(rng.uniform(-0.87, 0.87, n))),
        lon=rng.uniform(-180.0, 180.0, n),
        period=rng.uniform(40.0, 180.0, n),
        phase=rng.uniform(0.0, 2 * np.pi, n),
        sign=rng.choice([-1.0, 1.0], n),
        cycle_phase=float(rng.uniform(0.0, 2 * np.pi)),
    )
