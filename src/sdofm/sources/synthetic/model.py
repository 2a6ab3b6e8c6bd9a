"""The synthetic Sun of one run: its settings, and its catalogues rendered at any time.

`SyntheticSun` holds the ``synthetic:`` config block; `SunModel` draws the regions, flares and
network of a seed once, then renders images and the disk-integrated quantities EVE, GOES and
F10.7 are made of.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sdofm import SdofmError
from sdofm.sources.sdoml import AIA_CHANNELS
from sdofm.sources.synthetic import flares as fl
from sdofm.sources.synthetic.corona import add_loop_temperatures, envelopes
from sdofm.sources.synthetic.instrument import (
    CHANNELS,
    DegradationTable,
    flare_sigma,
    render_channel,
)
from sdofm.sources.synthetic.network import make_network
from sdofm.sources.synthetic.sun import (
    RSUN_ARCSEC,
    Disk,
    b0_angle,
    make_regions,
    radial_field,
    region_states,
)

__all__ = ["SunModel", "SyntheticSun"]


@dataclass(frozen=True)
class SyntheticSun:
    """Settings of the synthetic Sun (the ``synthetic:`` config block)."""

    seed: int = 42
    start: str = "2011-01-01"
    end: str = "2012-01-01"
    cadence_minutes: int = 720
    eve_cadence_minutes: int = 60
    goes_cadence_minutes: int = 1
    image_size: int = 64
    regions_per_day: float = 0.3
    b0: bool = False
    megsa_end: str = "2014-05-26"
    fits_start: str | None = None
    fits_end: str | None = None
    fits_image_size: int = 256
    # ((start, seed), ...): from each start on, an independent Sun of that seed
    suns: tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "suns", tuple((str(d), int(s)) for d, s in self.suns))

    def segments(self) -> list[tuple[int, pd.Timestamp, pd.Timestamp]]:
        """(seed, start, end) of each Sun in time order: ``seed``'s from ``start``, then each of
        ``suns`` until the next one begins (or ``end``). One instrument sees them all."""
        bounds = [(self.start, self.seed), *self.suns]
        starts = [pd.Timestamp(d) for d, _ in bounds]
        seeds = [s for _, s in bounds]
        ends = [*starts[1:], pd.Timestamp(self.end)]
        if any(a >= b for a, b in zip(starts, ends, strict=True)):
            msg = "synthetic.suns: each Sun must start after the one before"
            msg += f" and before synthetic.end ({self.end}): {[str(t) for t in starts]}"
            raise SdofmError(msg)
        if len(set(seeds)) < len(seeds):
            msg = f"synthetic.suns: the seeds {seeds} repeat: an independent Sun needs its own seed"
            raise SdofmError(msg)
        return list(zip(seeds, starts, ends, strict=True))

    @classmethod
    def from_parameters(cls, path) -> SyntheticSun:
        """The settings a generated Sun recorded in its ground truth's ``parameters.json``."""
        return cls(**json.loads(Path(path).read_text())["settings"])

    def sun_index(self, times) -> np.ndarray:
        """The position in `segments` of the Sun seen at each of ``times``."""
        starts = pd.DatetimeIndex([start for _, start, _ in self.segments()]).as_unit("ns")
        at = pd.DatetimeIndex(times).as_unit("ns").asi8
        return np.maximum(np.searchsorted(starts.asi8, at, "right") - 1, 0)

    def sun_seed(self, times) -> np.ndarray:
        """The seed of the Sun seen at each of ``times``."""
        seeds = np.asarray([seed for seed, _, _ in self.segments()])
        return seeds[self.sun_index(times)]

    @property
    def times(self) -> pd.DatetimeIndex:
        return pd.date_range(
            self.start, self.end, freq=f"{self.cadence_minutes}min", inclusive="left"
        )


class SunModel:
    """Everything that is fixed for a run: catalogues, calibration, cached geometry."""

    def __init__(self, sun: SyntheticSun):
        self.sun = sun
        regions, flares, networks = [], [], []
        segments = sun.segments()
        for k, (seed, start, end) in enumerate(segments):
            r, f = _catalogues(sun, seed, start, end, first=k == 0, last=k == len(segments) - 1)
            offset = sum(map(len, regions))
            r = r.assign(region_id=r.region_id + offset, noaa_number=r.noaa_number + offset)
            regions.append(r.assign(sun_seed=seed, sun_start=start, sun_end=end))
            flares.append(
                f.assign(region_id=f.region_id + offset, noaa_number=f.noaa_number + offset)
            )
            # Its own stream: adding the network left the regions and flares of a seed as they were.
            networks.append(make_network(np.random.default_rng([seed, 5]), start))
        self.regions = pd.concat(regions, ignore_index=True)
        self.flares = pd.concat(flares, ignore_index=True) if len(flares) > 1 else flares[0]
        self.flare_set = fl.FlareSet(self.flares)
        self.degradation = DegradationTable()
        self.network = Networks(sun, networks)
        self._disks: dict[tuple[int, float, float], Disk] = {}
        self._hot: dict[pd.Timestamp, float] = {}
        # B0 of every frame in one ephemeris call (evaluated one at a time it costs ~30 ms)
        self._b0 = pd.Series(b0_angle(sun.times), index=sun.times) if sun.b0 else None

    def disk(self, t: pd.Timestamp, size: int, rsun_arcsec: float = RSUN_ARCSEC) -> Disk:
        b0 = 0.0
        if self._b0 is not None:
            b0 = round(float(self._b0[t]) if t in self._b0.index else b0_angle(t), 2)
        key = (size, b0, rsun_arcsec)
        if key not in self._disks:  # at most two geometries (SDOML, FITS): memory stays flat
            self._disks = {k: v for k, v in self._disks.items() if k[0] != size}
            self._disks[key] = Disk(size, b0, rsun_arcsec)
        return self._disks[key]

    def unsigned_flux(self, t: pd.Timestamp, limb_deg: float = 0.0) -> float:
        """Total unsigned flux (Mx) of the regions on the visible hemisphere; with ``limb_deg``
        a region's weight falls smoothly from 1 to 0 over that many degrees across the limb."""
        s = region_states(self.regions, t)
        if limb_deg <= 0:
            return float(2 * s.flux[s.visible].sum())
        weight = 0.5 * (1.0 + np.tanh((90.0 - np.abs(s.lon)) / (limb_deg / 4)))
        return float(2 * (s.flux * weight).sum())

    def render(
        self, t: pd.Timestamp, size: int, rsun_arcsec: float = RSUN_ARCSEC
    ) -> tuple[Disk, np.ndarray, dict[str, np.ndarray]]:
        """Noise-free radial field and AIA intensities at ``t`` (the Sun ``rsun_arcsec`` wide)."""
        disk = self.disk(t, size, rsun_arcsec)
        state = region_states(self.regions, t)
        network, network_field = self.network.maps(t, disk)
        br = radial_field(state, disk) + network_field
        front = np.flatnonzero(np.abs(state.lon) < 95.0)
        ids = state.region_id
        response, env_width = envelopes(
            state,
            self.regions["loop_dlogt"].to_numpy()[ids],
            self.regions["lifetime_days"].to_numpy()[ids],
        )
        regions = [
            (
                disk.distance(state.lat[i], state.lon[i]),
                np.deg2rad(state.separation[i]),
                state.flux[i] / 1e22,
                state.complexity[i],
                response[i],
                env_width[i],
            )
            for i in front
        ]
        images = {}
        fs = self.flare_set
        for name in AIA_CHANNELS:
            idx, level = fs.levels(t, CHANNELS[name].flare_delay_min)
            flare_maps = [
                (disk.distance(fs.lat[f], fs.lon[f]), lv)
                for f, lv in zip(idx, level[0], strict=True)
                if lv > 1e-3
            ]
            images[name] = render_channel(name, disk, regions, flare_maps, network)
        return disk, br, images

    def hot_cores(self, t: pd.Timestamp) -> float:
        """Σ over front-side regions of the square of their hot-core (94 Å) emission, in units
        of a β region of 1e22 Mx (the hot plasma's DEM weight, for EVE)."""
        if t not in self._hot:  # each frame's value is asked for twice (as lo, then as t)
            self._hot = {k: v for k, v in self._hot.items() if k >= t - pd.Timedelta(days=1)}
            self._hot[t] = self._hot_cores(region_states(self.regions, t))
        return self._hot[t]

    @staticmethod
    def _hot_cores(s) -> float:
        front = np.abs(s.lon) < 90.0
        hot = CHANNELS["94A"]
        core = (s.flux[front] / 1e22) ** hot.gamma * hot.core(s.complexity[front])
        return float((core**2).sum())

    def flare_disk_mean(self, times: pd.DatetimeIndex, name: str, size: int) -> np.ndarray:
        """Flare emission of channel ``name`` averaged over the image at ``times`` (for EVE)."""
        fs = self.flare_set
        idx, level = fs.levels(times, CHANNELS[name].flare_delay_min)
        if len(idx) == 0:
            return np.zeros(len(times))
        disk = self.disk(times[0], size)
        sigma_px = flare_sigma(disk) * disk.rsun_px
        mu = np.cos(np.deg2rad(fs.lat[idx])) * np.cos(np.deg2rad(fs.lon[idx]))
        area = 2 * np.pi * sigma_px**2 * np.clip(mu, 0.05, 1.0)  # foreshortened kernel
        ch = CHANNELS[name]
        return ch.quiet * ch.flare_gain * (level * area).sum(axis=1) / size**2


def _catalogues(sun, seed, start, end, *, first: bool, last: bool):
    """(regions, flares) of the Sun of ``seed`` seen from ``start`` to ``end``.

    Its regions emerge from a month before ``start`` (a Sun in progress when it is first seen);
    its flares peak from a day before the first Sun's start (a history for forecasts), and from
    the start of a later one. Flares stop 6 h before a following Sun so no decay crosses over.
    """
    rng = np.random.default_rng(seed)
    days = (end - start) / pd.Timedelta(days=1) + 30
    regions = make_regions(rng, rng.poisson(sun.regions_per_day * days), start, end)
    since = start - pd.Timedelta(days=1) if first else start
    until = end if last else end - pd.Timedelta(hours=6)
    flares = fl.make_flares(rng, regions, since, until)
    # Own streams (as the network's): what came before stays as it was for a seed.
    return add_loop_temperatures(regions, np.random.default_rng([seed, 6])), flares


class Networks:
    """The quiet-Sun network of each Sun (`network.Network`, one per `SyntheticSun.segments`)."""

    def __init__(self, sun: SyntheticSun, networks: list):
        self._sun, self._networks = sun, networks

    def maps(self, t: pd.Timestamp, disk: Disk) -> tuple[np.ndarray, np.ndarray]:
        network = self._networks[self._sun.sun_index([t])[0]]
        return network.maps(t, disk)

    def to_dict(self) -> dict | list[dict]:
        """The patches (ground truth): one Sun's, or a list with one entry per Sun."""
        out = [n.to_dict() for n in self._networks]
        return out[0] if len(out) == 1 else out
