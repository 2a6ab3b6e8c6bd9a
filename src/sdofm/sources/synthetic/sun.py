"""Active regions of the synthetic Sun: emergence, rotation, decay and their magnetic field."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "Disk",
    "RegionState",
    "b0_angle",
    "make_regions",
    "radial_field",
    "read_regions",
    "region_states",
    "snodgrass_rate",
]

RSUN_ARCSEC = 976.0  # SDOML v2 rescales the Sun to this radius
RSUN_CM = 6.957e10
SDOML_CDELT_512 = 4.8  # arcsec per pixel at 512² (0.6″ × 8)
# Seen from SDO the Sun turns slower than sidereal by Earth's orbital motion.
EARTH_ORBIT_DEG_PER_DAY = 0.9856
# Narrowest feature (in pixels) a kernel is rendered at, so pixel sums conserve its integral.
MIN_SIGMA_PX = 0.6
MIN_SPOT_PX = 1.0  # narrowest sunspot drawn: at 64² a spot (σ ≈ 0.75°) is a third of a pixel
MIN_PAIR_SIGMAS = 3.0  # spots of a bipole at least this many widths apart
DELTA_SHARE = 0.3  # share of a region's flux in each δ-spot
DELTA_SIGMAS = 2.5  # distance of a δ-spot from the leading spot, in spot widths
GROWTH_DAYS = 3.0  # regions emerge over a few days, then decay exponentially


def snodgrass_rate(lat_deg: np.ndarray | float) -> np.ndarray:
    """Sidereal differential rotation rate (deg/day), Snodgrass & Ulrich (1990)."""
    s2 = np.sin(np.deg2rad(lat_deg)) ** 2
    return 14.713 - 2.396 * s2 - 1.787 * s2**2


def b0_angle(t: pd.Timestamp | pd.DatetimeIndex) -> float | np.ndarray:
    """Heliographic latitude of the disk centre (deg) seen from Earth: sunpy's B0 ephemeris
    (±7.25° over the year, 0 near 6 June and 8 December). An index is evaluated at once (one
    call per time costs ~30 ms)."""
    from astropy.time import Time  # sunpy.coordinates costs ~1 s to import: only when tilted
    from sunpy.coordinates.sun import B0

    times = pd.DatetimeIndex(np.atleast_1d(pd.to_datetime(t)))
    b0 = B0(Time(times.to_numpy("datetime64[ns]"))).deg
    return float(b0[0]) if isinstance(t, pd.Timestamp) else np.asarray(b0, float)


def make_regions(
    rng: np.random.Generator, n: int, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """The active-region catalogue, the ground truth of the magnetic field.

    Latitudes ±N(15.7°, 6.1°), Joy's-law tilt (leading spot nearer the equator), lognormal flux,
    Hale polarity by hemisphere, and complexity (Mount Wilson-like 1 = β, 2 = βγ, 3 = βγδ) more
    likely for large flux.
    """
    span = (end - start) / pd.Timedelta(days=1) + 30.0
    hemisphere = rng.choice([-1.0, 1.0], n)
    lat = hemisphere * np.clip(rng.normal(15.7, 6.1, n), 2.0, 40.0)
    flux = np.exp(rng.normal(np.log(3e21), 0.8, n))
    p_complex = np.clip(0.1 + 0.25 * np.log(flux / 3e21), 0.02, 0.9)
    complexity = 1 + (rng.uniform(size=n) < p_complex) + (rng.uniform(size=n) < p_complex / 2)
    return pd.DataFrame(
        {
            "region_id": np.arange(n),
            "noaa_number": 11000 + np.arange(n),
            "emergence": start + pd.to_timedelta(rng.uniform(-30.0, span - 30.0, n), unit="D"),
            "latitude_deg": lat,
            # Stonyhurst longitude at emergence: regions emerge all around the Sun.
            "longitude_deg": rng.uniform(-180.0, 180.0, n),
            "tilt_deg": 0.5 * np.abs(lat),  # Joy's law
            "flux_mx": flux,
            "separation_deg": np.clip(3.0 * (flux / 3e21) ** 0.4, 1.5, 10.0),
            "lifetime_days": rng.lognormal(np.log(15.0), 0.4, n),
            "polarity": hemisphere,  # Hale's law: leading polarity by hemisphere
            "complexity": complexity.astype(int),
        }
    )


def growth(age_days: np.ndarray, lifetime_days: np.ndarray) -> np.ndarray:
    """Fraction of a region's peak flux at a given age (0 before emergence)."""
    a = np.asarray(age_days, float)
    g = np.minimum(a / GROWTH_DAYS, 1.0) * np.exp(-np.maximum(a - GROWTH_DAYS, 0.0) / lifetime_days)
    return np.where(a >= 0, g, 0.0)


@dataclass
class RegionState:
    """Where the active regions are at one time, and how strong."""

    region_id: np.ndarray
    lat: np.ndarray  # deg
    lon: np.ndarray  # Stonyhurst deg in [-180, 180)
    flux: np.ndarray  # Mx, current (peak flux × growth)
    separation: np.ndarray  # deg between the spots
    tilt: np.ndarray  # deg
    polarity: np.ndarray
    complexity: np.ndarray
    age: np.ndarray  # days since emergence

    @property
    def visible(self) -> np.ndarray:
        return np.abs(self.lon) < 90.0


def region_states(regions: pd.DataFrame, t: pd.Timestamp) -> RegionState:
    """Positions (Snodgrass rotation) and fluxes of the living regions at time ``t``: those of
    the Sun seen at ``t`` (``sun_start`` <= t < ``sun_end``) where the table has several."""
    # numpy, not pandas arithmetic: this runs several times a frame
    now = np.datetime64(pd.Timestamp(t).as_unit("ns"))
    since = now - regions["emergence"].to_numpy("M8[ns]")
    age = since.astype(np.int64) / 1e9 / 86400.0  # as Series.dt.total_seconds() / 86400
    g = growth(age, regions["lifetime_days"].to_numpy())
    if "sun_end" in regions:
        g = np.where(
            (regions["sun_start"].to_numpy("M8[ns]") <= now)
            & (now < regions["sun_end"].to_numpy("M8[ns]")),
            g,
            0.0,
        )
    alive = np.flatnonzero(g > 1e-3)

    def column(name: str) -> np.ndarray:
        return regions[name].to_numpy()[alive]

    lat = column("latitude_deg")
    rate = snodgrass_rate(lat) - EARTH_ORBIT_DEG_PER_DAY
    lon = (column("longitude_deg") + rate * age[alive] + 180.0) % 360.0 - 180.0
    return RegionState(
        region_id=column("region_id"),
        lat=lat,
        lon=lon,
        flux=column("flux_mx") * g[alive],
        separation=column("separation_deg"),
        tilt=column("tilt_deg"),
        polarity=column("polarity"),
        complexity=column("complexity"),
        age=age[alive],
    )


def read_regions(path) -> pd.DataFrame:
    """The region catalogue ``regions.csv`` of a synthetic Sun's ground truth, times parsed."""
    table = pd.read_csv(path)
    for col in ("emergence", "sun_start", "sun_end"):
        if col in table:
            table[col] = pd.to_datetime(table[col])
    return table


class Disk:
    """Pixel geometry of the disk at one image size, B0 angle and solar radius (SDOML v2: 976″)."""

    def __init__(self, size: int, b0_deg: float = 0.0, rsun_arcsec: float = RSUN_ARCSEC):
        self.size = size
        self.b0_deg = b0_deg
        self.cdelt = SDOML_CDELT_512 * 512 / size  # arcsec per pixel (0.6″ at 4096²)
        self.rsun_px = rsun_arcsec / self.cdelt  # SDOML: 976″; level-1 files: as observed
        c = (size - 1) / 2
        yy, xx = np.mgrid[0:size, 0:size]
        self.x = (xx - c) / self.rsun_px  # solar-west, in solar radii
        self.y = (yy - c) / self.rsun_px  # solar-north
        self.r = np.hypot(self.x, self.y)
        self.on = self.r < 1.0
        self.mu = np.sqrt(np.clip(1.0 - self.r**2, 0.0, 1.0))  # cosine of the viewing angle
        b0 = np.deg2rad(b0_deg)
        # Heliographic coordinates of each on-disk pixel (observer tilted by B0).
        self.lat = np.arcsin(np.clip(self.y * np.cos(b0) + self.mu * np.sin(b0), -1.0, 1.0))
        self.lon = np.arctan2(self.x, self.mu * np.cos(b0) - self.y * np.sin(b0))
        self._sin_lat, self._cos_lat = np.sin(self.lat), np.cos(self.lat)

    def distance(self, lat_deg: float, lon_deg: float) -> np.ndarray:
        """Great-circle distance (rad) of each pixel's surface point from (lat, lon)."""
        return self._arc(np.deg2rad(lat_deg), np.deg2rad(lon_deg), ...)

    def distance2(self, lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
        """Squared great-circle distance (rad²) of many points to the on-disk pixels:
        (points, on-disk pixels)."""
        la, lo = np.deg2rad(lat_deg)[:, None], np.deg2rad(lon_deg)[:, None]
        return self._arc(la, lo, self.on) ** 2

    def _arc(self, lat: np.ndarray | float, lon: np.ndarray | float, pixels) -> np.ndarray:
        """Great-circle distance (rad) from (lat, lon) in rad to the surface points of the
        ``pixels`` (an index of the image: ``...`` for all, a mask)."""
        sin_lat, cos_lat = self._sin_lat[pixels], self._cos_lat[pixels]
        cosd = sin_lat * np.sin(lat) + cos_lat * np.cos(lat) * np.cos(self.lon[pixels] - lon)
        return np.arccos(np.clip(cosd, -1.0, 1.0))


def _spots(state: RegionState, disk: Disk) -> tuple[np.ndarray, ...]:
    """(lat, lon, signed flux, σ) of every spot of the regions near the visible hemisphere.

    Each region is a leading and a following spot along its tilted axis. Spots are drawn no
    narrower than `MIN_SPOT_PX` and a pair no closer than `MIN_PAIR_SIGMAS` widths (a bipole
    below the resolution is drawn at the smallest size the pixels resolve). A complex region
    (complexity 2, 3) has one or two δ-spots: a share `DELTA_SHARE` of the following polarity's
    flux intruding next to the leading spot, with a steep polarity inversion line between them.
    """
    i = np.flatnonzero(np.abs(state.lon) < 100.0)
    lat0, lon0 = state.lat[i], state.lon[i]
    sigma = np.maximum(np.deg2rad(state.separation[i] / 4), MIN_SPOT_PX / disk.rsun_px)
    half = np.maximum(np.deg2rad(state.separation[i]), MIN_PAIR_SIGMAS * sigma) / 2
    tilt = np.deg2rad(state.tilt[i])
    coslat = np.cos(np.deg2rad(lat0))
    dlat = np.rad2deg(half * np.sin(tilt)) * -np.sign(lat0)  # leader nearer the equator
    dlon = np.rad2deg(half * np.cos(tilt)) / coslat
    flux, pol = state.flux[i], state.polarity[i]
    n_delta = state.complexity[i] - 1
    lead = (lat0 + dlat, lon0 + dlon)
    # δ-spots beside the leader, across the bipole axis (north/south), one width away.
    off = np.rad2deg(DELTA_SIGMAS * sigma)
    lats = [lead[0], lat0 - dlat, lead[0] + off, lead[0] - off]
    lons = [lead[1], lon0 - dlon, lead[1], lead[1]]
    share = DELTA_SHARE * flux
    fluxes = [
        pol * flux,
        -pol * (flux - share * n_delta),
        -pol * share * (n_delta >= 1),
        -pol * share * (n_delta >= 2),
    ]
    return (
        np.concatenate(lats),
        np.concatenate(lons),
        np.concatenate(fluxes),
        np.tile(sigma, 4),
    )


def radial_field(state: RegionState, disk: Disk) -> np.ndarray:
    """Radial field B_r (G) on the visible disk: Gaussian spots, B = Φ / (2π σ²) each, so the
    integrated flux of each spot is its flux (see `_spots`)."""
    lat, lon, flux, sigma = _spots(state, disk)
    keep = flux != 0
    if not keep.any():
        return np.zeros(disk.x.shape)
    lat, lon, flux, sigma = lat[keep], lon[keep], flux[keep], sigma[keep]
    d2 = disk.distance2(lat, lon)
    peak = flux / (2 * np.pi * (sigma * RSUN_CM) ** 2)
    br = np.zeros(disk.x.shape)
    br[disk.on] = peak @ np.exp(-0.5 * d2 / (sigma**2)[:, None])
    return br
