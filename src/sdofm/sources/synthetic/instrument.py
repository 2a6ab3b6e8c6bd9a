"""AIA as the synthetic Sun sees it: channel responses, exposure, photon noise and degradation.

Degradation is planted as a per-channel exponential decline of the effective area, published in a
correction table in the format of the real ``aia.response`` series (the text tables aiapy reads),
so `aiapy.calibrate.degradation` recovers exactly the planted curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.table import Table

from sdofm.sources.synthetic.sun import MIN_SIGMA_PX, Disk

__all__ = ["CHANNELS", "Channel", "DegradationTable", "flare_sigma", "render_channel"]


@dataclass(frozen=True)
class Channel:
    """Physics of one AIA channel in the synthetic Sun."""

    quiet: float  # quiet-Sun disk-centre intensity (DN/s per SDOML pixel)
    contrast: float  # region emission per unit (flux/1e22)^gamma, in units of `quiet`
    gamma: float  # non-linearity of the response to region flux (temperature response)
    limb: float  # > 0: limb brightening (optically thin EUV); < 0: limb darkening exponent (UV)
    corona: float  # off-limb brightness just above the limb, in units of `quiet` (0: none)
    width: float  # region emission width relative to the spot separation (hot loops are compact)
    exptime: float  # nominal exposure (s)
    tau_years: float  # e-folding time of the effective-area decline
    eff_area: float  # effective area at launch (cm²), as in aia.response
    flare_gain: float  # flare emission per GOES C1 at peak, in units of `quiet` × disk pixels
    flare_delay_min: float  # delay of the channel's flare peak after the GOES peak (cooling)
    network: float = 0.4  # brightening of the quiet Sun per unit of network (see network.py)
    shear: float = 0.0  # extra core emission per step of complexity (sheared, hot δ-region cores)
    envelope: float = 0.0  # peak of the warm-loop envelope (see corona.py), in units of `quiet`

    def core(self, complexity: np.ndarray | int) -> np.ndarray | float:
        """Gain of a region's core emission with its complexity (1 = β: no gain)."""
        return 1.0 + self.shear * (complexity - 1)


# Hot channels (94, 131) see flares first, cooler ones as the plasma cools (e.g. Viall &
# Klimchuk 2012); 1600/1700 respond to the chromosphere and plage.
CHANNELS: dict[str, Channel] = {
    "94A": Channel(1.5, 60.0, 1.5, 0.6, 0.30, 0.6, 2.9, 25.0, 0.317, 400.0, 0.0, 0.5, 3.0),
    "131A": Channel(8.0, 30.0, 1.4, 0.6, 0.30, 0.6, 2.9, 12.0, 1.109, 300.0, 0.0, 0.5, 2.0),
    "171A": Channel(300.0, 8.0, 0.9, 0.8, 0.40, 1.2, 2.0, 9.0, 3.466, 2.0, 20.0, 0.5),
    "193A": Channel(300.0, 10.0, 1.1, 0.8, 0.40, 1.0, 2.0, 8.0, 2.131, 4.0, 14.0, 0.5, 0.25),
    "211A": Channel(80.0, 4.0, 1.2, 0.8, 0.35, 0.9, 2.9, 7.0, 0.741, 8.0, 10.0, 0.5, 0.5, 12.0),
    "304A": Channel(60.0, 10.0, 1.0, 0.5, 0.25, 1.1, 2.9, 3.0, 0.218, 6.0, 16.0, 0.5),
    "335A": Channel(5.0, 20.0, 1.3, 0.7, 0.30, 0.8, 2.9, 4.0, 0.024, 40.0, 6.0, 0.5, 1.0),
    "1600A": Channel(50.0, 3.0, 0.8, -0.4, 0.0, 0.7, 1.0, 10.0, 0.255, 3.0, 2.0, 0.4),
    "1700A": Channel(700.0, 1.3, 0.6, -0.5, 0.0, 0.7, 1.0, 15.0, 1.000, 0.5, 3.0, 0.25),
}

LAUNCH_EPOCH = pd.Timestamp("2010-03-24")
EPOCH_DAYS = 180  # calibration epochs of the correction table
TABLE_END = pd.Timestamp("2030-05-01")


class DegradationTable:
    """The planted degradation, as epochs of effective area with a linear term per epoch.

    ``factor(channel, t)`` evaluates exactly the formula aiapy applies to such a table:
    A_eff(epoch)/A_eff(launch) · (1 + p1·Δt), Δt in days since the epoch start.
    """

    def __init__(self, channels: dict[str, Channel] = CHANNELS):
        self.starts = pd.date_range(LAUNCH_EPOCH, TABLE_END, freq=f"{EPOCH_DAYS}D")[:-1]
        self.stops = self.starts[1:].append(pd.DatetimeIndex([TABLE_END]))
        self.channels = channels
        years = (self.starts - LAUNCH_EPOCH) / pd.Timedelta(days=365.25)
        stop_years = (self.stops - LAUNCH_EPOCH) / pd.Timedelta(days=365.25)
        self.ratio, self.p1 = {}, {}
        for name, ch in channels.items():
            a0 = np.exp(-np.asarray(years) / ch.tau_years)
            a1 = np.exp(-np.asarray(stop_years) / ch.tau_years)
            days = (self.stops - self.starts) / pd.Timedelta(days=1)
            self.ratio[name] = a0
            self.p1[name] = (a1 / a0 - 1.0) / np.asarray(days)

    def factor(self, channel: str, t: pd.Timestamp | pd.DatetimeIndex) -> np.ndarray:
        """Fraction of the launch sensitivity left at time(s) ``t``."""
        times = pd.DatetimeIndex(np.atleast_1d(pd.to_datetime(t)))
        k = np.clip(self.starts.searchsorted(times, side="right") - 1, 0, len(self.starts) - 1)
        dt = (times - self.starts[k]) / pd.Timedelta(days=1)
        return self.ratio[channel][k] * (1.0 + self.p1[channel][k] * np.asarray(dt))

    def write(self, path: str | Path) -> None:
        """Write the table in the column layout of aiapy's ``aia_V*_response_table.txt``."""
        rows = []
        created = pd.Timestamp("2020-01-01T00:00:00")
        for name, ch in self.channels.items():
            wave = int(name[:-1])
            wave_str = f"{wave}_THIN" if wave < 1000 else f"{wave}"
            for k, (t0, t1) in enumerate(zip(self.starts, self.stops, strict=True)):
                rows.append(
                    {
                        # DATE orders the epochs: aiapy takes the first row as the launch epoch.
                        "DATE": (created + pd.Timedelta(seconds=len(rows))).strftime(
                            "%Y-%m-%dT%H:%M:%S.000"
                        ),
                        "T_START": t0.strftime("%Y-%m-%dT%H:%M:%S.000"),
                        "T_STOP": t1.strftime("%Y-%m-%dT%H:%M:%S.000"),
                        "VER_NUM": 10,
                        "WAVE_STR": wave_str,
                        "WAVELNTH": wave,
                        "EPERDN": 18.0,
                        "DNPERPHT": 1.0,
                        "EFF_AREA": round(ch.eff_area * self.ratio[name][k], 8),
                        "EFF_WVLN": float(wave),
                        "EFFA_P1": self.p1[name][k],
                        "EFFA_P2": 0.0,
                        "EFFA_P3": 0.0,
                        "RMSE": 0.0,
                    }
                )
        table = Table(rows=rows)
        table["EFFA_P1"].info.format = ".6e"
        table.write(path, format="ascii.fixed_width", delimiter=None, bookend=False, overwrite=True)


FLARE_KERNEL_RAD = np.deg2rad(1.0)  # flare kernels are compact: ~1° on the surface


def flare_sigma(disk: Disk) -> float:
    """Width (rad) flare kernels are rendered at: 1°, or half a pixel where pixels are coarser."""
    return max(FLARE_KERNEL_RAD, MIN_SIGMA_PX / disk.rsun_px)


def render_channel(
    name: str,
    disk: Disk,
    regions: list[tuple],
    flares: list[tuple[np.ndarray, float]],
    network: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Noise-free intensity (DN/s) of channel ``name`` on ``disk``.

    ``regions`` holds (distance map in rad, spot separation in rad, flux/1e22, complexity,
    warm-loop response, envelope width in rad) per visible region: complex regions have brighter
    hot cores (``shear``), and channels with an ``envelope`` see the warm loops (`corona`);
    ``flares`` holds (distance map, flux in GOES C1 units as this channel sees it now);
    ``network`` the brightness of the enhanced network (`Network.maps`).
    """
    ch = CHANNELS[name]
    if ch.limb >= 0:  # optically thin: path length grows towards the limb (capped)
        profile = 1.0 + ch.limb * 0.3 * (1.0 / np.maximum(disk.mu, 0.15) - 1.0)
    else:  # UV continuum: limb darkening
        profile = disk.mu ** (-ch.limb)
    img = np.where(disk.on, ch.quiet * profile * (1.0 + ch.network * network), 0.0)
    if ch.corona > 0:
        off = ~disk.on
        img[off] = ch.quiet * ch.corona * np.exp(-(disk.r[off] - 1.0) / 0.08)
    # Region and flare light: on the disk, and above the limb only for the optically thin
    # EUV corona (falling off with height); the UV continuum has nothing off the disk.
    height = np.where(disk.on, 1.0, np.exp(-(disk.r - 1.0) / 0.05) if ch.corona > 0 else 0.0)
    active = np.zeros_like(img)
    for dist, separation, strength, complexity, response, env_width in regions:
        sigma = ch.width * separation
        core = ch.contrast * ch.core(complexity) * np.exp(-0.5 * (dist / sigma) ** 2)
        if ch.envelope:
            core = core + ch.envelope * response * np.exp(-0.5 * (dist / env_width) ** 2)
        active += ch.quiet * strength**ch.gamma * core
    sigma_flare = flare_sigma(disk)
    for dist, c1 in flares:
        active += ch.quiet * ch.flare_gain * c1 * np.exp(-0.5 * (dist / sigma_flare) ** 2)
    return img + active * height
