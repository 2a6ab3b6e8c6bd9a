"""Level-1 FITS files of the synthetic Sun, read by sunpy and aiapy as real SDO files are."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
import sunpy.map
import zarr
from aiapy.calibrate import register
from astropy.io import fits
from sunpy.map.sources import AIAMap, HMIMap

from sdofm.sources.sdoml import AIA_CHANNELS, frame_times
from sdofm.sources.synthetic import SyntheticSun, generate

# Four hourly frames; FITS at twice the store's resolution for every frame (64² store frames
# resolve the compact hot-channel loops, so both resolutions agree to ~1 %).
SUN = SyntheticSun(
    seed=3,
    start="2011-02-01",
    end="2011-02-01T04:00",
    cadence_minutes=60,
    eve_cadence_minutes=60,
    goes_cadence_minutes=60,
    image_size=64,
    regions_per_day=0.3,
    fits_start="2011-02-01",
    fits_end="2011-02-01T04:00",
    fits_image_size=128,
)
RSUN_ARCSEC = 976.0  # SDOML v2 scales the Sun to this radius
FULL_RES = 4096  # AIA's detector: 0.6″ pixels at level 1.5


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fits") / "sun"
    generate(SUN, out)
    return out


@pytest.fixture(scope="module")
def aia_store(run) -> zarr.Group:
    return zarr.open_group(run / "sdomlv2_small.zarr", mode="r")["2011"]


def _aia_files(run: Path, channel: str = "") -> list[Path]:
    return sorted((run / "fits" / "aia").glob(f"aia.lev1.{channel}*.fits"))


def _store_frame(store: zarr.Group, channel: str, when: pd.Timestamp) -> int:
    """Index of the store frame of ``channel`` observed at ``when`` (T_OBS within 1 s)."""
    t = frame_times(store[channel])
    k = int(np.argmin(np.abs(t - when)))
    assert abs((t[k] - when).total_seconds()) < 1.0, (channel, when, t[k])
    return k


def _utc(time) -> pd.Timestamp:
    return pd.Timestamp(time.utc.isot)


def test_every_frame_has_files(run, aia_store):
    """One file per channel and frame, and one magnetogram per frame."""
    n = len(SUN.times)
    for ch in AIA_CHANNELS:
        assert len(_aia_files(run, f"{ch}_")) == n, ch
        assert aia_store[ch].shape[0] == n
    assert len(list((run / "fits" / "hmi").glob("*.fits"))) == n


@pytest.mark.parametrize("channel", AIA_CHANNELS)
def test_aia_file_is_an_aia_map(channel, run, aia_store):
    """sunpy reads each file as a level-1 AIAMap in DN with the store's time, exposure,
    wavelength and the SDOML solar radius."""
    for path in _aia_files(run, f"{channel}_"):
        m = sunpy.map.Map(path)
        assert isinstance(m, AIAMap)
        assert m.wavelength == int(channel[:-1]) * u.AA
        assert m.processing_level == 1
        assert m.unit == u.DN
        assert m.data.dtype == np.int16
        assert m.dimensions.x == m.dimensions.y == SUN.fits_image_size * u.pix
        k = _store_frame(aia_store, channel, _utc(m.reference_date))
        assert m.exposure_time.to_value(u.s) == pytest.approx(
            aia_store[channel].attrs["EXPTIME"][k]
        )
        # DATE-OBS is the start of the exposure, half of it before T_OBS.
        half = (m.reference_date - m.date).to_value(u.s)
        assert half == pytest.approx(m.exposure_time.to_value(u.s) / 2, abs=0.01)
        assert path.name.startswith(f"aia.lev1.{channel}_{m.reference_date.isot[:10]}")
        # The disk at its observed radius (the store's RSUN_OBS, from SDO's distance to the
        # Sun), R_SUN pixels of CDELT1 arcsec, centred.
        rsun = aia_store[channel].attrs["RSUN_OBS"][k]
        assert 944 < rsun < 977 and m.rsun_obs.to_value(u.arcsec) == pytest.approx(rsun)
        cdelt = m.scale.axis1.to_value(u.arcsec / u.pix)
        assert m.meta["r_sun"] * cdelt == pytest.approx(rsun)
        assert cdelt == pytest.approx(0.6 * FULL_RES / SUN.fits_image_size)
        dsun = m.observer_coordinate.radius.to_value(u.m)
        assert dsun == pytest.approx(aia_store[channel].attrs["DSUN_OBS"][k])
        assert np.rad2deg(np.arcsin(6.96e8 / dsun)) * 3600 == pytest.approx(rsun)
        centre = m.world_to_pixel(m.center)
        assert centre.x.value == pytest.approx((SUN.fits_image_size - 1) / 2)


def test_hmi_file_is_an_hmi_map(run):
    """sunpy reads each magnetogram as an HMIMap at the HMI store's frame time (T_OBS in TAI)."""
    hmi = zarr.open_group(run / "sdomlv2_hmi.zarr", mode="r")["2011"]
    store_times = frame_times(hmi["Bz"])
    paths = sorted((run / "fits" / "hmi").glob("hmi.m_45s.*_TAI.fits"))
    assert paths
    for path in paths:
        m = sunpy.map.Map(path)
        assert isinstance(m, HMIMap)
        assert m.measurement == "magnetogram"
        assert m.unit == u.Mx / u.cm**2
        when = _utc(m.reference_date)
        assert np.abs(store_times - when).min() < pd.Timedelta(seconds=1), when
        assert path.name == f"hmi.m_45s.{when:%Y%m%d_%H%M%S}_TAI.fits"
        k = int(np.abs(store_times - when).argmin())
        rsun = hmi["Bz"].attrs["RSUN_OBS"][k]
        assert m.rsun_obs.to_value(u.arcsec) == pytest.approx(rsun) and rsun < RSUN_ARCSEC
        assert m.meta["r_sun"] * m.scale.axis1.to_value(u.arcsec / u.pix) == pytest.approx(rsun)
        data = np.asarray(m.data, np.float64)
        assert np.isfinite(data).all() and np.abs(data).max() > 50  # active regions on the disk


def test_register_gives_level_1_5(run):
    """aiapy's register accepts the file and returns a level-1.5 AIAMap, north up and centred,
    at 0.6″ per full-resolution (4096²) pixel, i.e. the binned multiple of 0.6″."""
    m = sunpy.map.Map(_aia_files(run, "171A_")[0])
    out = register(m)
    assert isinstance(out, AIAMap)
    assert out.processing_level == 1.5
    binning = FULL_RES / SUN.fits_image_size
    assert out.scale.axis1.to_value(u.arcsec / u.pix) == pytest.approx(0.6 * binning)
    assert out.scale.axis2.to_value(u.arcsec / u.pix) == pytest.approx(0.6 * binning)
    assert out.rotation_matrix == pytest.approx(np.eye(2))
    centre = out.world_to_pixel(out.center)
    assert centre.x.value == pytest.approx((out.data.shape[1] - 1) / 2, abs=0.5)
    assert out.reference_date == m.reference_date
    # The image survives: same total counts within interpolation error.
    assert out.data.astype(np.float64).sum() == pytest.approx(
        m.data.astype(np.float64).sum(), rel=0.02
    )


@pytest.mark.parametrize("channel", AIA_CHANNELS)
def test_raw_counts_match_store(channel, run, aia_store):
    """Counts / EXPTIME / DEG_COR, binned to the store's size, equal the store frame (disk mean
    within a few %, photon noise and rendering at two resolutions aside)."""
    arr = aia_store[channel]
    factor = SUN.fits_image_size // SUN.image_size
    ratios = []
    for path in _aia_files(run, f"{channel}_"):
        with fits.open(path) as hdul:
            header, counts = hdul[1].header, hdul[1].data.astype(np.float64)
        t_obs = pd.Timestamp(header["T_OBS"].rstrip("Z"))
        k = _store_frame(aia_store, channel, t_obs)
        assert header["EXPTIME"] == pytest.approx(arr.attrs["EXPTIME"][k])
        rate = counts / header["EXPTIME"] / arr.attrs["DEG_COR"][k]
        binned = rate.reshape(SUN.image_size, factor, SUN.image_size, factor).mean(axis=(1, 3))
        store = np.asarray(arr[k], np.float64)
        ratios.append(binned.mean() / store.mean())
        # Pixel by pixel too (94 Å has a few counts a pixel: photon noise bounds r).
        assert np.corrcoef(binned.ravel(), store.ravel())[0, 1] > 0.8
    assert np.allclose(ratios, 1.0, atol=0.03), ratios
