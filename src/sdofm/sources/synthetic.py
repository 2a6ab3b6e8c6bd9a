"""A deterministic synthetic Sun written as SDOML v2 AIA, HMI and EVE stores, with its ground truth.

Active regions emerge at ±N(15.7°, 6.1°) latitude with Joy's-law tilt and lognormal flux, rotate
differentially (Snodgrass) and decay. HMI sees their radial field projected on the disk; each AIA
channel sees a limb-brightened (EUV) or limb-darkened (UV) quiet Sun plus region emission with a
channel-specific temperature response, photon noise, varying exposure and slow degradation. EVE
MEGS-A lines are noisy, partly non-linear functions of the disk-integrated emission of the channels
that see their formation temperature, so they can be learnt from the AIA images.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from sdofm.io import atomic_output
from sdofm.sources.sdoml import AIA_CHANNELS, COMPRESSOR, EVE_GROUP, EVE_TIME_FORMAT, HMI_COMPONENTS

__all__ = ["EVE_LINES", "SyntheticSun", "generate"]

RSUN_ARCSEC = 976.0  # SDOML v2 rescales the Sun to this radius
SDOML_CDELT_512 = 4.8  # arcsec per pixel at 512² (0.6″ × 8)
# Sidereal Snodgrass rate minus Earth's orbital motion gives the rate seen from SDO.
EARTH_ORBIT_DEG_PER_DAY = 0.9856

# Per channel: quiet-Sun level (DN/s), region contrast, response exponent to field strength,
# limb coefficient (+ brightening in the optically thin EUV, − darkening in the UV continuum),
# off-limb corona fraction, nominal exposure (s) and degradation e-folding time (years).
CHANNEL_PHYSICS = {
    "94A": (1.5, 40.0, 1.6, 0.6, 0.30, 2.9, 25.0),
    "131A": (8.0, 20.0, 1.4, 0.6, 0.30, 2.9, 12.0),
    "171A": (300.0, 8.0, 0.9, 0.8, 0.40, 2.0, 9.0),
    "193A": (300.0, 6.0, 1.1, 0.8, 0.40, 2.0, 8.0),
    "211A": (80.0, 10.0, 1.2, 0.8, 0.35, 2.9, 7.0),
    "304A": (60.0, 10.0, 1.0, 0.5, 0.25, 2.9, 3.0),
    "335A": (5.0, 15.0, 1.3, 0.7, 0.30, 2.9, 4.0),
    "1600A": (50.0, 2.0, 0.8, -0.4, 0.0, 1.0, 10.0),
    "1700A": (700.0, 1.3, 0.6, -0.5, 0.0, 1.0, 15.0),
}
DEGRADATION_EPOCH = pd.Timestamp("2010-05-01")

# MEGS-A lines used by the virtual-EVE task (Szenicer et al. 2019): base irradiance (W/m²),
# non-linearity exponent, and weights of the AIA channels that see the formation temperature.
EVE_LINES = {
    "Fe XVIII": (2.0e-6, 1.3, {"94A": 1.0}),
    "Fe VIII": (5.0e-6, 0.9, {"131A": 0.7, "171A": 0.3}),
    "Fe XX": (1.0e-6, 1.4, {"131A": 0.5, "94A": 0.5}),
    "Fe IX": (4.0e-5, 0.9, {"171A": 1.0}),
    "Fe X": (3.0e-5, 1.0, {"171A": 0.5, "193A": 0.5}),
    "Fe XI": (3.5e-5, 1.0, {"193A": 1.0}),
    "Fe XII": (2.5e-5, 1.05, {"193A": 0.7, "211A": 0.3}),
    "Fe XIII": (1.5e-5, 1.1, {"211A": 0.6, "193A": 0.4}),
    "Fe XIV": (1.0e-5, 1.15, {"211A": 0.6, "335A": 0.4}),
    "He II": (3.0e-5, 0.85, {"304A": 1.0}),
    "Fe XV": (1.2e-5, 1.2, {"335A": 0.6, "211A": 0.4}),
    "He II_2": (2.0e-4, 0.8, {"304A": 0.8, "1600A": 0.2}),
    "Fe XVI": (8.0e-6, 1.25, {"335A": 1.0}),
    "Mg IX": (6.0e-6, 0.95, {"171A": 0.6, "193A": 0.4}),
}


@dataclass(frozen=True)
class SyntheticSun:
    """Settings of the synthetic Sun (the `synthetic:` config block)."""

    seed: int = 42
    start: str = "2011-01-01"
    end: str = "2012-01-01"
    cadence_minutes: int = 720
    eve_cadence_minutes: int = 60
    image_size: int = 64
    n_regions: int = 40
    megsa_end: str = "2014-05-26"

    @property
    def times(self) -> pd.DatetimeIndex:
        return pd.date_range(
            self.start, self.end, freq=f"{self.cadence_minutes}min", inclusive="left"
        )


def _regions(sun: SyntheticSun, rng: np.random.Generator) -> pd.DataFrame:
    """The active-region catalogue: the ground truth of the magnetic field."""
    start, end = pd.Timestamp(sun.start), pd.Timestamp(sun.end)
    span = (end - start) / pd.Timedelta(days=1) + 30.0
    n = sun.n_regions
    hemisphere = rng.choice([-1.0, 1.0], n)
    lat = hemisphere * np.clip(rng.normal(15.7, 6.1, n), 2.0, 40.0)
    return pd.DataFrame(
        {
            "region_id": np.arange(n),
            "emergence": start + pd.to_timedelta(rng.uniform(-30.0, span - 30.0, n), unit="D"),
            "latitude_deg": lat,
            # Stonyhurst longitude at emergence: regions emerge all around the Sun.
            "longitude_deg": rng.uniform(-180.0, 180.0, n),
            "tilt_deg": 0.5 * np.abs(lat) * hemisphere,  # Joy's law, leading polarity equatorward
            "flux_mx": np.exp(rng.normal(np.log(3e21), 0.7, n)),
            "size_deg": rng.uniform(2.0, 4.5, n),
            "lifetime_days": rng.lognormal(np.log(15.0), 0.4, n),
            "polarity": hemisphere,  # Hale's law: leading polarity by hemisphere
        }
    )


def snodgrass_rate(lat_deg: np.ndarray) -> np.ndarray:
    """Sidereal differential rotation rate (deg/day), Snodgrass & Ulrich (1990)."""
    s2 = np.sin(np.deg2rad(lat_deg)) ** 2
    return 14.713 - 2.396 * s2 - 1.787 * s2**2


class _Disk:
    """Pixel geometry of the solar disk at one image size."""

    def __init__(self, size: int):
        self.size = size
        self.cdelt = SDOML_CDELT_512 * 512 / size
        self.rsun_px = RSUN_ARCSEC / self.cdelt
        c = (size - 1) / 2
        yy, xx = np.mgrid[0:size, 0:size]
        self.x = (xx - c) / self.rsun_px
        self.y = (yy - c) / self.rsun_px
        self.r = np.hypot(self.x, self.y)
        self.on = self.r < 1.0
        self.mu = np.sqrt(np.clip(1.0 - self.r**2, 0.0, 1.0))
        self.lat = np.arcsin(np.clip(self.y, -1.0, 1.0))
        self.lon = np.arctan2(self.x, np.where(self.on, self.mu, 1e-9))


def _region_fields(regions: pd.DataFrame, t: pd.Timestamp, disk: _Disk) -> tuple:
    """Radial field (G) on the disk and the region weights each channel responds to."""
    br = np.zeros(disk.x.shape)
    strength = np.zeros(disk.x.shape)
    age = (t - regions["emergence"]).dt.total_seconds().to_numpy() / 86400.0
    for row, a in zip(regions.itertuples(), age, strict=True):
        if a < 0 or a > 6 * row.lifetime_days:
            continue
        growth = min(a / 3.0, 1.0) * np.exp(-max(a - 3.0, 0.0) / row.lifetime_days)
        rate = snodgrass_rate(row.latitude_deg) - EARTH_ORBIT_DEG_PER_DAY
        lon_c = np.deg2rad((row.longitude_deg + rate * a + 180.0) % 360.0 - 180.0)
        lat_c = np.deg2rad(row.latitude_deg)
        if abs(lon_c) > np.deg2rad(100):
            continue  # on the far side
        half = np.deg2rad(row.size_deg)
        tilt = np.deg2rad(row.tilt_deg)
        peak = 2500.0 * (row.flux_mx / 3e21) ** 0.3 * growth
        sigma = np.deg2rad(row.size_deg) * 0.6
        for sign in (1.0, -1.0):  # leading (+) and following (−) spots of the bipole
            lat_p = lat_c + sign * half * np.sin(tilt) * -np.sign(row.latitude_deg)
            lon_p = lon_c + sign * half * np.cos(tilt)
            cosd = np.sin(disk.lat) * np.sin(lat_p) + np.cos(disk.lat) * np.cos(lat_p) * np.cos(
                disk.lon - lon_p
            )
            d = np.arccos(np.clip(cosd, -1.0, 1.0))
            spot = peak * np.exp(-0.5 * (d / sigma) ** 2)
            br += sign * row.polarity * spot
            strength += spot
    return br * disk.on, strength * disk.on


def _aia_frame(channel: str, strength: np.ndarray, disk: _Disk) -> np.ndarray:
    """Noise-free AIA intensity (DN/s) of one channel."""
    quiet, contrast, gamma, limb, corona, _, _ = CHANNEL_PHYSICS[channel]
    if limb >= 0:  # optically thin: brighter towards the limb, capped near it
        disk_profile = 1.0 + limb * (1.0 / np.maximum(disk.mu, 0.15) - 1.0) * 0.3
    else:  # UV continuum: limb darkening
        disk_profile = disk.mu ** (-limb)
    img = np.where(disk.on, quiet * disk_profile, 0.0)
    if corona > 0:
        off = ~disk.on
        img[off] = quiet * corona * np.exp(-(disk.r[off] - 1.0) / 0.08)
    img += quiet * contrast * (strength / 1000.0) ** gamma
    return img


def _year_slices(times: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    years = times.year.to_numpy()
    return {str(y): np.flatnonzero(years == y) for y in np.unique(years)}


def _frame_arrays(group: zarr.Group, names, n: int, shape: tuple) -> dict[str, zarr.Array]:
    """SDOML v2 frame arrays: (n, H, W) float32, 15-frame chunks, Blosc zstd."""
    return {
        name: group.create_array(
            name, shape=(n, *shape), chunks=(15, *shape), dtype="float32", compressors=COMPRESSOR
        )
        for name in names
    }


def _write_aia_hmi(sun, regions, disk, aia_path: Path, hmi_path: Path, rng_seed: int) -> np.ndarray:
    """Write the AIA and HMI stores; return the noise-free disk-mean of each AIA channel."""
    times = sun.times
    n_ch = len(AIA_CHANNELS)
    disk_mean = np.zeros((len(times), n_ch))
    aia = zarr.open_group(aia_path, mode="w", zarr_format=2)
    hmi = zarr.open_group(hmi_path, mode="w", zarr_format=2)
    shape = (disk.size, disk.size)
    common = {
        "CDELT1": disk.cdelt,
        "CDELT2": disk.cdelt,
        "CRPIX1": (disk.size + 1) / 2,
        "CRPIX2": (disk.size + 1) / 2,
        "CRVAL1": 0.0,
        "CRVAL2": 0.0,
        "CTYPE1": "HPLN-TAN",
        "CTYPE2": "HPLT-TAN",
        "CUNIT1": "arcsec",
        "CUNIT2": "arcsec",
        "R_SUN": disk.rsun_px,
        "RSUN_OBS": RSUN_ARCSEC,
        "DSUN_OBS": 1.496e11,
    }
    for year, idx in _year_slices(times).items():
        aia_arrays = _frame_arrays(aia.require_group(year), AIA_CHANNELS, len(idx), shape)
        hmi_arrays = _frame_arrays(hmi.require_group(year), HMI_COMPONENTS, len(idx), shape)
        aia_attrs = {
            ch: {k: [] for k in ("T_OBS", "EXPTIME", "DEG_COR", "QUALITY")} for ch in AIA_CHANNELS
        }
        hmi_attrs = {"T_OBS": [], "QUALITY": []}
        # Frames are buffered a chunk (15 frames) at a time: writing single frames into
        # compressed 15-frame chunks would re-compress each chunk 15 times.
        aia_buf = np.zeros((n_ch, 15, *shape), "float32")
        hmi_buf = np.zeros((len(HMI_COMPONENTS), 15, *shape), "float32")
        for j, i in enumerate(idx):
            t = times[i]
            b = j % 15
            rng = np.random.default_rng([rng_seed, int(i)])
            br, strength = _region_fields(regions, t, disk)
            # HMI: the radial field projected on the line of sight and the image plane.
            for comp, proj in zip(HMI_COMPONENTS, (disk.x, disk.y, disk.mu), strict=True):
                noise = rng.normal(0.0, 8.0, shape) * disk.on
                hmi_buf[HMI_COMPONENTS.index(comp), b] = br * proj + noise
            hmi_attrs["T_OBS"].append(
                (t + pd.Timedelta(seconds=34)).strftime("%Y.%m.%d_%H:%M:%S_TAI")
            )
            hmi_attrs["QUALITY"].append(0)
            years_since = (t - DEGRADATION_EPOCH) / pd.Timedelta(days=365.25)
            for k, ch in enumerate(AIA_CHANNELS):
                true = _aia_frame(ch, strength, disk)
                disk_mean[i, k] = true.mean()
                *_, exptime, tau = CHANNEL_PHYSICS[ch]
                exptime *= rng.uniform(0.85, 1.0)
                degradation = np.exp(-years_since / tau)
                # Photon noise on the degraded raw counts, then SDOML's correction:
                # divide by exposure and degradation.
                counts = rng.poisson(true * exptime * degradation)
                aia_buf[k, b] = counts / (exptime * degradation)
                tobs = t + pd.Timedelta(seconds=float(rng.uniform(0, 12)))
                aia_attrs[ch]["T_OBS"].append(tobs.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-4] + "Z")
                aia_attrs[ch]["EXPTIME"].append(round(float(exptime), 6))
                aia_attrs[ch]["DEG_COR"].append(round(float(degradation), 6))
                aia_attrs[ch]["QUALITY"].append(0)
            if b == 14 or j == len(idx) - 1:
                lo = j - b
                for k, ch in enumerate(AIA_CHANNELS):
                    aia_arrays[ch][lo : j + 1] = aia_buf[k, : b + 1]
                for k, comp in enumerate(HMI_COMPONENTS):
                    hmi_arrays[comp][lo : j + 1] = hmi_buf[k, : b + 1]
        for ch in AIA_CHANNELS:
            n = len(idx)
            aia_arrays[ch].attrs.update(
                {
                    **{k: [v] * n for k, v in common.items()},
                    **aia_attrs[ch],
                    "WAVELNTH": [int(ch[:-1])] * n,
                    "WAVEUNIT": ["angstrom"] * n,
                    "PIXLUNIT": ["DN/s"] * n,
                    "TELESCOP": ["SDO/AIA"] * n,
                }
            )
        for comp in HMI_COMPONENTS:
            hmi_arrays[comp].attrs.update(
                {
                    **{k: [v] * len(idx) for k, v in common.items()},
                    **hmi_attrs,
                    "BUNIT": ["Gauss"] * len(idx),
                    "TELESCOP": ["SDO/HMI"] * len(idx),
                }
            )
    return disk_mean


def _write_eve(sun: SyntheticSun, disk_mean: np.ndarray, path: Path, rng_seed: int) -> None:
    """EVE MEGS-A lines from the disk-integrated AIA emission, interpolated to the EVE cadence."""
    aia_t = sun.times
    eve_t = pd.date_range(
        sun.start, sun.end, freq=f"{sun.eve_cadence_minutes}min", inclusive="left"
    )
    x_aia = (aia_t - aia_t[0]).total_seconds().to_numpy()
    x_eve = (eve_t - aia_t[0]).total_seconds().to_numpy()
    quiet = np.array([CHANNEL_PHYSICS[ch][0] for ch in AIA_CHANNELS])
    rel = (
        np.stack(
            [np.interp(x_eve, x_aia, disk_mean[:, k]) for k in range(len(AIA_CHANNELS))], axis=1
        )
        / quiet
    )
    rng = np.random.default_rng([rng_seed, 7])
    megsa_alive = eve_t < pd.Timestamp(sun.megsa_end)
    group = zarr.open_group(path, mode="w", zarr_format=2).require_group(EVE_GROUP)
    time_arr = group.create_array("Time", shape=(len(eve_t),), chunks=(len(eve_t),), dtype=str)
    time_arr[:] = np.array([t.strftime(EVE_TIME_FORMAT) for t in eve_t])
    for line, (base, power, weights) in EVE_LINES.items():
        drive = sum(w * rel[:, AIA_CHANNELS.index(ch)] for ch, w in weights.items())
        value = base * drive**power * (1.0 + rng.normal(0.0, 0.003, len(eve_t)))
        # Negative marks missing data, as in SDOML v2: after MEGS-A ended and in rare dropouts.
        value[~megsa_alive | (rng.uniform(size=len(eve_t)) < 0.01)] = -1.0
        arr = group.create_array(line, shape=(len(eve_t),), chunks=(len(eve_t),), dtype="float32")
        arr[:] = value.astype("float32")
        arr.attrs.update({"units": "W/m^2", "channels": sorted(weights)})


def generate(sun: SyntheticSun, out: str | Path) -> dict[str, Path]:
    """Write the synthetic SDOML v2 mirror (AIA, HMI, EVE stores) and ground truth to ``out``.

    Output is written through `atomic_output`: nothing carries the final name until complete.
    """
    with atomic_output(out) as tmp:
        tmp.mkdir()
        _generate(sun, tmp)
    return {p.name: p for p in Path(out).iterdir()}


def _generate(sun: SyntheticSun, tmp: Path) -> None:
    rng = np.random.default_rng(sun.seed)
    regions = _regions(sun, rng)
    disk = _Disk(sun.image_size)
    disk_mean = _write_aia_hmi(
        sun, regions, disk, tmp / "sdomlv2_small.zarr", tmp / "sdomlv2_hmi.zarr", sun.seed
    )
    _write_eve(sun, disk_mean, tmp / "sdomlv2_eve.zarr", sun.seed)
    truth = tmp / "ground_truth"
    truth.mkdir()
    regions.to_csv(truth / "regions.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S")
    pd.DataFrame(disk_mean, index=sun.times.rename("time"), columns=list(AIA_CHANNELS)).to_csv(
        truth / "aia_disk_mean.csv"
    )
    params = {
        "settings": asdict(sun),
        "channel_physics": {
            ch: dict(
                zip(
                    ("quiet", "contrast", "gamma", "limb", "corona", "exptime", "tau_years"),
                    v,
                    strict=True,
                )
            )
            for ch, v in CHANNEL_PHYSICS.items()
        },
        "eve_lines": {
            k: {"base": b, "power": p, "weights": w} for k, (b, p, w) in EVE_LINES.items()
        },
    }
    (truth / "parameters.json").write_text(json.dumps(params, indent=2))
